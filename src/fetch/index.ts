import { createHash } from 'crypto'
import * as fs from 'fs'
import * as path from 'path'
import { ChecksumList, ChecksumPolicy, sha256File } from './checksum'
import { HostArch } from '../elf'
import { ActionError, errorMessage } from '../errors'
import { EmulatorWant, pickEmulators } from '../plan'
import { EmulatorSource } from './source'
import { PendingSave, Restored, restoreEntry, saveKey } from './actions-cache'
import { DEFAULT_NETWORK, NetworkPolicy } from './download'
import { DEFAULT_LIMITS, SizeLimits } from './limits'
import { FetchContext, Kept, SourceStrategy, strategyFor } from './strategies'
import { StoredEmulator, ToolCacheEntry } from './tool-cache'
import { FileDigest } from './pins'
import { Log } from '../log'

/** A static QEMU user-mode emulator binary on this runner, ready to be an interpreter. */
export interface Emulator {
  /** QEMU target name of the binary (qemu-<name>) */
  readonly name: string
  readonly path: string
  /** the file it came from (its name, as a qemu-sha256 line has it) or, for a local directory, its path */
  readonly origin: string
  /** the line `qemu-<name> --version` prints, as read from the binary */
  readonly reportedVersion?: string
}

export interface FetchRequest {
  readonly source: EmulatorSource
  readonly version: string
  readonly host: HostArch
  readonly sha256: ChecksumList
  readonly cache: boolean
  /** which emulators, from Plan.emulatorWant() */
  readonly want: EmulatorWant
  /** what is asked for, as the Actions cache key names it: 'all' or the sorted emulator names */
  readonly selectionKey: string
  /** scratch space; removed by the caller */
  readonly tempDir: string
  readonly log: Pick<Log, 'info' | 'debug' | 'warning' | 'progress'>
  /** stops downloads and decompressors promptly, removes their files, and rejects the fetch */
  readonly signal?: AbortSignal
  /** where emulators are kept between runs */
  readonly toolCache: string
  readonly limits?: SizeLimits
  readonly network?: NetworkPolicy
}

export interface FetchResult {
  /** by emulator name: exactly the ones to register */
  readonly emulators: ReadonlyMap<string, Emulator>
  /** true only when the emulators came from the tool cache or the Actions cache (as actions/cache and setup-* define a hit) */
  readonly cacheHit: boolean
  /**
   * The emulators' own version, when known and the same for all: a .deb's Version field, else (for a
   * source the version input does not name) the QEMU version they report, read when they were stored.
   */
  readonly version?: string
  readonly from: 'tool-cache' | 'actions-cache' | 'download' | 'local'
  readonly timings: { download: number; extract: number }
  /** for the post step: the entry to save to the Actions cache (only ever what came from a download) */
  readonly pendingSave?: PendingSave
  /** the files the emulators came from (downloaded or local), as qemu-sha256 lines name them */
  readonly files: readonly FileDigest[]
}

const TOOL = 'setup-qemu-binfmt'

const hash = (s: string): string => createHash('sha256').update(s).digest('hex')

// semver 2.0 as @actions/tool-cache's find() takes it: no leading zeros in numeric identifiers (7.2.0-01 is not one).
const IDENT = '(?:0|[1-9]\\d*|\\d*[A-Za-z-][0-9A-Za-z-]*)'
const SEMVER = new RegExp(`^(?:0|[1-9]\\d*)\\.(?:0|[1-9]\\d*)\\.(?:0|[1-9]\\d*)(?:-${IDENT}(?:\\.${IDENT})*)?$`)
/** Tool-cache versions must be semver, so that other steps' find() sees them; other versions get a stable stand-in. */
export function toolVersion(version: string): string {
  return SEMVER.test(version) ? version : `0.0.0-v${hash(version).slice(0, 12)}`
}

function networkPolicy(req: FetchRequest): NetworkPolicy {
  return req.network ?? DEFAULT_NETWORK
}

