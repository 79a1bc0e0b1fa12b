import { ChildProcessWithoutNullStreams, spawn } from 'child_process'
import { createReadStream, promises as fs } from 'fs'
import * as path from 'path'
import { Readable, Transform, pipeline } from 'stream'
import * as zlib from 'zlib'
import { ActionError, errorMessage } from '../errors'
import { HostArch, describeStart } from '../elf'
import { EmulatorFile, EmulatorSink } from './emulator-file'
import { SizeLimits, throwIfAborted } from './limits'
import { Decision, MemberSink, TarFormatError, TarHeader, readTar } from './tar'
import type { EmulatorWant } from '../plan'
import { failureReason } from '../process'
import { findTarget } from '../targets'

export type ArchiveFormat = 'elf' | 'tar' | 'tar.gz' | 'tar.xz' | 'tar.zst' | 'deb'

type TarFormat = 'tar' | 'tar.gz' | 'tar.xz' | 'tar.zst'

const ACCEPTED = 'a static ELF binary, .tar, .tar.gz/.tgz, .tar.xz, .tar.zst or .deb'

const COMPRESSION: Record<TarFormat, string> = { tar: 'not', 'tar.gz': 'gzip', 'tar.xz': 'xz', 'tar.zst': 'zstd' }

function startsWith(buf: Buffer, bytes: readonly number[], at = 0): boolean {
  if (buf.length < at + bytes.length) return false
  return bytes.every((b, i) => buf[at + i] === b)
}

/** A plain tar starts with a header block: "ustar" at 257, or (old v7 archives) a valid checksum. */
function looksLikeTar(buf: Buffer): boolean {
  if (buf.length < 512) return false
  if (buf.subarray(257, 262).toString('latin1') === 'ustar') return true
  const field = buf
    .subarray(148, 156)
    .toString('latin1')
    .replace(/[\0 ]+$/, '')
    .trim()
  if (!/^[0-7]+$/.test(field)) return false
  let sum = 0
  for (let i = 0; i < 512; i++) sum += i >= 148 && i < 156 ? 0x20 : buf[i]
  return sum === parseInt(field, 8) && buf[0] !== 0
}

function formatOf(head: Buffer): ArchiveFormat | undefined {
  if (startsWith(head, [0x7f, 0x45, 0x4c, 0x46])) return 'elf'
  if (startsWith(head, [0x1f, 0x8b])) return 'tar.gz'
  if (startsWith(head, [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00])) return 'tar.xz'
  if (startsWith(head, [0x28, 0xb5, 0x2f, 0xfd])) return 'tar.zst'
  if (head.subarray(0, 8).toString('latin1') === '!<arch>\n') return 'deb'
  if (looksLikeTar(head)) return 'tar'
  return undefined
}

async function readRange(file: string, offset: number, length: number): Promise<Buffer> {
  const fh = await fs.open(file, 'r')
  try {
    const buf = Buffer.allocUnsafe(length)
    let done = 0
    while (done < length) {
      const { bytesRead } = await fh.read(buf, done, length - done, offset + done)
      if (bytesRead === 0) break
      done += bytesRead
    }
    return buf.subarray(0, done)
  } finally {
    await fh.close()
  }
}

async function readHead(file: string, label: string): Promise<Buffer> {
  try {
    return await readRange(file, 0, 512)
  } catch (e) {
    throw new ActionError(`${label} cannot be read (${errorMessage(e)}); check qemu-url`)
  }
}

/**
 * Detects the download's format from its first bytes (never from its name).
 * ActionError naming `label` (default: the file) for anything else.
 */
export async function detectFormat(file: string, label: string = file): Promise<ArchiveFormat> {
  const head = await readHead(file, label)
  const format = formatOf(head)
  if (!format) {
    const known = startsWith(head, [0x50, 0x4b, 0x03, 0x04]) ? 'a zip archive' : startsWith(head, [0x42, 0x5a, 0x68]) ? 'bzip2-compressed' : undefined
    if (known) {
      throw new ActionError(`${label} is ${known}, which this action cannot unpack; expected ${ACCEPTED}; check qemu-url`)
    }
    throw new ActionError(`${label} is not a supported emulator download (${describeStart(head)}); expected ${ACCEPTED}; check qemu-url`)
  }
  return format
}

