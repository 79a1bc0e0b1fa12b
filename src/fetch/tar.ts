/**
 * A streaming tar reader for emulator archives: ustar, GNU (long names, old
 * sparse 'S') and pax (path, size, GNU.sparse.*). It reads a byte stream once,
 * hands each member's header to the caller, and streams only the members the
 * caller takes; the rest are skipped without being kept. Reading ends at the
 * end-of-archive block (trailing bytes are ignored) or when the caller stops.
 *
 * And its counterpart for the other direction: a ustar writer for the few
 * files `docker cp -` copies into a container.
 */

type TarType = 'file' | 'hardlink' | 'symlink' | 'directory' | 'device' | 'fifo' | 'sparse' | 'other'

export interface TarHeader {
  /** the member's name as stored (pax path, GNU long name, or ustar prefix/name) */
  readonly name: string
  readonly type: TarType
  /** bytes of data that follow in the stream */
  readonly size: number
  /** bytes the member claims once extracted: for sparse members the full size */
  readonly fullSize: number
  /** permission bits */
  readonly mode: number
  readonly linkname?: string
}

/** Receives a taken member's data, in order; `end` once the member is complete. */
export interface MemberSink {
  write(chunk: Buffer): Promise<void> | void
  end(): Promise<void> | void
}

/** What to do with a member: take its data, skip it, or stop reading the archive. */
export type Decision = MemberSink | 'skip' | 'stop'

export class TarFormatError extends Error {
  constructor(
    message: string,
    /** true when not even the first header was a tar header */
    readonly notTar = false,
  ) {
    super(message)
  }
}

const BLOCK = 512
/** pax and GNU long-name records are metadata: nothing honest needs more. */
const MAX_META = 1024 * 1024

/** Pulls exact byte counts from an async stream of chunks. */
class ByteReader {
  private chunks: Buffer[] = []
  private buffered = 0
  private done = false
  constructor(private readonly it: AsyncIterator<Buffer>) {}

  private async fill(): Promise<boolean> {
    if (this.done) return false
    const r = await this.it.next()
    if (r.done) {
      this.done = true
      return false
    }
    const chunk = Buffer.isBuffer(r.value) ? r.value : Buffer.from(r.value)
    if (chunk.length) {
      this.chunks.push(chunk)
      this.buffered += chunk.length
    }
    return true
  }

  /** Exactly n bytes, or undefined if the stream ends first (what there was is returned as `partial`). */
  async read(n: number): Promise<{ data?: Buffer; partial: number }> {
    while (this.buffered < n) if (!(await this.fill())) return { partial: this.buffered }
    const whole = this.chunks.length === 1 ? this.chunks[0] : Buffer.concat(this.chunks)
    const data = whole.subarray(0, n)
    const rest = whole.subarray(n)
    this.chunks = rest.length ? [rest] : []
    this.buffered = rest.length
    return { data, partial: n }
  }

  /** Passes the next n bytes to `each` chunk by chunk; returns how many arrived before the stream ended. */
  async pass(n: number, each?: (chunk: Buffer) => Promise<void> | void): Promise<number> {
    let left = n
    while (left > 0) {
      if (!this.buffered && !(await this.fill())) break
      const head = this.chunks[0]
      const take = Math.min(left, head.length)
      const part = head.subarray(0, take)
      if (take === head.length) this.chunks.shift()
      else this.chunks[0] = head.subarray(take)
      this.buffered -= take
      left -= take
      if (each) await each(part)
    }
    return n - left
  }
}

function octal(buf: Buffer, off: number, len: number): number {
  // GNU base-256 for sizes of 8 GiB and more
  if (buf[off] & 0x80) {
    let v = buf[off] & 0x7f
    for (let i = 1; i < len; i++) v = v * 256 + buf[off + i]
    return v
  }
  const s = buf
    .toString('latin1', off, off + len)
    .replace(/\0.*$/s, '')
    .trim()
  if (!s) return 0
  if (!/^[0-7]+$/.test(s)) return NaN
  return parseInt(s, 8)
}

function cstring(buf: Buffer, off: number, len: number): string {
  const raw = buf.subarray(off, off + len)
  const nul = raw.indexOf(0)
  return (nul >= 0 ? raw.subarray(0, nul) : raw).toString('utf8')
}

/** A header's checksum: the sum of its bytes with the checksum field counted as spaces (`signed`: as some old tars summed them). */
function headerSum(block: Buffer, signed = false): number {
  let sum = 0
  for (let i = 0; i < BLOCK; i++) {
    const b = i >= 148 && i < 156 ? 0x20 : block[i]
    sum += signed && b > 127 ? b - 256 : b
  }
  return sum
}

function checksumOk(block: Buffer): boolean {
  const stored = octal(block, 148, 8)
  return stored === headerSum(block) || stored === headerSum(block, true)
}

