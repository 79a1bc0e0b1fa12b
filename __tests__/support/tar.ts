// Tar for the tests: headers built byte by byte (hostile ones too), and reading an archive through the
// action's tar reader the way the fetch does.
import { MemberSink, TarHeader, readTar } from '../../src/fetch/tar'

/** Streams `buf` in small, odd-sized chunks, as a decompressor would. */
export async function* chunks(buf: Buffer, size = 333): AsyncGenerator<Buffer> {
  for (let i = 0; i < buf.length; i += size) yield buf.subarray(i, i + size)
}

/** Reads everything, taking every regular file; returns headers and contents. */
export async function readAll(
  buf: Buffer,
  take: (h: TarHeader) => boolean = h => h.type === 'file',
): Promise<{ headers: TarHeader[]; data: Map<string, string>; ending: string }> {
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

/**
 * One ustar header block for `name`, mode 0755, claiming `size` bytes (no data follows: the caller adds
 * what it likes, or nothing); `badSum` spoils the checksum.
 */
export function ustarHeader(name: string, opts: { size?: number; type?: string; linkname?: string; prefix?: string; badSum?: boolean } = {}): Buffer {
  const b = Buffer.alloc(512)
  b.write(name, 0, 'utf8')
  b.write('0000755\0', 100, 'latin1')
  b.write('0000000\0', 108, 'latin1')
  b.write('0000000\0', 116, 'latin1')
  b.write((opts.size ?? 0).toString(8).padStart(11, '0') + '\0', 124, 'latin1')
  b.write('00000000000\0', 136, 'latin1')
  b.write('        ', 148, 'latin1')
  b.write(opts.type ?? '0', 156, 'latin1')
  if (opts.linkname) b.write(opts.linkname, 157, 'utf8')
  b.write('ustar\0' + '00', 257, 'latin1')
  if (opts.prefix) b.write(opts.prefix, 345, 'utf8')
  let sum = 0
  for (const x of b) sum += x
  b.write((sum + (opts.badSum ? 1 : 0)).toString(8).padStart(6, '0') + '\0 ', 148, 'latin1')
  return b
}
