import { createHash } from 'crypto'
import { Stats, constants, createReadStream, promises as fs, statSync } from 'fs'
import * as path from 'path'
import { debVersion, detectFormat, extractEmulators } from './archive'
import { ChecksumPolicy } from './checksum'
import { HostArch } from '../elf'
import { ActionError } from '../errors'
import { EmulatorWant, pickEmulators } from '../plan'
import { EmulatorSource, scanDirectory } from './source'
import { NetworkPolicy, download } from './download'
import { passFile } from './emulator-file'
import { SizeLimits, settleAll, throwIfAborted } from './limits'
import { StoredEmulator } from './tool-cache'
import { fileNameOf, redact } from './url'
import { Log } from '../log'

/** What a strategy needs to fetch: where, how big at most, how patient, and when to give up. */
export interface FetchContext {
  readonly host: HostArch
  readonly limits: SizeLimits
  readonly network: NetworkPolicy
  readonly policy: ChecksumPolicy
  /** scratch space for downloads, removed by the caller */
  readonly tempDir: string
  readonly signal?: AbortSignal
  readonly log: Pick<Log, 'info' | 'debug' | 'progress'>
  readonly timings: { download: number; extract: number }
  /** a restored Actions-cache entry: the files to read instead of downloading them, by slot (read as untrusted as a download) */
  readonly restored?: string
}

/** A downloaded file, kept for the Actions cache under its slot ('archive', or the target of a per-target source). */
export interface Kept {
  readonly slot: string
  readonly file: string
  readonly sha256: string
}

interface Materialised {
  /** by emulator name; paths inside `into`, or where they lie for a local directory */
  readonly emulators: ReadonlyMap<string, StoredEmulator>
  /** every emulator the source holds, when known */
  readonly offered?: readonly string[]
  /** the files downloaded (or taken from `restored`) */
  readonly kept?: readonly Kept[]
}

/**
 * Where emulators come from (as setup-node has its distributions): each says
 * what it offers and materialises the emulators asked for into a directory,
 * checked (ELF for this host, static, sizes, qemu-sha256 lines of the files
 * they came from) before anything is kept.
 */
export interface SourceStrategy {
  /** for messages: credentials redacted */
  readonly label: string
  /** used where it lies (a local directory) rather than stored in the tool cache */
  readonly inPlace: boolean
  /** a local file or directory, needing no download */
  readonly local: boolean
  /** what it offers without fetching anything; undefined when only reading it tells */
  offers(): readonly string[] | undefined
  /** the files it downloads for `want`, by slot: what an Actions-cache entry holds in their place */
  slots(want: EmulatorWant): readonly string[]
  materialise(want: EmulatorWant, into: string, ctx: FetchContext): Promise<Materialised>
}

/** What a per-target source with `platforms: all` offers: the emulators of a tonistiigi/binfmt release. */
export const PER_TARGET_ALL = ['aarch64', 'arm', 'riscv64', 'ppc64le', 's390x', 'i386', 'x86_64', 'mips64el', 'mips64', 'loongarch64']

export function strategyFor(source: EmulatorSource): SourceStrategy {
  if (source.perTarget) return new PerTargetSource(source)
  if (source.local) {
    const kind = localKind(source.locate())
    if (kind === 'directory') return new DirectorySource(source.locate())
  }
  return new BundleSource(source)
}

/** A local qemu-url must be a regular file or a directory: stat only, nothing opened (a FIFO would block, /dev/zero never end). */
function localKind(p: string): 'file' | 'directory' {
  let st: Stats
  try {
    st = statSync(p)
  } catch (e) {
    throw new ActionError(`qemu-url: ${p} does not exist (${(e as NodeJS.ErrnoException).code}); check the path`)
  }
  if (st.isFile()) return 'file'
  if (st.isDirectory()) return 'directory'
  const what = st.isFIFO()
    ? 'a FIFO'
    : st.isCharacterDevice()
      ? 'a character device'
      : st.isBlockDevice()
        ? 'a block device'
        : st.isSocket()
          ? 'a socket'
          : 'not a regular file'
  throw new ActionError(`qemu-url: ${p} is ${what}; point it at an archive, an emulator binary or a directory of emulators`)
}

/** A file to read: downloaded (hashed as it arrived) or local (checked and hashed here). */
interface Obtained {
  readonly file: string
  /** the URL (redacted) or path, for messages */
  readonly label: string
  /** the name qemu-sha256 lines use */
  readonly name: string
  readonly sha256: string
}