// ---- .deb (ar archive) ----------------------------------------------------

interface DataMember {
  name: string
  offset: number
  size: number
  format: TarFormat
}

/** Finds data.tar.* in a Debian package. */
async function findDebData(file: string, label: string): Promise<DataMember> {
  const data = await findDebMember(file, label, 'data.tar')
  if (!data) throw new ActionError(`${label} is a .deb without a data.tar member; check qemu-url`)
  return data
}

/** The first `<prefix>*` member of a Debian package: "!<arch>\n", then per member a 60-byte header and its data padded to even length. */
async function findDebMember(file: string, label: string, prefix: 'data.tar' | 'control.tar'): Promise<DataMember | undefined> {
  const { size: fileSize } = await fs.stat(file)
  const truncated = (): ActionError =>
    new ActionError(`${label} is a truncated .deb (ar archive ends early); the download may be incomplete; re-run or check qemu-url`)
  let pos = 8
  while (pos + 60 <= fileSize) {
    const header = await readRange(file, pos, 60)
    if (header.subarray(58, 60).toString('latin1') !== '`\n') {
      throw new ActionError(`${label} is a corrupt .deb (bad ar member header at byte ${pos}); re-run or check qemu-url`)
    }
    let name = header.subarray(0, 16).toString('latin1').trimEnd()
    let size = Number(header.subarray(48, 58).toString('latin1').trim())
    if (!Number.isSafeInteger(size) || size < 0) {
      throw new ActionError(`${label} is a corrupt .deb (bad ar member size at byte ${pos}); re-run or check qemu-url`)
    }
    let offset = pos + 60
    const stored = size
    const bsd = /^#1\/(\d+)$/.exec(name)
    if (bsd) {
      // BSD ar: the name is the first N bytes of the data
      const n = Number(bsd[1])
      name = (await readRange(file, offset, n)).toString('latin1').replace(/\0+$/, '')
      offset += n
      size -= n
    }
    name = name.replace(/\/$/, '')
    if (name.startsWith(prefix)) {
      if (offset + size > fileSize) throw truncated()
      const inner = formatOf(await readRange(file, offset, Math.min(size, 512)))
      if (inner === undefined || inner === 'elf' || inner === 'deb') {
        throw new ActionError(
          `${label} has a ${name} this action cannot unpack (only gzip, xz, zstd or uncompressed data.tar); use another package or a .tar.gz`,
        )
      }
      return { name, offset, size, format: inner }
    }
    pos += 60 + stored + (stored % 2)
  }
  if (pos < fileSize) throw truncated()
  return undefined
}

/** A control file larger than this is not a package's. */
const MAX_CONTROL = 1024 * 1024

/**
 * The Version field of a Debian package's control file (what `dpkg-deb -f FILE Version` prints);
 * undefined when the file is not a .deb or the field cannot be read: it only ever labels the emulators.
 */
export async function debVersion(file: string, label: string, signal?: AbortSignal): Promise<string | undefined> {
  let dec: Decompressed | undefined
  try {
    if ((await detectFormat(file, label)) !== 'deb') return undefined
    const control = await findDebMember(file, label, 'control.tar')
    if (!control) return undefined
    dec = decompress(file, control.format, { start: control.offset, size: control.size }, label, signal)
    const chunks: Buffer[] = []
    let found = false
    await readTar(
      dec.stream,
      h => {
        if (h.name.replace(/^(\.\/)+/, '') !== 'control' || h.type !== 'file' || h.fullSize > MAX_CONTROL) return 'skip'
        return {
          write: async (c: Buffer) => void chunks.push(Buffer.from(c)),
          end: async () => void (found = true),
        }
      },
      () => found,
    )
    return /^Version:[ \t]*(\S+)[ \t]*$/m.exec(Buffer.concat(chunks).toString('utf8'))?.[1]
  } catch {
    return undefined
  } finally {
    dec?.close()
  }
}

// ---- one streaming pass: decompress, read tar, write the wanted emulators ----

