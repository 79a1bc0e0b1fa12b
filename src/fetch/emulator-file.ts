import { createHash, Hash } from 'crypto'
import { createReadStream, promises as fs } from 'fs'
import { ActionError } from '../errors'
import { ELF_HEAD_BYTES, HostArch, checkHostElf, readElfInfo } from '../elf'
import { MemberSink } from './tar'
import { diskError, throwIfAborted } from './limits'

/** An emulator binary as checked on its way in: where it is and what it is. */
export interface EmulatorFile {
  readonly path: string
  readonly sha256: string
  readonly size: number
  /** `qemu-<target> version X.Y.Z (...)`, read from the binary (it carries the line --version prints) */
  readonly reportedVersion?: string
}

/** Finds `qemu-<target> version ...` in a stream without keeping the stream. */
export class VersionScanner {
  private readonly pattern: Buffer
  private carry = Buffer.alloc(0)
  private found?: string
  private pending?: Buffer

  constructor(target: string) {
    this.pattern = Buffer.from(`qemu-${target} version `, 'latin1')
  }

  private static line(buf: Buffer): string | undefined {
    const end = buf.findIndex(b => b === 0 || b === 10)
    if (end < 0) return buf.length > 200 ? buf.subarray(0, 200).toString('latin1') : undefined
    return buf.subarray(0, end).toString('latin1')
  }

  update(chunk: Buffer): void {
    if (this.found) return
    if (this.pending) {
      this.pending = Buffer.concat([this.pending, chunk.subarray(0, 256)])
      this.found = VersionScanner.line(this.pending)
      if (this.found || this.pending.length > 256) this.pending = undefined
      return
    }
    // Across the chunk boundary, then within the chunk.
    const edge = Buffer.concat([this.carry, chunk.subarray(0, this.pattern.length)])
    let at = edge.indexOf(this.pattern)
    let from: Buffer | undefined
    if (at >= 0 && at < this.carry.length) from = Buffer.concat([this.carry.subarray(at), chunk])
    else {
      at = chunk.indexOf(this.pattern)
      if (at >= 0) from = chunk.subarray(at)
    }
    if (from) {
      this.found = VersionScanner.line(from)
      if (!this.found) this.pending = Buffer.from(from)
      return
    }
    this.carry = Buffer.from(chunk.subarray(Math.max(0, chunk.length - this.pattern.length + 1)))
  }

  get version(): string | undefined {
    const v = this.found ?? (this.pending ? this.pending.toString('latin1') : undefined)
    return v?.replace(/[^\x20-\x7e]/g, '').trim() || undefined
  }
}

const FLUSH_BYTES = 1024 * 1024

/**
 * Streams an emulator's bytes to `dest` (or nowhere, to describe a file in
 * place): hashes them, checks the ELF header before the first byte is
 * written, and reads the QEMU version on the way. `limit` bounds the bytes.
 */
export class EmulatorSink implements MemberSink {
  private readonly hash: Hash = createHash('sha256')
  private readonly scanner: VersionScanner
  private file?: fs.FileHandle
  private head: Buffer[] = []
  private batch: Buffer[] = []
  private batched = 0
  private size = 0
  private checked = false

  constructor(
    private readonly target: string,
    private readonly dest: string | undefined,
    private readonly host: HostArch,
    /** names the emulator in errors, e.g. "qemu-aarch64 in <url>" */
    private readonly label: string,
    private readonly limit: number,
    private readonly signal?: AbortSignal,
  ) {
    this.scanner = new VersionScanner(target)
  }

  private check(): void {
    const head = this.head.length === 1 ? this.head[0] : Buffer.concat(this.head)
    checkHostElf(readElfInfo(head.subarray(0, ELF_HEAD_BYTES)), head, this.host, this.label, `qemu-${this.target}`)
    this.checked = true
  }

  async write(chunk: Buffer): Promise<void> {
    throwIfAborted(this.signal)
    this.size += chunk.length
    if (this.size > this.limit) {
      throw new ActionError(`${this.label} is larger than ${this.limit} bytes, more than any emulator; refusing the archive - check qemu-url`)
    }
    this.hash.update(chunk)
    this.scanner.update(chunk)
    if (!this.checked) {
      this.head.push(chunk)
      if (this.size < ELF_HEAD_BYTES) return
      this.check()
      for (const c of this.head) this.queue(c)
      this.head = []
    } else this.queue(chunk)
    if (this.batched >= FLUSH_BYTES) await this.flush()
  }

  private queue(c: Buffer): void {
    if (!this.dest) return
    this.batch.push(c)
    this.batched += c.length
  }

  private async flush(): Promise<void> {
    if (!this.dest || !this.batch.length) return
    const dest = this.dest
    try {
      this.file ??= await fs.open(dest, 'wx', 0o755)
      await this.file.writev(this.batch)
    } catch (e) {
      throw diskError(e, dest)
    }
    this.batch = []
    this.batched = 0
  }

  async end(): Promise<void> {
    if (!this.checked) {
      this.check()
      for (const c of this.head) this.queue(c)
      this.head = []
    }
    await this.flush()
    if (this.dest) {
      // An empty batch never opened the file.
      this.file ??= await fs.open(this.dest, 'wx', 0o755).catch(e => {
        throw diskError(e, this.dest as string)
      })
      await this.file.close()
      this.file = undefined
    }
  }

  /** Closes the file after a failure (the caller removes it). */
  async abandon(): Promise<void> {
    await this.file?.close().catch(() => undefined)
    this.file = undefined
  }

  result(path: string): EmulatorFile {
    return { path, sha256: this.hash.digest('hex'), size: this.size, reportedVersion: this.scanner.version }
  }
}

/** Reads a file once through an EmulatorSink (copying it to `dest` when given). */
export async function passFile(
  file: string,
  target: string,
  dest: string | undefined,
  host: HostArch,
  label: string,
  limit: number,
  signal?: AbortSignal,
): Promise<EmulatorFile> {
  const sink = new EmulatorSink(target, dest, host, label, limit, signal)
  try {
    for await (const chunk of createReadStream(file, { highWaterMark: FLUSH_BYTES, signal }) as AsyncIterable<Buffer>) await sink.write(chunk)
    await sink.end()
  } catch (e) {
    await sink.abandon()
    if (dest) await fs.rm(dest, { force: true })
    throw e
  }
  return sink.result(dest ?? file)
}