const TYPES: Record<string, TarType> = {
  '0': 'file',
  '\0': 'file',
  '7': 'file',
  '1': 'hardlink',
  '2': 'symlink',
  '3': 'device',
  '4': 'device',
  '5': 'directory',
  '6': 'fifo',
  S: 'sparse',
}

function parsePax(data: Buffer): Map<string, string> {
  const out = new Map<string, string>()
  let pos = 0
  while (pos < data.length) {
    const sp = data.indexOf(0x20, pos)
    if (sp < 0) break
    const len = Number(data.toString('latin1', pos, sp))
    if (!Number.isSafeInteger(len) || len <= 0 || pos + len > data.length) throw new TarFormatError('a pax header record is malformed')
    const rec = data.toString('utf8', sp + 1, pos + len - 1)
    const eq = rec.indexOf('=')
    if (eq > 0) out.set(rec.slice(0, eq), rec.slice(eq + 1))
    pos += len
  }
  return out
}

/** Extended headers (pax 'x', GNU 'L' and 'K') describe the member after them; pax 'g' records all that follow. */
class PendingMeta {
  longName?: string
  longLink?: string
  pax = new Map<string, string>()
  private globalPax = new Map<string, string>()

  add(flag: string, body: Buffer): void {
    if (flag === 'x') this.pax = new Map([...this.globalPax, ...parsePax(body)])
    else if (flag === 'g') this.globalPax = new Map([...this.globalPax, ...parsePax(body)])
    else if (flag === 'L') this.longName = cstring(body, 0, body.length)
    else this.longLink = cstring(body, 0, body.length)
  }

  /** Once a member has used them. */
  clear(): void {
    this.pax = new Map()
    this.longName = this.longLink = undefined
  }
}

const META_FLAGS = new Set(['x', 'g', 'L', 'K'])

/**
 * Reads `source` (a decompressed tar stream), calling `decide` for every
 * member. Resolves with 'end' (end-of-archive block or clean end of stream) or
 * 'stopped' (the caller asked to stop). TarFormatError for anything malformed
 * or truncated.
 */
export async function readTar(
  source: AsyncIterable<Buffer>,
  decide: (h: TarHeader) => Promise<Decision> | Decision,
  /** asked after each taken member: true ends reading there */
  done: () => boolean = () => false,
): Promise<'end' | 'stopped'> {
  const r = new ByteReader(source[Symbol.asyncIterator]())
  const meta = new PendingMeta()
  let first = true
  for (;;) {
    const block = await nextHeader(r, first)
    if (!block) return 'end'
    first = false
    const flag = String.fromCharCode(block[156])
    const size = octal(block, 124, 12)
    if (!Number.isSafeInteger(size) || size < 0) throw new TarFormatError('a header has a bad size field')
    if (META_FLAGS.has(flag)) {
      meta.add(flag, await readMetaRecord(r, size))
      continue
    }
    const header = memberHeader(block, flag, size, meta)
    meta.clear()
    if (flag === 'S') await skipSparseMap(r, block)
    const decision = await decide(header)
    if (decision === 'stop') return 'stopped'
    await passData(r, header, decision)
    if (decision !== 'skip' && done()) return 'stopped'
  }
}

/** The next header block; undefined at the end of the archive. */
async function nextHeader(r: ByteReader, first: boolean): Promise<Buffer | undefined> {
  const { data: block, partial } = await r.read(BLOCK)
  if (!block) {
    if (partial === 0 && !first) return undefined
    throw new TarFormatError(first && partial === 0 ? 'it is empty' : `it ends inside a header (${partial} of ${BLOCK} bytes)`, first)
  }
  if (block.every(b => b === 0)) {
    if (first) throw new TarFormatError('it starts with an empty block', true)
    return undefined
  }
  if (!checksumOk(block)) {
    throw new TarFormatError(first ? 'its first block is not a tar header' : 'a header has a bad checksum', first)
  }
  return block
}

async function readMetaRecord(r: ByteReader, size: number): Promise<Buffer> {
  if (size > MAX_META) throw new TarFormatError(`a metadata record of ${size} bytes is larger than any honest archive needs`)
  const { data } = await r.read(Math.ceil(size / BLOCK) * BLOCK)
  if (!data) throw new TarFormatError('it ends inside a metadata record')
  return data.subarray(0, size)
}

