import { spawn } from 'child_process'
import { createReadStream, promises as fs } from 'fs'
import * as path from 'path'
import { Readable, Transform, pipeline } from 'stream'
import * as zlib from 'zlib'
import { ActionError, errorMessage } from './errors'
import { HostArch, describeStart } from './elf'
import { EmulatorFile, EmulatorSink } from './fetch/emulator-file'
import { SizeLimits, throwIfAborted } from './fetch/limits'
import { Decision, TarFormatError, TarHeader, readTar } from './fetch/tar'
import type { EmulatorWant } from './plan'
import { failureReason } from './process'
import { findTarget } from './targets'

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
  const raw = range
    ? range.size > 0
      ? createReadStream(file, { start: range.start, end: range.start + range.size - 1, highWaterMark: READ_CHUNK })
      : Readable.from([])
    : createReadStream(file, { highWaterMark: READ_CHUNK })
  const zstd = (zlib as unknown as { createZstdDecompress?: (o?: zlib.ZlibOptions) => Transform }).createZstdDecompress
  if (format === 'tar' || format === 'tar.gz' || (format === 'tar.zst' && zstd)) {
    const inflate =
      format === 'tar'
        ? undefined
        : format === 'tar.gz'
          ? zlib.createGunzip({ chunkSize: 256 * 1024 })
          : (zstd as (o?: zlib.ZlibOptions) => Transform)({ chunkSize: 256 * 1024 })
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
  // xz (and zstd where Node lacks it): the system's program, in a process group of its own so that stopping kills all of it.
  const program = format === 'tar.xz' ? 'xz' : 'zstd'
  const args = format === 'tar.xz' ? ['-dc', '-T0'] : ['-dc', '-q']
  const child = spawn(program, args, { stdio: ['pipe', 'pipe', 'pipe'], detached: true, env: process.env })
  let stderr = ''
  child.stderr.on('data', (d: Buffer) => {
    if (stderr.length < 4096) stderr += d.toString()
  })
  let spawnError: NodeJS.ErrnoException | undefined
  let killed = false
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>(resolve => {
    child.on('error', e => {
      spawnError = e
      resolve({ code: null, signal: null })
    })
    child.on('close', (code, signal) => resolve({ code, signal }))
  })
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
      const { code, signal: killedBy } = await exited
      signal?.removeEventListener('abort', onAbort)
      if (spawnError) {
        const pkg = program === 'xz' ? 'xz-utils' : 'zstd'
        if (spawnError.code === 'ENOENT') return `!${label} is ${COMPRESSION[format]}-compressed but this runner has no ${program}; install ${pkg}`
        return errorMessage(spawnError)
      }
      if (code === 0 || killed) return undefined
      return failureReason({ code, signal: killedBy, stdout: '', stderr }, undefined, program).replace(/^(xz|zstd): (\(stdin\): )?/, '')
    },
    close: () => {
      if (child.exitCode === null) kill()
      signal?.removeEventListener('abort', onAbort)
    },
  }
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
  const format = await detectFormat(file, label)
  if (format === 'elf') {
    throw new ActionError(
      `qemu-url: ${label} is a single emulator binary; put {target} in qemu-url to download one emulator per target, or point it at an archive`,
    )
  }
  const deb = format === 'deb' ? await findDebData(file, label) : undefined
  const tarFormat: TarFormat = deb ? deb.format : (format as TarFormat)
  const what = deb ? `${deb.name} in ${label}` : label
  const wanted = new Set(want.names)
  const best = new Map<string, Candidate>()
  const refused = new Map<string, string>()
  const offered = new Set<string>()
  const written: string[] = []
  let declared = 0
  let serial = 0
  let stop = false
  let taking: EmulatorSink | undefined

  const dec = decompress(file, tarFormat, deb ? { start: deb.offset, size: deb.size } : undefined, label, opts.signal)
  let ending: 'end' | 'stopped'
  try {
    ending = await readTar(
      dec.stream,
      async h => {
        throwIfAborted(opts.signal)
        const key = h.name.replace(/^(\.\/)+/, '').replace(/\/+$/, '')
        if (
          h.name.startsWith('/') ||
          key.split('/').includes('..') ||
          (h.linkname && h.type === 'hardlink' && (h.linkname.startsWith('/') || h.linkname.split('/').includes('..')))
        ) {
          throw new ActionError(
            `${label} contains the member "${h.name}", which would be written outside the destination; refusing to use this archive; check qemu-url`,
          )
        }
        declared += h.fullSize
        if (declared > opts.limits.archive) {
          throw new ActionError(`${what} declares more than ${opts.limits.archive} bytes of content (a decompression bomb?); refusing it - check qemu-url`)
        }
        const parts = key.split('/')
        const m = EMULATOR_NAME.exec(parts[parts.length - 1])
        // usr/share holds docs, man pages and binfmt-support files named like emulators
        if (!m || parts.includes('share') || !findTarget(m[1])) return 'skip'
        const target = m[1]
        if (h.type !== 'file') {
          if (!refused.has(target)) refused.set(target, `${h.name} is ${KIND[h.type]}, not the emulator itself`)
          return 'skip'
        }
        offered.add(target)
        if (!wanted.has(target)) return 'skip'
        if (h.fullSize > opts.limits.emulator) {
          throw new ActionError(
            `${what}: ${h.name} is ${h.fullSize} bytes, more than any emulator (limit ${opts.limits.emulator}); refusing the archive - check qemu-url`,
          )
        }
        const inBin = parts.length > 1 && /^s?bin$/.test(parts[parts.length - 2])
        const rank = [m[2] ? 0 : 1, inBin ? 0 : 1, parts.length, serial]
        const current = best.get(target)
        if (current && compare(current.rank, rank) <= 0) return 'skip'
        const out = path.join(destDir, `.member-${target}-${serial++}`)
        written.push(out)
        const sink = new EmulatorSink(target, out, opts.host, `${h.name} in ${label}`, opts.limits.emulator, opts.signal)
        taking = sink
        return {
          write: c => sink.write(c),
          end: async () => {
            await sink.end()
            taking = undefined
            if (current) await fs.rm(current.file.path, { force: true })
            best.set(target, { target, rank, file: sink.result(out) })
            // Everything asked for is here: the rest of the archive is not read.
            if (want.required && [...wanted].every(t => best.has(t))) stop = true
          },
        }
      },
      () => stop,
    )
  } catch (e) {
    dec.close()
    // A member cut short still holds its file open.
    await taking?.abandon()
    await Promise.all(written.map(f => fs.rm(f, { force: true })))
    const complaint = await dec.failure()
    if (opts.signal?.aborted) throw opts.signal.reason ?? e
    if (complaint?.startsWith('!')) throw new ActionError(complaint.slice(1))
    if (e instanceof TarFormatError) {
      if (complaint) throw new ActionError(`${what} is corrupt or truncated (${complaint}); the download may be incomplete; re-run or check qemu-url`)
      if (e.notTar) {
        throw new ActionError(
          `${label} is ${tarFormat === 'tar' ? 'not' : `${COMPRESSION[tarFormat]}-compressed but not`} a tar archive (${e.message}); expected ${ACCEPTED}; check qemu-url`,
        )
      }
      throw new ActionError(`${what} is corrupt or truncated (${e.message}); the download may be incomplete; re-run or check qemu-url`)
    }
    if (e instanceof ActionError || opts.signal?.aborted) throw e
    throw new ActionError(
      `${what} is corrupt or truncated (${errorMessage(e).replace(/^Error: /, '')}); the download may be incomplete; re-run or check qemu-url`,
    )
  }
  dec.close()
  if (ending === 'end') {
    const complaint = await dec.failure()
    if (complaint) {
      await Promise.all(written.map(f => fs.rm(f, { force: true })))
      throw new ActionError(
        complaint.startsWith('!')
          ? complaint.slice(1)
          : `${what} is corrupt or truncated (${complaint}); the download may be incomplete; re-run or check qemu-url`,
      )
    }
  }

  const missing = want.required ? want.names.filter(t => !best.has(t)) : []
  if (missing.length) {
    await Promise.all(written.map(f => fs.rm(f, { force: true })))
    const why = missing.map(t => refused.get(t)).find(r => r !== undefined)
    if (why) throw new ActionError(`${label}: ${why}; check qemu-url`)
    const present = [...offered].sort()
    const holds = present.length ? `it holds: ${present.join(', ')}` : 'it holds no qemu-<target> emulators'
    const looked = missing.map(t => `qemu-${t}[-static]`).join(', ')
    throw new ActionError(`${label} has no emulator for ${missing.join(', ')} (looked for ${looked}); ${holds}; choose from those targets or check qemu-url`)
  }
  const emulators = new Map<string, EmulatorFile>()
  for (const c of best.values()) {
    const out = path.join(destDir, `qemu-${c.target}`)
    await fs.rename(c.file.path, out)
    emulators.set(c.target, { ...c.file, path: out })
  }
  return { emulators, offered: ending === 'end' ? [...offered].sort() : undefined }
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
