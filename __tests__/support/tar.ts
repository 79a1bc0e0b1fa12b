// Reading an archive through the action's tar reader the way the fetch does, for the tar tests.
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
