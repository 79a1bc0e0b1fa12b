import { execFileSync } from 'child_process'
import * as fs from 'fs'
import * as os from 'os'
import * as path from 'path'
import { MemberSink, TarHeader, readTar } from '../../src/fetch/tar'

// Archives written by GNU tar (the system's), read by the action's tar reader.

/** Streams `buf` in small, odd-sized chunks, as a decompressor would. */
async function* chunks(buf: Buffer, size = 333): AsyncGenerator<Buffer> {
  for (let i = 0; i < buf.length; i += size) yield buf.subarray(i, i + size)
}

/** Reads everything, taking every regular file; returns headers and contents. */
async function readAll(buf: Buffer, take: (h: TarHeader) => boolean = h => h.type === 'file'): Promise<{ headers: TarHeader[]; data: Map<string, string>; ending: string }> {
  const headers: TarHeader[] = []
  const data = new Map<string, string>()
  const ending = await readTar(chunks(buf), h => {
    headers.push(h)
    if (!take(h)) return 'skip'
    const parts: Buffer[] = []
    const sink: MemberSink = { write: c => void parts.push(Buffer.from(c)), end: () => void data.set(h.name, Buffer.concat(parts).toString()) }
    return sink
  })
  return { headers, data, ending }
}

describe('readTar', () => {
  test('counts sparse members at their full size (GNU and pax formats)', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tar-sparse-'))
    try {
      fs.writeFileSync(path.join(dir, 'big'), 'x')
      fs.truncateSync(path.join(dir, 'big'), 5 * 1024 ** 3)
      for (const format of ['gnu', 'pax']) {
        const buf = execFileSync('tar', [`--format=${format}`, '-cSf', '-', 'big'], { cwd: dir, maxBuffer: 1 << 24 })
        expect(buf.length).toBeLessThan(100000)
        const r = await readAll(buf, () => false)
        expect(r.headers.map(h => [h.name, h.type, h.fullSize])).toEqual([['big', 'sparse', 5 * 1024 ** 3]])
      }
    } finally {
      fs.rmSync(dir, { recursive: true, force: true })
    }
  })
})