async function obtain(location: string, local: boolean, ctx: FetchContext, slot: string): Promise<Obtained & Kept> {
  const label = redact(location)
  // The name is always this run's own (it picks the qemu-sha256 line), whatever the file came from.
  const name = fileNameOf(location)
  throwIfAborted(ctx.signal)
  if (ctx.restored && !local) {
    const dest = path.join(await fs.mkdtemp(path.join(ctx.tempDir, 'restored-')), 'download')
    const sha256 = await copyHashed(path.join(ctx.restored, slot), dest, ctx.limits.download, ctx.signal)
    return { file: dest, label: `${label} (from the Actions cache)`, name, sha256, slot }
  }
  if (local) {
    if (localKind(location) !== 'file') throw new ActionError(`qemu-url: ${location} is a directory; with {target} in qemu-url each target names a file`)
    const { size } = await fs.stat(location)
    if (size > ctx.limits.download) {
      throw new ActionError(`qemu-url: ${location} is ${size} bytes, more than the ${ctx.limits.download} an emulator archive may be; check qemu-url`)
    }
    return { file: location, label, name, sha256: await hashFile(location, ctx.signal), slot }
  }
  const dir = await fs.mkdtemp(path.join(ctx.tempDir, 'download-'))
  // The name is ours: the URL's last segment is only a label (it may decode to '../../etc/...').
  const dest = path.join(dir, 'download')
  ctx.log.info(`Downloading ${label}`)
  const got = await download(location, dest, { maxBytes: ctx.limits.download, network: ctx.network, signal: ctx.signal, log: ctx.log })
  return { file: dest, label, name, sha256: got.sha256, slot }
}

/**
 * Copies `src` to `dest` in one read, hashing what it copies: what is checked is what is used, even if
 * `src` changes meanwhile. Only a regular file no larger than `max` (the entry is untrusted: no links).
 */
async function copyHashed(src: string, dest: string, max: number, signal?: AbortSignal): Promise<string> {
  let fh: fs.FileHandle
  try {
    fh = await fs.open(src, constants.O_RDONLY | constants.O_NOFOLLOW)
  } catch (e) {
    throw new ActionError(`${path.basename(src)} is missing from the entry (${(e as NodeJS.ErrnoException).code})`)
  }
  try {
    const st = await fh.stat()
    if (!st.isFile()) throw new ActionError(`${path.basename(src)} in the entry is not a regular file`)
    if (st.size > max) throw new ActionError(`${path.basename(src)} in the entry is ${st.size} bytes, more than ${max}`)
    const h = createHash('sha256')
    const out = await fs.open(dest, 'wx', 0o600)
    try {
      let size = 0
      for await (const chunk of fh.createReadStream({ highWaterMark: 1024 * 1024, signal, autoClose: false }) as AsyncIterable<Buffer>) {
        if ((size += chunk.length) > max) throw new ActionError(`${path.basename(src)} in the entry grew past ${max} bytes`)
        h.update(chunk)
        await out.write(chunk)
      }
    } finally {
      await out.close()
    }
    return h.digest('hex')
  } finally {
    await fh.close()
  }
}

function hashFile(file: string, signal?: AbortSignal): Promise<string> {
  return new Promise((resolve, reject) => {
    const h = createHash('sha256')
    createReadStream(file, { highWaterMark: 1024 * 1024, signal })
      .on('data', d => h.update(d))
      .on('error', reject)
      .on('end', () => resolve(h.digest('hex')))
  })
}

/** A name that may be an emulator itself (covered by its own line) rather than an archive. */
const mayBeEmulator = (name: string): boolean => /^qemu-[^/]+$/.test(name) && !/\.(tar|tgz|gz|xz|zst|deb)/.test(name)

const stored = (e: { path: string; sha256: string; size: number; reportedVersion?: string }, from: Obtained, packageVersion?: string): StoredEmulator => ({
  ...e,
  file: from.name,
  fileSha256: from.sha256,
  ...(packageVersion ? { packageVersion } : {}),
})

/** A source whose files are read (downloaded, or copied from this machine) into the tool cache's staging. */
abstract class FileSource implements SourceStrategy {
  readonly inPlace = false
  readonly local: boolean
  constructor(
    protected readonly source: EmulatorSource,
    /** as messages name it: credentials removed */
    readonly label: string,
  ) {
    this.local = source.local
  }
  abstract offers(): readonly string[] | undefined
  abstract slots(want: EmulatorWant): readonly string[]
  abstract materialise(want: EmulatorWant, into: string, ctx: FetchContext): Promise<Materialised>
}

