import { createHash } from 'crypto'
import { createReadStream } from 'fs'
import { ActionError } from './errors'

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
      throw new ActionError(
        `qemu-sha256: line ${i + 1} ('${line.slice(0, 60)}') is not '<sha256>  <file name>'; use the output of sha256sum`,
      )
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