interface ExtractOptions {
  readonly host: HostArch
  readonly limits: SizeLimits
  readonly signal?: AbortSignal
}

export interface Extracted {
  readonly emulators: ReadonlyMap<string, EmulatorFile>
  /** every emulator the archive holds, when it was read to its end; undefined when reading stopped early */
  readonly offered?: readonly string[]
}

const EMULATOR_NAME = /^qemu-([a-z0-9_]+?)(-static)?$/

/** A decompressed byte stream, and how to end it early. */
interface Decompressed {
  readonly stream: AsyncIterable<Buffer>
  /** the decompressor's own complaint, once it has finished (child processes) */
  failure(): Promise<string | undefined>
  close(): void
}

const READ_CHUNK = 1024 * 1024

function decompress(file: string, format: TarFormat, range: { start: number; size: number } | undefined, label: string, signal?: AbortSignal): Decompressed {
  const raw = readBytes(file, range)
  const zstd = (zlib as unknown as { createZstdDecompress?: (o?: zlib.ZlibOptions) => Transform }).createZstdDecompress
  if (format === 'tar') return inflateInProcess(raw, undefined, signal)
  if (format === 'tar.gz') return inflateInProcess(raw, zlib.createGunzip({ chunkSize: 256 * 1024 }), signal)
  if (format === 'tar.zst' && zstd) return inflateInProcess(raw, zstd({ chunkSize: 256 * 1024 }), signal)
  return inflateWithProgram(raw, format, label, signal)
}

/** The file's bytes, or those of the member at `range`. */
function readBytes(file: string, range: { start: number; size: number } | undefined): Readable {
  if (!range) return createReadStream(file, { highWaterMark: READ_CHUNK })
  if (range.size === 0) return Readable.from([])
  return createReadStream(file, { start: range.start, end: range.start + range.size - 1, highWaterMark: READ_CHUNK })
}

/** gzip and zstd by Node's zlib (`inflate`); a plain tar (no `inflate`) as it is. */
function inflateInProcess(raw: Readable, inflate: Transform | undefined, signal?: AbortSignal): Decompressed {
  if (inflate) pipeline(raw, inflate, () => undefined)
  const stop = (): void => {
    raw.destroy()
    inflate?.destroy()
  }
  // As for xz below: a member being skipped asks nothing of the caller, so only the stream's end stops it.
  signal?.addEventListener('abort', stop, { once: true })
  return {
    stream: inflate ?? raw,
    failure: async () => undefined,
    close: () => {
      stop()
      signal?.removeEventListener('abort', stop)
    },
  }
}

/** xz (and zstd where Node lacks it): the system's program, in a process group of its own so that stopping kills all of it. */
function inflateWithProgram(raw: Readable, format: 'tar.xz' | 'tar.zst', label: string, signal?: AbortSignal): Decompressed {
  const program = format === 'tar.xz' ? 'xz' : 'zstd'
  const args = format === 'tar.xz' ? ['-dc', '-T0'] : ['-dc', '-q']
  const child = spawn(program, args, { stdio: ['pipe', 'pipe', 'pipe'], detached: true, env: process.env })
  const exit = watchExit(child)
  let killed = false
  pipeline(raw, child.stdin, () => undefined)
  const kill = (): void => {
    killed = true
    raw.destroy()
    // 'close' waits for stdout to end: a reader that stopped early must not wait for it.
    child.stdout.destroy()
    try {
      if (child.pid && child.exitCode === null) process.kill(-child.pid, 'SIGKILL')
    } catch {
      // already gone
    }
  }
  const onAbort = (): void => kill()
  signal?.addEventListener('abort', onAbort, { once: true })
  return {
    stream: child.stdout,
    failure: async () => {
      const { code, signal: killedBy } = await exit.exited
      signal?.removeEventListener('abort', onAbort)
      const spawnError = exit.spawnError()
      if (spawnError) {
        const pkg = program === 'xz' ? 'xz-utils' : 'zstd'
        if (spawnError.code === 'ENOENT') return `!${label} is ${COMPRESSION[format]}-compressed but this runner has no ${program}; install ${pkg}`
        return errorMessage(spawnError)
      }
      if (code === 0 || killed) return undefined
      return failureReason({ code, signal: killedBy, stdout: '', stderr: exit.stderr() }, undefined, program).replace(/^(xz|zstd): (\(stdin\): )?/, '')
    },
    close: () => {
      if (child.exitCode === null) kill()
      signal?.removeEventListener('abort', onAbort)
    },
  }
}