/** A member's header as the caller sees it: names and sizes from the extended headers before it, where they give them. */
function memberHeader(block: Buffer, flag: string, size: number, meta: PendingMeta): TarHeader {
  const { pax } = meta
  const ustar = block.toString('latin1', 257, 263) === 'ustar\0'
  const prefix = ustar ? cstring(block, 345, 155) : ''
  let name = pax.get('path') ?? meta.longName ?? (prefix ? `${prefix}/${cstring(block, 0, 100)}` : cstring(block, 0, 100))
  const linkname = pax.get('linkpath') ?? meta.longLink ?? cstring(block, 157, 100)
  let type: TarType = TYPES[flag] ?? 'other'
  let dataSize = size
  if (pax.has('size')) {
    dataSize = Number(pax.get('size'))
    if (!Number.isSafeInteger(dataSize) || dataSize < 0) throw new TarFormatError('a pax size record is malformed')
  }
  let fullSize = dataSize
  // GNU sparse in pax form (0.x and 1.0): the real size is in the records.
  const sparseSize = pax.get('GNU.sparse.realsize') ?? pax.get('GNU.sparse.size')
  if (sparseSize !== undefined) {
    type = 'sparse'
    fullSize = Number(sparseSize)
    name = pax.get('GNU.sparse.name') ?? name
  }
  if (flag === 'S') fullSize = octal(block, 483, 12)
  if (!Number.isFinite(fullSize) || fullSize < dataSize) fullSize = Number.MAX_SAFE_INTEGER
  return { name, type, size: dataSize, fullSize, mode: octal(block, 100, 8) & 0o7777, linkname: linkname || undefined }
}

/** An old GNU sparse member: extension blocks listing more holes come before the data. */
async function skipSparseMap(r: ByteReader, block: Buffer): Promise<void> {
  let extended = block[482] !== 0
  while (extended) {
    const { data } = await r.read(BLOCK)
    if (!data) throw new TarFormatError('it ends inside a sparse map')
    extended = data[504] !== 0
  }
}

/** The member's data, and the padding to the next block: to the caller's sink, or past. */
async function passData(r: ByteReader, h: TarHeader, decision: MemberSink | 'skip'): Promise<void> {
  const padded = Math.ceil(h.size / BLOCK) * BLOCK
  if (decision === 'skip') {
    const got = await r.pass(padded)
    if (got < padded) throw new TarFormatError(`it ends inside ${h.name} (${Math.min(got, h.size)} of ${h.size} bytes)`)
    return
  }
  const got = await r.pass(h.size, chunk => decision.write(chunk))
  if (got < h.size) throw new TarFormatError(`it ends inside ${h.name} (${got} of ${h.size} bytes)`)
  await decision.end()
  const pad = padded - h.size
  if (pad && (await r.pass(pad)) < pad) throw new TarFormatError(`it ends after ${h.name}`)
}

/** A regular file to write: its path in the archive (relative, '/'-separated), content and permission bits. */
export interface TarFile {
  readonly name: string
  readonly data: Buffer
  readonly mode: number
}

/** One ustar header block; the name split into prefix and name where it is longer than 100 bytes. */
function header(name: string, size: number, mode: number, type: '0' | '5', mtime: number): Buffer {
  const h = Buffer.alloc(BLOCK)
  let prefix = ''
  let base = name
  if (Buffer.byteLength(name) > 100) {
    const cut = name.lastIndexOf('/', name.length - 2)
    prefix = name.slice(0, cut)
    base = name.slice(cut + 1)
    if (cut < 0 || Buffer.byteLength(prefix) > 155 || Buffer.byteLength(base) > 100) throw new Error(`path too long for a tar header: ${name}`)
  }
  const octalField = (off: number, len: number, n: number): void => {
    h.write(`${n.toString(8).padStart(len - 1, '0')}\0`, off, len, 'ascii')
  }
  h.write(base, 0, 100, 'utf8')
  octalField(100, 8, mode)
  octalField(108, 8, 0)
  octalField(116, 8, 0)
  octalField(124, 12, size)
  octalField(136, 12, mtime)
  h.write(type, 156, 1, 'ascii')
  h.write('ustar\0' + '00', 257, 8, 'ascii')
  h.write(prefix, 345, 155, 'utf8')
  h.write(`${headerSum(h).toString(8).padStart(6, '0')}\0 `, 148, 8, 'ascii')
  return h
}

/**
 * A ustar archive of `files`, each preceded by its parent directories (mode
 * 0755) the first time one is named: what `docker cp -` reads from stdin.
 */
export function writeTar(files: readonly TarFile[], mtime: number = Math.floor(Date.now() / 1000)): Buffer {
  const parts: Buffer[] = []
  const dirs = new Set<string>()
  for (const f of files) {
    const segments = f.name.split('/')
    for (let i = 1; i < segments.length; i++) {
      const dir = `${segments.slice(0, i).join('/')}/`
      if (dirs.has(dir)) continue
      dirs.add(dir)
      parts.push(header(dir, 0, 0o755, '5', mtime))
    }
    parts.push(header(f.name, f.data.length, f.mode, '0', mtime), f.data, Buffer.alloc((BLOCK - (f.data.length % BLOCK)) % BLOCK))
  }
  parts.push(Buffer.alloc(2 * BLOCK))
  return Buffer.concat(parts)
}
