import { BinfmtEntry, BinfmtReader, EntrySpec, sameEntry } from './binfmt'
import { KernelOp, KernelWriter } from './kernel'
import { Target } from './targets'
import { errorMessage } from './errors'
import { Log } from './log'

export interface WantedEntry {
  readonly target: Target
  readonly spec: EntrySpec
}

type Change =
  /** reset: an existing qemu-* entry that goes once the new ones are verified */
  | { readonly kind: 'remove'; readonly entry: BinfmtEntry }
  | { readonly kind: 'keep'; readonly wanted: WantedEntry; readonly entry: BinfmtEntry }
  | { readonly kind: 'add'; readonly wanted: WantedEntry }
  /** why: the old entry differs, `reset` was asked for, or pins want a registration from the checked file */
  | { readonly kind: 'replace'; readonly wanted: WantedEntry; readonly old: BinfmtEntry; readonly why: 'differs' | 'reset' | 'pinned' }

type RegistrationAction = 'added' | 'replaced' | 'kept'

export interface Registration {
  readonly target: Target
  /** the entry as it is once the run is done (name qemu-<target>) */
  readonly spec: EntrySpec
  readonly action: RegistrationAction
  /** what was there before, for 'replaced' */
  readonly previous?: BinfmtEntry
  /**
   * The name the entry is verified under: for 'kept' spec.name, else a staging
   * name, so that an entry it replaces stays in place (and working) until the
   * new one is proven, and so that a run killed halfway leaves only names that
   * say they are unfinished. The kernel tries the newest entry first.
   */
  readonly staged: string
}

export const isQemuEntry = (name: string): boolean => name.startsWith('qemu-')

const STAGING = /^qemu-.+\.staged-(\d+)$/

/** The staging name of `name` for the process `pid`. */
export function stagingName(name: string, pid: number = process.pid): string {
  return `${name}.staged-${pid}`
}

/** The entry a staging name stands for (`qemu-arm.staged-12` -> `qemu-arm`); any other name as it is. */
export function unstaged(name: string): string {
  return stagedBy(name) === undefined ? name : name.slice(0, name.lastIndexOf('.staged-'))
}

/** The process that staged this entry, when the name is a staging name. */
export function stagedBy(name: string): number | undefined {
  const m = STAGING.exec(name)
  return m ? Number(m[1]) : undefined
}

/**
 * Decides what to do with the kernel's current entries. Entries whose names do
 * not start with `qemu-` are never touched; an identical entry is kept (unless
 * `pinned`: the kernel holds whatever file was at that path when it was
 * registered, so only a fresh registration from the checked file is pinned); a
 * different one of the same name is replaced; `reset` removes every other
 * qemu-* entry as well. Staging entries of other runs are left to their owners.
 */
export function planChanges(
  existing: readonly BinfmtEntry[],
  wanted: readonly WantedEntry[],
  opts: {
    readonly reset: boolean
    readonly pinned: boolean
    /** entries another live job on this host uses: `reset` leaves them */
    readonly inUse?: (name: string) => boolean
  },
): Change[] {
  const byName = new Map(existing.map(e => [e.name, e]))
  const changes: Change[] = []
  const wantedNames = new Set(wanted.map(w => w.spec.name))
  if (opts.reset) {
    for (const e of existing) {
      if (!isQemuEntry(e.name) || wantedNames.has(e.name) || stagedBy(e.name) !== undefined || opts.inUse?.(e.name)) continue
      changes.push({ kind: 'remove', entry: e })
    }
  }
  for (const w of wanted) {
    if (!isQemuEntry(w.spec.name)) throw new Error(`refusing to manage non-qemu entry ${w.spec.name}`)
    const old = byName.get(w.spec.name)
    if (!old) changes.push({ kind: 'add', wanted: w })
    else if (opts.reset) changes.push({ kind: 'replace', wanted: w, old, why: 'reset' })
    else if (!sameEntry(old, w.spec)) changes.push({ kind: 'replace', wanted: w, old, why: 'differs' })
    else if (opts.pinned) changes.push({ kind: 'replace', wanted: w, old, why: 'pinned' })
    else changes.push({ kind: 'keep', wanted: w, entry: old })
  }
  return changes
}

function describeEntry(e: BinfmtEntry, named = true): string {
  const what = `interpreter ${e.interpreter}, flags ${e.flags || 'none'}${e.enabled ? '' : ', disabled'}`
  return named ? `${e.name} (${what})` : what
}

/** What a run has registered and not yet made final: what a failure removes. */
export class Journal {
  readonly added: string[] = []

  get empty(): boolean {
    return this.added.length === 0
  }
}

/** What registering says: each change, and what a rollback could not undo. */
type RegisterLog = Pick<Log, 'info' | 'warning'>

/**
 * Registers the new entries, each under its staging name; removes and replaces
 * nothing yet. On a failure removes what it registered and rethrows.
 */