/** How the child ended, whether it could be started at all, and the start of what it said on stderr (enough for a message). */
function watchExit(child: ChildProcessWithoutNullStreams): {
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>
  spawnError: () => NodeJS.ErrnoException | undefined
  stderr: () => string
} {
  let stderr = ''
  child.stderr.on('data', (d: Buffer) => {
    if (stderr.length < 4096) stderr += d.toString()
  })
  let spawnError: NodeJS.ErrnoException | undefined
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>(resolve => {
    child.on('error', e => {
      spawnError = e
      resolve({ code: null, signal: null })
    })
    child.on('close', (code, signal) => resolve({ code, signal }))
  })
  return { exited, spawnError: () => spawnError, stderr: () => stderr }
}

/**
 * Reads the gzip- or zstd-compressed tar `file` (the format told by its first bytes) once, calling `decide`
 * for each member, as extractEmulators does; nothing is written but what `decide` writes. ActionError
 * naming `label` for another format, a corrupt or truncated archive, or whatever `decide` throws.
 */
export async function readCompressedTar(
  file: string,
  label: string,
  decide: (h: TarHeader) => Promise<Decision> | Decision,
  signal?: AbortSignal,
): Promise<void> {
  const format = formatOf(await readHead(file, label))
  if (format !== 'tar.gz' && format !== 'tar.zst') throw new ActionError(`${label} is not gzip- or zstd-compressed`)
  const dec = decompress(file, format, undefined, label, signal)
  try {
    await readTar(dec.stream, async h => {
      throwIfAborted(signal)
      return decide(h)
    })
  } catch (e) {
    dec.close()
    const complaint = await dec.failure()
    if (signal?.aborted) throw signal.reason ?? e
    if (complaint?.startsWith('!')) throw new ActionError(complaint.slice(1))
    if (e instanceof ActionError) throw e
    throw new ActionError(`${label} is corrupt or truncated (${complaint ?? errorMessage(e).replace(/^Error: /, '')})`)
  }
  dec.close()
  const complaint = await dec.failure()
  if (complaint) throw new ActionError(complaint.startsWith('!') ? complaint.slice(1) : `${label} is corrupt or truncated (${complaint})`)
}

interface Candidate {
  target: string
  rank: number[]
  file: EmulatorFile
}

/**
 * Reads the archive once and writes the wanted emulators to `destDir/qemu-<T>`
 * (destDir must exist and be private to this run). Members that are links,
 * devices, directories or sparse, names with `..` or a leading `/`, members
 * over the size limits: refused. Stops reading once every required emulator
 * has been seen. On failure nothing is left in destDir.
 */
export async function extractEmulators(file: string, label: string, want: EmulatorWant, destDir: string, opts: ExtractOptions): Promise<Extracted> {
  const tar = await locateTar(file, label)
  const picker = new EmulatorPicker(want, label, tar.what, destDir, opts)
  const dec = decompress(file, tar.format, tar.range, label, opts.signal)
  let ending: 'end' | 'stopped'
  try {
    ending = await readTar(
      dec.stream,
      h => picker.decide(h),
      () => picker.done,
    )
  } catch (e) {
    dec.close()
    await picker.discard()
    throw readFailure(e, await dec.failure(), tar, label, opts.signal)
  }
  dec.close()
  // Stopped early, close() killed the decompressor: only a stream read to its end has an exit worth judging.
  if (ending === 'end') {
    const complaint = await dec.failure()
    if (complaint) {
      await picker.discard()
      throw complaint.startsWith('!') ? new ActionError(complaint.slice(1)) : corrupt(tar.what, complaint)
    }
  }
  const missing = picker.missing()
  if (missing.length) {
    await picker.discard()
    throw missingEmulators(label, missing, picker)
  }
  return { emulators: await placeEmulators(picker.best.values(), destDir), offered: ending === 'end' ? [...picker.offered].sort() : undefined }
}

