import * as fs from 'fs'
import * as path from 'path'
import { ActionError, readOr } from './errors'
import { hexToEscaped } from './targets'

export const BINFMT_ROOT = '/proc/sys/fs/binfmt_misc'

/** An entry as the kernel shows it (one file under binfmt_misc). Magic and mask are hex. */
export interface BinfmtEntry {
  readonly name: string
  readonly enabled: boolean
  readonly interpreter: string
  /** flag letters as the kernel prints them, e.g. "POCF" */
  readonly flags: string
  readonly offset: number
  readonly magic: string
  readonly mask: string
}

/** What we want registered; flags are the ones we ask for ("F", "PCF", ...). */
export interface EntrySpec {
  readonly name: string
  readonly offset: number
  readonly magic: string
  readonly mask: string
  readonly interpreter: string
  readonly flags: string
}

// Kernel limits (fs/binfmt_misc.c): BINPRM_BUF_SIZE and the register buffer.
const MAX_INTERPRETER = 127
const MAX_MATCH_BYTES = 128
const MAX_LINE = 1920

export function registerLine(spec: EntrySpec): string {
  if (spec.magic.length !== spec.mask.length) throw new Error(`${spec.name}: magic and mask differ in length`)
  if (spec.interpreter.length > MAX_INTERPRETER) {
    throw new ActionError(
      `interpreter path ${spec.interpreter} is longer than the kernel's ${MAX_INTERPRETER} characters; set RUNNER_TOOL_CACHE to a shorter directory`,
    )
  }
  if (/[:\n]/.test(spec.interpreter)) {
    throw new ActionError(`interpreter path ${spec.interpreter} contains ':' or a newline, which binfmt_misc cannot take; use a plain path`)
  }
  if (spec.offset + spec.magic.length / 2 > MAX_MATCH_BYTES) throw new Error(`${spec.name}: magic beyond ${MAX_MATCH_BYTES} bytes`)
  const line = `:${spec.name}:M:${spec.offset || ''}:${hexToEscaped(spec.magic)}:${hexToEscaped(spec.mask)}:${spec.interpreter}:${spec.flags}`
  if (line.length > MAX_LINE) throw new Error(`${spec.name}: register line too long`)
  return line
}

export function parseEntry(name: string, text: string): BinfmtEntry {
  let enabled = false
  let interpreter = ''
  let flags = ''
  let offset = 0
  let magic = ''
  let mask = ''
  for (const line of text.split('\n')) {
    if (line === 'enabled') enabled = true
    else if (line.startsWith('interpreter ')) interpreter = line.slice('interpreter '.length)
    else if (line.startsWith('flags:')) flags = line.slice('flags:'.length).trim()
    else if (line.startsWith('offset ')) offset = Number(line.slice('offset '.length))
    else if (line.startsWith('magic ')) magic = line.slice('magic '.length).trim()
    else if (line.startsWith('mask ')) mask = line.slice('mask '.length).trim()
  }
  // The kernel omits the mask line when every mask byte is 0xff.
  if (!mask && magic) mask = 'ff'.repeat(magic.length / 2)
  return { name, enabled, interpreter, flags, offset, magic, mask }
}

/** The flag letters the kernel will show for requested flags: C implies O. */
export function effectiveFlags(requested: string): string {
  const set = new Set(requested.toUpperCase().split(''))
  if (set.has('C')) set.add('O')
  return ['P', 'O', 'C', 'F'].filter(f => set.has(f)).join('')
}

/** An existing entry is kept only when it already is exactly what we would register. */
export function sameEntry(existing: BinfmtEntry, spec: EntrySpec): boolean {
  return (
    existing.enabled &&
    existing.interpreter === spec.interpreter &&
    effectiveFlags(existing.flags) === effectiveFlags(spec.flags) &&
    existing.offset === spec.offset &&
    existing.magic === spec.magic &&
    existing.mask === spec.mask
  )
}

/** Rebuilds the spec of an existing entry (to put it back on rollback). */
export function specOf(entry: BinfmtEntry): EntrySpec {
  return {
    name: entry.name,
    offset: entry.offset,
    magic: entry.magic,
    mask: entry.mask,
    interpreter: entry.interpreter,
    // O is implied by C and the kernel rejects nothing for it; pass what it showed.
    flags: entry.flags,
  }
}

/** Reading binfmt_misc needs no privilege; every change goes through a KernelWriter. */
export class BinfmtReader {
  constructor(readonly root: string = BINFMT_ROOT) {}

  mounted(): boolean {
    return fs.existsSync(path.join(this.root, 'register'))
  }

  /** binfmt_misc's host-wide switch (the status file): false when someone disabled every entry at once. */
  enabled(): boolean {
    return readOr(() => fs.readFileSync(path.join(this.root, 'status'), 'utf8'), '').trim() !== 'disabled'
  }

  names(): string[] {
    return fs
      .readdirSync(this.root)
      .filter(n => n !== 'register' && n !== 'status')
      .sort()
  }

  read(name: string): BinfmtEntry | undefined {
    try {
      return parseEntry(name, fs.readFileSync(path.join(this.root, name), 'utf8'))
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined
      throw e
    }
  }

  /** When the entry was made (its file's mtime; disabling it later moves that on), or undefined when that cannot be told. */
  madeAtMs(name: string): number | undefined {
    return readOr(() => fs.statSync(path.join(this.root, name)).mtimeMs, undefined)
  }

  list(): BinfmtEntry[] {
    return this.names()
      .map(n => this.read(n))
      .filter((e): e is BinfmtEntry => e !== undefined)
  }
}