/**
 * The emulators `req.want` names, from the tool cache when it has them intact,
 * else from the Actions cache, else fetched from the source in one pass and
 * stored. With qemu-sha256 lines, the digests of the files to be registered
 * are checked before this returns, on cold and warm runs alike.
 */
export async function fetchEmulators(req: FetchRequest): Promise<FetchResult> {
  const { source } = req
  const strategy = strategyFor(source)
  const policy = new ChecksumPolicy(req.sha256)
  const timings = { download: 0, extract: 0 }
  const ctx: FetchContext = {
    host: req.host,
    limits: req.limits ?? DEFAULT_LIMITS,
    network: networkPolicy(req),
    policy,
    tempDir: req.tempDir,
    signal: req.signal,
    log: req.log,
    timings,
  }
  if (strategy.inPlace) return useInPlace(req, strategy, ctx)

  const cached = new CachedEntry(req, strategy, ctx)
  let got: Pick<FetchResult, 'from' | 'pendingSave'> = { from: 'tool-cache' }
  if (!cached.complete()) got = await fillEntry(req, cached, strategy, ctx)
  else req.log.info(`Using cached emulators from ${cached.entry.dir}`)
  // Pins hold for what an earlier run stored too: the bytes about to be registered are hashed, not the marker believed.
  if (policy.active) await cached.recheckStored()
  const chosen = cached.chosen()
  // One line per file the emulators came from (an archive holds many): what the summary offers to pin.
  const files = [...new Map([...chosen.values()].map(e => [e.file, e.fileSha256]))].map(([name, sha256]) => ({ name, sha256 }))
  return {
    emulators: verified(chosen, policy),
    cacheHit: got.from === 'tool-cache' || got.from === 'actions-cache',
    from: got.from,
    timings,
    pendingSave: got.pendingSave,
    files,
    version: ownVersion(source, chosen.values()),
  }
}

/** A local directory's emulators, used where they lie. */
async function useInPlace(req: FetchRequest, strategy: SourceStrategy, ctx: FetchContext): Promise<FetchResult> {
  const m = await strategy.materialise(req.want, '', ctx)
  // Used where they lie: the summary names the file itself.
  const inPlace = new Map([...verified(m.emulators, ctx.policy)].map(([n, e]) => [n, { ...e, origin: e.path }]))
  const files = [...m.emulators.values()].map(e => ({ name: path.basename(e.path), sha256: e.sha256 }))
  // Used where they lie: nothing came from a cache.
  return { emulators: inPlace, cacheHit: false, from: 'local', timings: ctx.timings, files, version: ownVersion(req.source, m.emulators.values()) }
}

/**
 * The tool cache entry a request is stored in, what it holds, and the emulators added to it
 * in this run. Its identity is the source, the version and the host (and, for a local file,
 * its size and mtime); a local file the version input does not name is stored under the
 * version its emulators report.
 */
class CachedEntry {
  entry: ToolCacheEntry
  stored: { emulators: ReadonlyMap<string, StoredEmulator>; offered?: readonly string[] }
  /** what this run placed: checked against the pins on the way in */
  readonly fresh = new Set<string>()
  /** the Actions cache key's prefix: a key is this and what the entry holds (see actions-cache.ts) */
  readonly keyPrefix: string
  private readonly root: string
  private readonly arch: string