/** Where the emulators' tar is: the download itself, or a .deb's data member. */
interface TarLocation {
  readonly format: TarFormat
  readonly range?: { start: number; size: number }
  /** the tar in messages: the download's label, or `<member> in <label>` */
  readonly what: string
}

async function locateTar(file: string, label: string): Promise<TarLocation> {
  const format = await detectFormat(file, label)
  if (format === 'elf') {
    throw new ActionError(
      `qemu-url: ${label} is a single emulator binary; put {target} in qemu-url to download one emulator per target, or point it at an archive`,
    )
  }
  if (format !== 'deb') return { format, what: label }
  const deb = await findDebData(file, label)
  return { format: deb.format, range: { start: deb.offset, size: deb.size }, what: `${deb.name} in ${label}` }
}

/**
 * Decides, member by member, what to take: each wanted emulator's best copy (qemu-T-static before
 * qemu-T, in a bin directory before elsewhere, shallower, earlier), each written to a file of its own
 * in destDir as it streams past; a better copy replaces the one taken before.
 */
class EmulatorPicker {
  readonly best = new Map<string, Candidate>()
  /** every emulator the archive holds as a regular file */
  readonly offered = new Set<string>()
  /** per target, why a member named like its emulator was not taken (a link, a device, ...) */
  readonly refused = new Map<string, string>()
  /** every required emulator has been taken: the rest of the archive is not read */
  done = false
  private readonly wanted: Set<string>
  /** every file written: what a failure removes */
  private readonly written: string[] = []
  private declared = 0
  private serial = 0
  private taking?: EmulatorSink

  constructor(
    private readonly want: EmulatorWant,
    private readonly label: string,
    private readonly what: string,
    private readonly destDir: string,
    private readonly opts: ExtractOptions,
  ) {
    this.wanted = new Set(want.names)
  }

  async decide(h: TarHeader): Promise<Decision> {
    throwIfAborted(this.opts.signal)
    const key = h.name.replace(/^(\.\/)+/, '').replace(/\/+$/, '')
    this.refuseEscape(h, key)
    this.countDeclared(h)
    const parts = key.split('/')
    const m = EMULATOR_NAME.exec(parts[parts.length - 1])
    // usr/share holds docs, man pages and binfmt-support files named like emulators
    if (!m || parts.includes('share') || !findTarget(m[1])) return 'skip'
    const target = m[1]
    if (h.type !== 'file') {
      if (!this.refused.has(target)) this.refused.set(target, `${h.name} is ${KIND[h.type]}, not the emulator itself`)
      return 'skip'
    }
    this.offered.add(target)
    if (!this.wanted.has(target)) return 'skip'
    if (h.fullSize > this.opts.limits.emulator) {
      throw new ActionError(
        `${this.what}: ${h.name} is ${h.fullSize} bytes, more than any emulator (limit ${this.opts.limits.emulator}); refusing the archive - check qemu-url`,
      )
    }
    const inBin = parts.length > 1 && /^s?bin$/.test(parts[parts.length - 2])
    const rank = [m[2] ? 0 : 1, inBin ? 0 : 1, parts.length, this.serial]
    const current = this.best.get(target)
    if (current && compare(current.rank, rank) <= 0) return 'skip'
    return this.take(h, target, rank, current)
  }

  /** A member that would land outside the destination makes the whole archive suspect. */
  private refuseEscape(h: TarHeader, key: string): void {
    if (
      h.name.startsWith('/') ||
      key.split('/').includes('..') ||
      (h.linkname && h.type === 'hardlink' && (h.linkname.startsWith('/') || h.linkname.split('/').includes('..')))
    ) {
      throw new ActionError(
        `${this.label} contains the member "${h.name}", which would be written outside the destination; refusing to use this archive; check qemu-url`,
      )
    }
  }

  /** What all members claim, taken or not: a decompression bomb is refused before its bytes are read. */
  private countDeclared(h: TarHeader): void {
    this.declared += h.fullSize
    if (this.declared > this.opts.limits.archive) {
      throw new ActionError(
        `${this.what} declares more than ${this.opts.limits.archive} bytes of content (a decompression bomb?); refusing it - check qemu-url`,
      )
    }
  }