export async function applyChanges(
  writer: KernelWriter,
  reader: BinfmtReader,
  changes: readonly Change[],
  journal: Journal,
  log: RegisterLog,
): Promise<Registration[]> {
  const registrations: Registration[] = []
  const ops: KernelOp[] = []
  for (const c of changes) {
    announce(c, log)
    if (c.kind === 'remove') continue
    const r = registrationOf(c)
    registrations.push(r)
    if (r.staged === r.spec.name) continue
    ops.push({ kind: 'register', spec: { ...r.spec, name: r.staged } })
    journal.added.push(r.staged)
  }
  if (ops.length) {
    try {
      await writer.apply(ops)
    } catch (e) {
      await rollback(writer, reader, journal, log)
      throw e
    }
  }
  return registrations
}

/** The log line that says what a change is about to do. */
function announce(c: Change, log: RegisterLog): void {
  switch (c.kind) {
    case 'remove':
      log.info(`reset: removing ${describeEntry(c.entry)}`)
      break
    case 'keep':
      log.info(`${c.entry.name}: already registered with ${c.entry.interpreter} and flags ${c.entry.flags}; kept`)
      break
    case 'replace': {
      const { name, interpreter, flags } = c.wanted.spec
      if (c.why === 'reset') log.info(`reset: removing ${describeEntry(c.old)}\n${name}: registering ${interpreter} with flags ${flags}`)
      else if (c.why === 'pinned')
        log.info(`${name}: registering again from the pinned file ${interpreter} (the kernel holds whatever file was there when the entry was made)`)
      else log.info(`${name}: replacing the existing entry (${describeEntry(c.old, false)}) with ${interpreter}, flags ${flags}`)
      break
    }
    case 'add':
      log.info(`${c.wanted.spec.name}: registering ${c.wanted.spec.interpreter} with flags ${c.wanted.spec.flags}`)
      break
  }
}

/** A kept entry is verified under its own name; a new one under its staging name until commit. */
function registrationOf(c: Exclude<Change, { kind: 'remove' }>): Registration {
  const { target, spec } = c.wanted
  if (c.kind === 'keep') return { target, spec, action: 'kept', staged: spec.name }
  if (c.kind === 'replace') return { target, spec, action: 'replaced', previous: c.old, staged: stagingName(spec.name) }
  return { target, spec, action: 'added', staged: stagingName(spec.name) }
}

/**
 * Once every new entry is verified: each staged entry takes its real name (an
 * old entry goes, the new one is registered under the name, the staging entry
 * goes: at every moment a working entry serves the target), and what `reset`
 * asked to remove goes. Throws naming what is left when the kernel refuses.
 */
export async function commit(
  writer: KernelWriter,
  reader: BinfmtReader,
  changes: readonly Change[],
  registrations: readonly Registration[],
  journal: Journal,
  log: RegisterLog,
): Promise<void> {
  const ops: KernelOp[] = []
  for (const r of registrations) {
    if (r.staged === r.spec.name) continue
    if (r.action === 'replaced') ops.push({ kind: 'remove', name: r.spec.name })
    ops.push({ kind: 'register', spec: r.spec }, { kind: 'remove', name: r.staged })
  }
  const removed = changes.flatMap(c => (c.kind === 'remove' ? [c.entry.name] : []))
  for (const name of removed) ops.push({ kind: 'remove', name })
  if (ops.length) {
    try {
      await writer.apply(ops)
    } catch (e) {
      const staged = registrations.filter(r => r.staged !== r.spec.name && reader.read(r.staged) !== undefined).map(r => r.staged)
      throw new Error(
        `putting the verified entries in place failed (${errorMessage(e)})` +
          (staged.length ? `; ${staged.join(', ')} stay${staged.length > 1 ? '' : 's'} registered and work${staged.length > 1 ? '' : 's'}` : ''),
      )
    }
  }
  for (const name of removed) log.info(`reset: removed ${name}`)
  journal.added.length = 0
}

/**
 * Removes what this run registered and has not made final, judged by what the
 * kernel shows now (a failed batch may have stopped anywhere). Entries that were
 * there before the run were never touched. Best effort: failures are warnings.
 */
export async function rollback(writer: KernelWriter, reader: BinfmtReader, journal: Journal, log: RegisterLog): Promise<void> {
  const present = journal.added.filter(n => reader.read(n) !== undefined)
  try {
    if (present.length) await writer.apply(present.map(name => ({ kind: 'remove', name })))
    for (const name of present) log.info(`rollback: removed ${name}`)
  } catch (e) {
    const left = journal.added.filter(n => reader.read(n) !== undefined)
    log.warning(`rollback incomplete: ${errorMessage(e)}${left.length ? `; still registered: ${left.join(', ')}` : ''}`)
  }
  journal.added.length = 0
}