  constructor(
    private readonly req: FetchRequest,
    private readonly strategy: SourceStrategy,
    private readonly ctx: FetchContext,
  ) {
    const { source } = req
    // A local file the version input does not name is its own version: it is stored under the version its
    // emulators report (learned when they are stored, found again by its identity alone).
    const learnsVersion = source.local && !source.versioned
    let id = learnsVersion ? `${source.id}|${req.host}` : `${source.id}|${req.version}|${req.host}`
    // A local file may change in place: its size and mtime are part of its identity.
    if (source.local && !source.perTarget) {
      const st = fs.statSync(source.locate())
      id += `|${st.size}|${st.mtimeMs}`
    }
    this.arch = `${req.host}-${hash(id).slice(0, 12)}`
    this.root = req.toolCache
    this.entry = learnsVersion
      ? (ToolCacheEntry.find(this.root, TOOL, this.arch) ?? ToolCacheEntry.at(this.root, TOOL, PENDING, this.arch))
      : ToolCacheEntry.at(this.root, TOOL, toolVersion(req.version), this.arch)
    this.keyPrefix = `${TOOL}-3-${this.arch}-${hash(`${req.version}|${req.selectionKey}`).slice(0, 16)}`
    // Under a pin, what the entry says about where an emulator came from is believed only where no one else could have written it.
    const stored = this.entry.read(ctx.policy.active)
    if (stored.doubt) req.log.info(`Not believing the tool cache entry ${this.entry.dir} while emulators are pinned: ${stored.doubt}; reading the source again`)
    this.stored = stored
  }

  /** The emulators to use, once the source's offer (or the entry's record of it) is known. */
  names(): string[] | undefined {
    return pickEmulators(this.req.want, this.strategy.offers() ?? this.stored.offered)
  }

  complete(): boolean {
    return this.names()?.every(n => this.stored.emulators.has(n)) ?? false
  }

  /** Only what is missing; `all` with an unknown offer reads the whole source. */
  missing(): EmulatorWant {
    const wanted = this.names()
    return wanted ? { names: wanted.filter(n => !this.stored.emulators.has(n)), required: true } : this.req.want
  }

  /** Reads `want` from the source (or the restored Actions-cache files) into the entry; the downloaded files, for the Actions cache. */
  async fill(want: EmulatorWant, restored?: string): Promise<readonly Kept[]> {
    const staging = this.entry.stage()
    try {
      const m = await this.strategy.materialise(want, staging, { ...this.ctx, restored })
      // Nothing unchecked enters the tool cache.
      for (const [n, e] of m.emulators) this.ctx.policy.checkEmulator(n, e.sha256, { name: e.file, sha256: e.fileSha256 })
      // A local file that names no version is stored under the version its emulators report.
      const pending = this.entry
      if (path.basename(path.dirname(this.entry.dir)) === PENDING)
        this.entry = ToolCacheEntry.at(this.root, TOOL, toolVersion(qemuVersionOf(m.emulators.values()) ?? this.req.version), this.arch)
      const placed = this.entry.commit(staging, m.emulators, m.offered ?? this.stored.offered)
      if (this.entry !== pending) pending.removeIfEmpty()
      for (const n of placed.keys()) this.fresh.add(n)
      this.stored = { emulators: new Map([...this.stored.emulators, ...placed]), offered: m.offered ? [...m.offered] : this.stored.offered }
      return m.kept ?? []
    } catch (e) {
      fs.rmSync(staging, { recursive: true, force: true })
      throw e
    }
  }

  /** Hashes the stored emulators this run did not place: an earlier run's marker is not believed under a pin. */
  async recheckStored(): Promise<void> {
    for (const n of (this.names() ?? []).filter(x => !this.fresh.has(x))) {
      const e = this.stored.emulators.get(n) as StoredEmulator
      const actual = await sha256File(e.path)
      if (actual !== e.sha256) {
        throw new ActionError(
          `qemu-sha256: ${e.path} in the tool cache changed after it was stored (sha256 ${actual}, stored ${e.sha256}); nothing was registered - remove ${this.entry.dir} and re-run`,
        )
      }
    }
  }

  chosen(): Map<string, StoredEmulator> {
    return new Map((this.names() ?? []).map(n => [n, this.stored.emulators.get(n) as StoredEmulator]))
  }
}

/**
 * Fills what the entry lacks: from the Actions cache when it has an entry that reads as a download
 * would, else from the source; a download is kept for the post step to save.
 */
