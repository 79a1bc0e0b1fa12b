import { BinfmtEntry, BinfmtReader, EntrySpec, sameEntry, specOf } from './binfmt'
import { KernelOp, KernelWriter } from './kernel'
import { Target } from './targets'
import { errorMessage } from './errors'

export interface WantedEntry {
  readonly target: Target
  readonly spec: EntrySpec
}

export type Change =
  | { readonly kind: 'remove'; readonly entry: BinfmtEntry }
  | { readonly kind: 'keep'; readonly wanted: WantedEntry; readonly entry: BinfmtEntry }
  | { readonly kind: 'add'; readonly wanted: WantedEntry }
  | { readonly kind: 'replace'; readonly wanted: WantedEntry; readonly old: BinfmtEntry }

export type RegistrationAction = 'added' | 'replaced' | 'kept'

export interface Registration {
  readonly target: Target
  readonly spec: EntrySpec
  readonly action: RegistrationAction
  /** what was there before, for 'replaced' */
  readonly previous?: BinfmtEntry
}

export const isQemuEntry = (name: string): boolean => name.startsWith('qemu-')

/**
 * Decides what to do with the kernel's current entries. Entries whose names do
 * not start with `qemu-` are never touched; an identical entry is kept, a
 * different one of the same name is replaced; `reset` first removes every qemu-* entry.
 */
export function planChanges(existing: readonly BinfmtEntry[], wanted: readonly WantedEntry[], reset: boolean): Change[] {
  const byName = new Map(existing.map(e => [e.name, e]))
  const changes: Change[] = []
  if (reset) {
    for (const e of existing) if (isQemuEntry(e.name)) changes.push({ kind: 'remove', entry: e })
  }
  for (const w of wanted) {
    if (!isQemuEntry(w.spec.name)) throw new Error(`refusing to manage non-qemu entry ${w.spec.name}`)
    const old = reset ? undefined : byName.get(w.spec.name)
    if (!old) changes.push({ kind: 'add', wanted: w })
    else if (sameEntry(old, w.spec)) changes.push({ kind: 'keep', wanted: w, entry: old })
    else changes.push({ kind: 'replace', wanted: w, old })
  }
  return changes
}

/** What a run set out to change, so that a failure can put the kernel back as it was. */
export class Journal {
  readonly removed: BinfmtEntry[] = []
  readonly added: string[] = []

  get empty(): boolean {
    return this.removed.length === 0 && this.added.length === 0
  }
}

export interface Log {
  info(message: string): void
  warning(message: string): void
}

/** The kernel operations for a plan, in order. */
export function opsFor(changes: readonly Change[]): KernelOp[] {
  return changes.flatMap((c): KernelOp[] => {
    switch (c.kind) {
      case 'remove':
        return [{ kind: 'remove', name: c.entry.name }]
      case 'replace':
        return [{ kind: 'remove', name: c.old.name }, { kind: 'register', spec: c.wanted.spec }]
      case 'add':
        return [{ kind: 'register', spec: c.wanted.spec }]
      case 'keep':
        return []
    }
  })
}

/** Applies the changes in one batch; on a failure undoes what it did and rethrows. */
export async function applyChanges(
  writer: KernelWriter,
  reader: BinfmtReader,
  changes: readonly Change[],
  journal: Journal,
  log: Log,
): Promise<Registration[]> {
  const registrations: Registration[] = []
  for (const c of changes) {
    switch (c.kind) {
      case 'remove':
        log.info(`reset: removing ${c.entry.name} (interpreter ${c.entry.interpreter}, flags ${c.entry.flags || 'none'})`)
        journal.removed.push(c.entry)
        break
      case 'keep':
        log.info(`${c.entry.name}: already registered with ${c.entry.interpreter} and flags ${c.entry.flags}; kept`)
        registrations.push({ target: c.wanted.target, spec: c.wanted.spec, action: 'kept' })
        break
      case 'replace':
        log.info(
          `${c.old.name}: replacing the existing entry (interpreter ${c.old.interpreter}, flags ${c.old.flags || 'none'}` +
            `${c.old.enabled ? '' : ', disabled'}) with ${c.wanted.spec.interpreter}, flags ${c.wanted.spec.flags}`,
        )
        journal.removed.push(c.old)
        journal.added.push(c.wanted.spec.name)
        registrations.push({ target: c.wanted.target, spec: c.wanted.spec, action: 'replaced', previous: c.old })
        break
      case 'add':
        log.info(`${c.wanted.spec.name}: registering ${c.wanted.spec.interpreter} with flags ${c.wanted.spec.flags}`)
        journal.added.push(c.wanted.spec.name)
        registrations.push({ target: c.wanted.target, spec: c.wanted.spec, action: 'added' })
        break
    }
  }
  const ops = opsFor(changes)
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

/**
 * Removes what this run registered and puts back what it removed, judged by what
 * the kernel shows now (a failed batch may have stopped anywhere). Best effort:
 * failures are warnings.
 */
export async function rollback(writer: KernelWriter, reader: BinfmtReader, journal: Journal, log: Log): Promise<void> {
  const removals: KernelOp[] = journal.added.filter(n => reader.read(n) !== undefined).map(name => ({ kind: 'remove', name }))
  // A disabled entry comes back disabled.
  const restores = (present: (n: string) => boolean): KernelOp[] =>
    journal.removed
      .filter(e => !present(e.name))
      .flatMap((e): KernelOp[] => [{ kind: 'register', spec: specOf(e) }, ...(e.enabled ? [] : [{ kind: 'disable' as const, name: e.name }])])
  try {
    // Everything this run added goes first, so that restored entries do not collide with them.
    await writer.apply([...removals, ...restores(n => reader.read(n) !== undefined && !journal.added.includes(n))])
    for (const op of removals) if (op.kind === 'remove') log.info(`rollback: removed ${op.name}`)
    for (const e of journal.removed) log.info(`rollback: restored ${e.name}${e.enabled ? '' : ' (disabled, as it was)'}`)
  } catch (e) {
    const left = journal.added.filter(n => reader.read(n) !== undefined)
    log.warning(`rollback incomplete: ${errorMessage(e)}${left.length ? `; still registered: ${left.join(', ')}` : ''}`)
  }
  journal.added.length = 0
  journal.removed.length = 0
}
