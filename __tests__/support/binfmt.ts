// Kernel binfmt_misc helpers for integration tests. The kernel table is shared
// by everything on the machine, so these helpers only ever remove or rewrite
// entries a test created or changed, and never write to `status` (which would
// disable or wipe every entry).
import * as fs from 'fs'
import * as path from 'path'

export const BINFMT_DIR = '/proc/sys/fs/binfmt_misc'
const CONTROL = new Set(['register', 'status'])
const STAGING = /^qemu-.+\.staged-\d+$/

export interface BinfmtEntry {
  name: string
  enabled: boolean
  interpreter: string
  /** flag letters as the kernel shows them, e.g. 'POCF' ('' when none) */
  flags: string
  /** 'M' (magic) or 'E' (extension) */
  type: 'M' | 'E'
  offset: number
  /** hex, no separators ('' for E entries) */
  magic: string
  /** hex; '' when the entry has no mask */
  mask: string
  /** file extension for E entries */
  extension?: string
  /** the entry file as read */
  raw: string
}

/** name -> raw entry file content */
export type Snapshot = ReadonlyMap<string, string>

export function binfmtMounted(): boolean {
  return fs.existsSync(path.join(BINFMT_DIR, 'register'))
}

function checkName(name: string): void {
  if (!name || name.includes('/') || name === '.' || name === '..' || CONTROL.has(name)) {
    throw new Error(`'${name}' is not a binfmt_misc entry name`)
  }
}

/** Entry names, without the control files. */
export function listEntries(): string[] {
  return fs
    .readdirSync(BINFMT_DIR)
    .filter(n => !CONTROL.has(n))
    .sort()
}

export function parseEntry(name: string, raw: string): BinfmtEntry {
  const entry: BinfmtEntry = { name, enabled: false, interpreter: '', flags: '', type: 'M', offset: 0, magic: '', mask: '', raw }
  for (const line of raw.split('\n')) {
    const sp = line.indexOf(' ')
    const key = sp < 0 ? line : line.slice(0, sp)
    const value = sp < 0 ? '' : line.slice(sp + 1).trim()
    if (key === 'enabled') entry.enabled = true
    else if (key === 'disabled') entry.enabled = false
    else if (key === 'interpreter') entry.interpreter = value
    else if (key === 'flags:') entry.flags = value
    else if (key === 'offset') entry.offset = Number(value)
    else if (key === 'magic') entry.magic = value
    else if (key === 'mask') entry.mask = value
    else if (key === 'extension') {
      entry.type = 'E'
      entry.extension = value.replace(/^\./, '')
    }
  }
  return entry
}

/** Parsed entry; throws ENOENT when it does not exist. */
export function readEntry(name: string): BinfmtEntry {
  checkName(name)
  return parseEntry(name, fs.readFileSync(path.join(BINFMT_DIR, name), 'utf8'))
}

export function entryExists(name: string): boolean {
  checkName(name)
  return fs.existsSync(path.join(BINFMT_DIR, name))
}

/** The kernel shows hex; the register line wants each byte as \xHH. */
function escapeHex(hex: string): string {
  return hex.replace(/(..)/g, '\\x$1')
}

/** The register line that recreates `e` (the kernel's derived 'O' for 'C' is accepted back as is). */
export function registerLine(e: BinfmtEntry): string {
  const body = e.type === 'E' ? `E::${e.extension ?? ''}::` : `M:${e.offset || ''}:${escapeHex(e.magic)}:${escapeHex(e.mask)}:`
  return `:${e.name}:${body}${e.interpreter}:${e.flags}`
}

/** Writes one register line in a single write, as the kernel requires. */
export function registerRaw(line: string): void {
  try {
    fs.writeFileSync(path.join(BINFMT_DIR, 'register'), line, { flag: 'r+' })
  } catch (e) {
    throw new Error(`binfmt_misc rejected '${line}': ${(e as Error).message}`)
  }
}

/** Removes one entry (writes -1 to it). Returns false when it did not exist. */
export function removeEntry(name: string): boolean {
  checkName(name)
  const file = path.join(BINFMT_DIR, name)
  try {
    // flag 'r+': never create (binfmt_misc answers a create with EACCES, not ENOENT).
    fs.writeFileSync(file, '-1', { flag: 'r+' })
    return true
  } catch (e) {
    if (!fs.existsSync(file)) return false
    throw e
  }
}

export function setEnabled(name: string, enabled: boolean): void {
  checkName(name)
  fs.writeFileSync(path.join(BINFMT_DIR, name), enabled ? '1' : '0', { flag: 'r+' })
}

/** Every entry's raw content right now. */
export function snapshot(): Snapshot {
  const snap = new Map<string, string>()
  for (const name of listEntries()) {
    try {
      snap.set(name, fs.readFileSync(path.join(BINFMT_DIR, name), 'utf8'))
    } catch {
      // removed between readdir and read
    }
  }
  return snap
}

/**
 * Puts the table back as it was in `snap`: entries that appeared since are
 * removed, entries that changed or disappeared are registered again (with their
 * enabled state). Only names accepted by `only` are considered, so a test can
 * keep its hands off entries that other processes on the machine manage.
 * A staging entry (`qemu-T.staged-<pid>`) that went is never put back: it is
 * its run's to remove, and any run removes one whose run is gone (its
 * interpreter is usually gone too, so it could not be registered again).
 * Tries every entry, then throws one error listing what failed.
 */
export function restore(snap: Snapshot, only: (name: string) => boolean = () => true): void {
  const errors: string[] = []
  const now = snapshot()
  for (const name of now.keys()) {
    if (only(name) && !snap.has(name)) {
      try {
        removeEntry(name)
      } catch (e) {
        errors.push(`remove ${name}: ${(e as Error).message}`)
      }
    }
  }
  for (const [name, raw] of snap) {
    if (!only(name) || now.get(name) === raw || (STAGING.test(name) && !now.has(name))) continue
    const entry = parseEntry(name, raw)
    // With F the kernel opens the interpreter when the entry is registered: a deleted one cannot come back.
    if (entry.flags.includes('F') && !fs.existsSync(entry.interpreter)) {
      errors.push(
        `restore ${name}: its interpreter ${entry.interpreter} no longer exists, so it cannot be registered again with F; ${name} was left as it is now`,
      )
      continue
    }
    try {
      if (now.has(name)) removeEntry(name)
      registerRaw(registerLine(entry))
      if (!entry.enabled) setEnabled(name, false)
    } catch (e) {
      errors.push(`restore ${name}: ${(e as Error).message}`)
    }
  }
  if (errors.length) throw new Error(`binfmt restore incomplete:\n${errors.join('\n')}`)
}