/** One archive holding every emulator (the tonistiigi/binfmt release, a .deb, a local archive). */
class BundleSource extends FileSource {
  constructor(source: EmulatorSource) {
    super(source, redact(source.locate()))
  }

  offers(): undefined {
    return undefined
  }

  slots(): readonly string[] {
    return ['archive']
  }

  async materialise(want: EmulatorWant, into: string, ctx: FetchContext): Promise<Materialised> {
    let t = performance.now()
    const got = await obtain(this.source.locate(), this.local, ctx, 'archive')
    ctx.timings.download += performance.now() - t
    ctx.policy.checkFile(got, false)
    t = performance.now()
    const x = await extractEmulators(got.file, got.label, want, into, { host: ctx.host, limits: ctx.limits, signal: ctx.signal })
    // A .deb says which package version the emulators are: read once here, kept with them in the tool cache.
    const pkg = await debVersion(got.file, got.label, ctx.signal)
    ctx.timings.extract += performance.now() - t
    return { emulators: new Map([...x.emulators].map(([n, e]) => [n, stored(e, got, pkg)])), offered: x.offered, kept: [got] }
  }
}

/** One file per emulator (`{target}` in qemu-url): an emulator binary, or an archive holding it. */
class PerTargetSource extends FileSource {
  constructor(source: EmulatorSource) {
    super(source, redact(source.id))
  }

  offers(): readonly string[] {
    return PER_TARGET_ALL
  }

  slots(want: EmulatorWant): readonly string[] {
    return pickEmulators(want, PER_TARGET_ALL) ?? []
  }

  async materialise(want: EmulatorWant, into: string, outer: FetchContext): Promise<Materialised> {
    const names = pickEmulators(want, PER_TARGET_ALL) ?? []
    // The first failure stops the sibling downloads and extractions too.
    const stop = new AbortController()
    const signal = outer.signal ? AbortSignal.any([outer.signal, stop.signal]) : stop.signal
    const ctx: FetchContext = { ...outer, signal }
    const all = <T>(jobs: Promise<T>[]): Promise<T[]> => settleAll(jobs, stop)
    const t = performance.now()
    const files = await all(names.map(n => obtain(this.source.locate(n), this.local, ctx, n)))
    ctx.timings.download += performance.now() - t
    for (const f of files) ctx.policy.checkFile(f, mayBeEmulator(f.name))
    const t2 = performance.now()
    const out = await all(
      names.map(async (n, i) => {
        const got = files[i]
        if ((await detectFormat(got.file, got.label)) === 'elf') {
          const e = await passFile(got.file, n, path.join(into, `qemu-${n}`), ctx.host, `qemu-${n} from ${got.label}`, ctx.limits.emulator, ctx.signal)
          return [n, stored(e, got)] as const
        }
        const x = await extractEmulators(got.file, got.label, { names: [n], required: true }, into, { host: ctx.host, limits: ctx.limits, signal: ctx.signal })
        return [n, stored(x.emulators.get(n)!, got)] as const
      }),
    )
    ctx.timings.extract += performance.now() - t2
    return { emulators: new Map(out), offered: PER_TARGET_ALL, kept: files }
  }
}

/** A local directory of emulators (e.g. /usr/bin with Debian's qemu-user-static): checked and used in place. */
class DirectorySource implements SourceStrategy {
  readonly inPlace = true
  readonly local = true
  private found?: Map<string, string>
  constructor(readonly label: string) {}

  offers(): string[] {
    this.found ??= scanDirectory(this.label)
    return [...this.found.keys()]
  }

  slots(): readonly string[] {
    return []
  }

  async materialise(want: EmulatorWant, _into: string, ctx: FetchContext): Promise<Materialised> {
    const offered = this.offers()
    const names = pickEmulators(want, offered) ?? []
    const found = this.found as Map<string, string>
    const t = performance.now()
    const out = await Promise.all(
      names.map(async n => {
        const file = found.get(n)
        if (!file) {
          throw new ActionError(
            `qemu-url: ${this.label} has no qemu-${n} or qemu-${n}-static; it has ${offered.map(k => `qemu-${k}`).join(', ') || 'no emulators'}`,
          )
        }
        const e = await passFile(file, n, undefined, ctx.host, `qemu-${n} from ${file}`, ctx.limits.emulator, ctx.signal)
        return [n, { ...e, file: path.basename(file), fileSha256: e.sha256 }] as const
      }),
    )
    ctx.timings.extract += performance.now() - t
    return { emulators: new Map(out), offered }
  }
}
