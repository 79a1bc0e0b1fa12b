import { createHash } from 'crypto'
import { createReadStream } from 'fs'
import { ActionError } from '../errors'

/** The `qemu-sha256` input: file name -> expected sha256 (lower-case hex). */
export type ChecksumList = ReadonlyMap<string, string>

/** Lines `<sha256>  <file name>` (sha256sum's format, also with `*` for binary mode); blank lines and # comments ignored. */
export function parseChecksums(text: string): ChecksumList {
  const list = new Map<string, string>()
  text.split('\n').forEach((raw, i) => {
    const line = raw.trim()
    if (!line || line.startsWith('#')) return
    const m = /^([0-9a-fA-F]{64})\s+\*?(\S+)$/.exec(line)
    if (!m) {
      throw new ActionError(`qemu-sha256: line ${i + 1} ('${line.slice(0, 60)}') is not '<sha256>  <file name>'; use the output of sha256sum`)
    }
    list.set(m[2], m[1].toLowerCase())
  })
  return list
}

export function sha256File(path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const hash = createHash('sha256')
    createReadStream(path)
      .on('data', d => hash.update(d))
      .on('error', reject)
      .on('end', () => resolve(hash.digest('hex')))
  })
}

/** Throws when `name` is listed with another digest. Returns whether it was listed. */
export function checkDigest(list: ChecksumList, name: string, actual: string, what: string): boolean {
  const expected = list.get(name)
  if (expected === undefined) return false
  if (expected !== actual) {
    throw new ActionError(
      `qemu-sha256: checksum mismatch for ${what}: expected ${expected}, got ${actual}; the file changed or the list is wrong - nothing was registered`,
    )
  }
  return true
}

/** The one wording of a missing line: what to add, once the file has been checked by hand. */
function noLine(names: readonly string[], sha: string, suggest: string): ActionError {
  return new ActionError(`qemu-sha256: no line for ${names.join(' or ')}; add '${sha}  ${suggest}' once you have checked the file`)
}

/** A file an emulator came from: a download or local archive (by its URL-derived name), or the emulator file itself. */
interface Origin {
  /** the name a qemu-sha256 line uses for it */
  readonly name: string
  readonly sha256: string
}

/**
 * The qemu-sha256 policy, decided here only. Without lines, everything passes.
 * With lines, a file named in the list must match; every emulator used must be
 * covered by its own line (qemu-T, qemu-T-static, or its file's name) or by the
 * line of the file it came from. Checked on what is about to be registered,
 * before anything runs.
 */
export class ChecksumPolicy {
  constructor(private readonly list: ChecksumList) {}

  get active(): boolean {
    return this.list.size > 0
  }

  /**
   * A downloaded or local file, as soon as its digest is known: a mismatch
   * fails at once; an unlisted archive fails at once too (its emulators could
   * only be covered by lines of their own when it is a single emulator).
   */
  checkFile(file: Origin, mayBeEmulator: boolean): void {
    if (!this.active) return
    if (checkDigest(this.list, file.name, file.sha256, file.name)) return
    if (!mayBeEmulator) throw noLine([file.name], file.sha256, file.name)
  }

  /** An emulator about to be used: `sha256` is the digest of the very bytes that will be registered. */
  checkEmulator(target: string, sha256: string, from: Origin): void {
    if (!this.active) return
    const own = [`qemu-${target}`, `qemu-${target}-static`, from.name].find(n => this.list.has(n) && n !== from.name)
    if (own) {
      checkDigest(this.list, own, sha256, `qemu-${target}`)
      return
    }
    // The emulator is the file itself (per-target or a local directory): its line is the file's.
    if (from.sha256 === sha256 && checkDigest(this.list, from.name, sha256, from.name)) return
    if (from.sha256 !== sha256 && checkDigest(this.list, from.name, from.sha256, from.name)) return
    const names = from.name === `qemu-${target}` ? [from.name] : [from.name, `qemu-${target}`]
    throw noLine(names, from.sha256 || sha256, from.name)
  }
}