  /** Streams the member to a file of its own; once it is whole and checked, it replaces `current`. */
  private take(h: TarHeader, target: string, rank: number[], current: Candidate | undefined): MemberSink {
    const out = path.join(this.destDir, `.member-${target}-${this.serial++}`)
    this.written.push(out)
    const sink = new EmulatorSink(target, out, this.opts.host, `${h.name} in ${this.label}`, this.opts.limits.emulator, this.opts.signal)
    this.taking = sink
    return {
      write: c => sink.write(c),
      end: async () => {
        await sink.end()
        this.taking = undefined
        if (current) await fs.rm(current.file.path, { force: true })
        this.best.set(target, { target, rank, file: sink.result(out) })
        // Everything asked for is here: the rest of the archive is not read.
        if (this.want.required && [...this.wanted].every(t => this.best.has(t))) this.done = true
      },
    }
  }

  /** The required emulators no member provided. */
  missing(): string[] {
    return this.want.required ? this.want.names.filter(t => !this.best.has(t)) : []
  }

  /** Removes every file written; a member cut short still holds its file open. */
  async discard(): Promise<void> {
    await this.taking?.abandon()
    await Promise.all(this.written.map(f => fs.rm(f, { force: true })))
  }
}

function corrupt(what: string, why: string): ActionError {
  return new ActionError(`${what} is corrupt or truncated (${why}); the download may be incomplete; re-run or check qemu-url`)
}

/** What to throw when reading failed with `e`: the decompressor's complaint, where it has one, says more than the tar reader. */
function readFailure(e: unknown, complaint: string | undefined, tar: TarLocation, label: string, signal?: AbortSignal): unknown {
  if (signal?.aborted) return signal.reason ?? e
  if (complaint?.startsWith('!')) return new ActionError(complaint.slice(1))
  if (e instanceof TarFormatError) {
    if (complaint) return corrupt(tar.what, complaint)
    if (e.notTar) {
      return new ActionError(
        `${label} is ${tar.format === 'tar' ? 'not' : `${COMPRESSION[tar.format]}-compressed but not`} a tar archive (${e.message}); expected ${ACCEPTED}; check qemu-url`,
      )
    }
    return corrupt(tar.what, e.message)
  }
  if (e instanceof ActionError) return e
  return corrupt(tar.what, errorMessage(e).replace(/^Error: /, ''))
}

/** Says why the archive cannot serve: a refused member named like the emulator, else what it holds instead. */
function missingEmulators(label: string, missing: readonly string[], picker: EmulatorPicker): ActionError {
  const why = missing.map(t => picker.refused.get(t)).find(r => r !== undefined)
  if (why) return new ActionError(`${label}: ${why}; check qemu-url`)
  const present = [...picker.offered].sort()
  const holds = present.length ? `it holds: ${present.join(', ')}` : 'it holds no qemu-<target> emulators'
  const looked = missing.map(t => `qemu-${t}[-static]`).join(', ')
  return new ActionError(`${label} has no emulator for ${missing.join(', ')} (looked for ${looked}); ${holds}; choose from those targets or check qemu-url`)
}

/** Gives each chosen emulator its final name, qemu-<target>. */
async function placeEmulators(chosen: Iterable<Candidate>, destDir: string): Promise<Map<string, EmulatorFile>> {
  const emulators = new Map<string, EmulatorFile>()
  for (const c of chosen) {
    const out = path.join(destDir, `qemu-${c.target}`)
    await fs.rename(c.file.path, out)
    emulators.set(c.target, { ...c.file, path: out })
  }
  return emulators
}

const KIND: Record<string, string> = {
  hardlink: 'a hard link',
  symlink: 'a symbolic link',
  directory: 'a directory',
  device: 'a device',
  fifo: 'a FIFO',
  sparse: 'a sparse file',
  other: 'a special member',
}

function compare(a: readonly number[], b: readonly number[]): number {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return a[i] - b[i]
  return 0
}