async function fillEntry(
  req: FetchRequest,
  cached: CachedEntry,
  strategy: SourceStrategy,
  ctx: FetchContext,
): Promise<Pick<FetchResult, 'from' | 'pendingSave'>> {
  const want = cached.missing()
  const useCache = req.cache && !req.source.local
  // Where the post step saves from; a restore writes only into a directory of its own.
  const cacheDir = path.join(cached.entry.dir, 'source')
  // A restored entry holds the downloaded files, as untrusted as a download: read and checked (pins too) exactly as one.
  const cache: Restored = useCache
    ? await restoreEntry({
        saveDir: cacheDir,
        prefix: cached.keyPrefix,
        slots: strategy.slots(want),
        tempDir: req.tempDir,
        limits: ctx.limits,
        network: ctx.network,
        signal: ctx.signal,
        log: req.log,
      })
    : { available: false }
  let failed = cache.failed ?? false
  if (cache.hit && cache.dir) {
    try {
      await cached.fill(want, cache.dir)
      return { from: 'actions-cache' }
    } catch (e) {
      if (ctx.signal?.aborted) throw e
      failed = true
      req.log.warning(`Not using the Actions cache entry ${cache.hit}: ${errorMessage(e)}; downloading instead`)
    } finally {
      fs.rmSync(cache.dir, { recursive: true, force: true })
    }
  }
  const kept = await cached.fill(want)
  const pendingSave = useCache ? keepForSave(kept, cacheDir, cached.keyPrefix, failed, cache.available, req.log) : undefined
  return { from: req.source.local ? 'local' : 'download', pendingSave }
}

/** Where a local file's emulators are staged before their version is known. */
const PENDING = '.pending'

/** The QEMU version every one of the emulators reports (`qemu-aarch64 version 7.2.22 (...)` -> 7.2.22), if they agree. */
function qemuVersionOf(emulators: Iterable<StoredEmulator>): string | undefined {
  const found = new Set([...emulators].map(e => /version (\d+\.\d+\.\d+)/.exec(e.reportedVersion ?? '')?.[1]))
  const [only] = found
  return found.size === 1 ? only : undefined
}

/** See FetchResult.version. */
function ownVersion(source: EmulatorSource, emulators: Iterable<StoredEmulator>): string | undefined {
  const all = [...emulators]
  const packages = new Set(all.map(e => e.packageVersion))
  const [pkg] = packages
  if (packages.size === 1 && pkg) return pkg
  return source.versioned ? undefined : qemuVersionOf(all)
}

/**
 * Copies the downloaded files where the post step saves them from; undefined (and a warning) if that
 * fails. Without the cache service nothing is copied: the post step says it is not saving.
 */
function keepForSave(kept: readonly Kept[], dir: string, prefix: string, fresh: boolean, service: boolean, log: FetchRequest['log']): PendingSave | undefined {
  const files = kept.map(k => ({ slot: k.slot, sha256: k.sha256 }))
  if (!service) return { dir, key: saveKey(prefix, files, fresh), files }
  try {
    fs.mkdirSync(dir, { recursive: true, mode: 0o755 })
    // Whole files only: another run of the same entry may be saving the same slot.
    for (const k of kept) {
      const tmp = path.join(dir, `.${k.slot}-${process.pid}`)
      fs.copyFileSync(k.file, tmp)
      fs.renameSync(tmp, path.join(dir, k.slot))
    }
  } catch (e) {
    log.warning(`Not saving to the Actions cache: cannot copy the downloads to ${dir} (${errorMessage(e)})`)
    return undefined
  }
  return { dir, key: saveKey(prefix, files, fresh), files }
}

/** The policy's verdict on each emulator, then the emulators as main uses them. */
function verified(emulators: ReadonlyMap<string, StoredEmulator>, policy: ChecksumPolicy): Map<string, Emulator> {
  const out = new Map<string, Emulator>()
  for (const [n, e] of emulators) {
    policy.checkEmulator(n, e.sha256, { name: e.file, sha256: e.fileSha256 })
    out.set(n, { name: n, path: e.path, origin: e.file, reportedVersion: e.reportedVersion })
  }
  return out
}
