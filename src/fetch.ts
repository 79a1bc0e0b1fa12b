import { createHash } from 'crypto'
import * as fs from 'fs'
import * as path from 'path'
import * as tc from '@actions/tool-cache'
import { HttpClient } from '@actions/http-client'
import { EmulatorArchive } from './archive'
import { ChecksumList, checkDigest, sha256File } from './checksum'
import { HostArch, checkHostExecutable } from './elf'
import { ActionError, errorMessage } from './errors'
import { ProcessRunner } from './process'
import { EmulatorSource, isDirectory, scanDirectory } from './source'

/** A static QEMU user-mode emulator binary on this runner, ready to be an interpreter. */
export interface Emulator {
  /** QEMU target name of the binary (qemu-<name>) */
  readonly name: string
  readonly path: string
  /** URL or path it came from */
  readonly origin: string
  /** first line of `qemu-<name> --version`, when it answered */
  readonly reportedVersion?: string
}

export interface FetchRequest {
  readonly source: EmulatorSource
  readonly version: string
  readonly host: HostArch
  readonly sha256: ChecksumList
  readonly cache: boolean
  /** what is asked for, as the Actions cache key names it: 'all' or the sorted emulator names */
  readonly selectionKey: string
  /** scratch space; removed by the caller */
  readonly tempDir: string
  readonly runner: ProcessRunner
  readonly log: { info(m: string): void; debug(m: string): void; warning(m: string): void }
}

/** Given what the source offers (emulator names), the names to use. */
export type Chooser = (available: readonly string[]) => string[]

export interface FetchResult {
  readonly emulators: ReadonlyMap<string, Emulator>
  /** true when nothing had to be downloaded */
  readonly cacheHit: boolean
  readonly from: 'tool-cache' | 'actions-cache' | 'download' | 'local'
  readonly timings: { download: number; extract: number }
}

/** What a per-target source with `platforms: all` offers: the emulators of a tonistiigi/binfmt release. */
export const PER_TARGET_ALL = ['aarch64', 'arm', 'riscv64', 'ppc64le', 's390x', 'i386', 'x86_64', 'mips64el', 'mips64', 'loongarch64']

const TOOL = 'setup-qemu-binfmt'
const MANIFEST = 'manifest.json'

interface ManifestEmulator {
  sha256: string
  /** the downloaded or local file it was extracted from, and that file's digest */
  file: string
  fileSha256: string
  reportedVersion?: string
}
interface Manifest {
  source: string
  available: string[]
  emulators: Record<string, ManifestEmulator>
}

const hash = (s: string): string => createHash('sha256').update(s).digest('hex')

/** Tool-cache versions must be semver; other versions get a stable stand-in. */
function toolVersion(version: string): string {
  return /^\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?$/.test(version) ? version : `0.0.0-v${hash(version).slice(0, 12)}`
}

/** Name of the file behind a URL or path, as a qemu-sha256 line names it. */
export function fileNameOf(location: string): string {
  try {
    return decodeURIComponent(path.posix.basename(new URL(location).pathname))
  } catch {
    return path.basename(location)
  }
}

export async function fetchEmulators(req: FetchRequest, choose: Chooser): Promise<FetchResult> {
  const { source } = req
  if (source.local && !source.perTarget && isDirectory(source.locate())) return useDirectory(req, choose)

  // A local file may change in place: its size and mtime are part of its identity.
  let id = `${source.id}|${req.version}|${req.host}`
  if (source.local && !source.perTarget) {
    const st = statOrFail(source.locate())
    id += `|${st.size}|${st.mtimeMs}`
  }
  const arch = `${req.host}-${hash(id).slice(0, 12)}`
  const version = toolVersion(req.version)

  let cachedDir = tc.find(TOOL, version, arch)
  let manifest = cachedDir ? readManifest(cachedDir) : undefined
  let from: FetchResult['from'] = 'tool-cache'
  let names = manifest ? choose(manifest.available) : []
  const missing = (m?: Manifest): string[] => names.filter(n => !m?.emulators[n] || !fs.existsSync(path.join(cachedDir, `qemu-${n}`)))

  if (!manifest || missing(manifest).length) {
    const restored = req.cache && !source.local ? await restoreActionsCache(req, cachePath(version, arch), cacheKey(req, arch)) : false
    if (restored) {
      cachedDir = cachePath(version, arch)
      manifest = readManifest(cachedDir)
      names = manifest ? choose(manifest.available) : []
      from = 'actions-cache'
    }
  }

  const timings = { download: 0, extract: 0 }
  if (!manifest || missing(manifest).length) {
    const result = await populate(req, choose, manifest, cachedDir, version, arch, timings)
    cachedDir = result.dir
    manifest = result.manifest
    names = result.names
    from = source.local ? 'local' : 'download'
    if (req.cache && !source.local) await saveActionsCache(req, cachedDir, cacheKey(req, arch))
  } else {
    req.log.info(`Using cached emulators from ${cachedDir}`)
  }

  await checkCached(req, manifest, names, cachedDir)
  const emulators = new Map<string, Emulator>()
  for (const n of names) {
    const m = manifest.emulators[n]
    emulators.set(n, { name: n, path: path.join(cachedDir, `qemu-${n}`), origin: m.file, reportedVersion: m.reportedVersion })
  }
  return { emulators, cacheHit: from !== 'download', from, timings }
}

function statOrFail(p: string): fs.Stats {
  try {
    return fs.statSync(p)
  } catch (e) {
    throw new ActionError(`qemu-url: ${p} does not exist (${(e as NodeJS.ErrnoException).code}); check the path`)
  }
}

function readManifest(dir: string): Manifest | undefined {
  try {
    return JSON.parse(fs.readFileSync(path.join(dir, MANIFEST), 'utf8')) as Manifest
  } catch {
    return undefined
  }
}

function cachePath(version: string, arch: string): string {
  return path.join(process.env.RUNNER_TOOL_CACHE ?? '', TOOL, version, arch)
}

/** Source, version and host are in `arch`; the selection is keyed as asked, since `all` is only known after reading the archive. */
function cacheKey(req: FetchRequest, arch: string): string {
  return `${TOOL}-1-${arch}-${hash(`${req.version}|${req.selectionKey}`).slice(0, 16)}`
}

/** Downloads (or reads local files), extracts, checks and stores the emulators in the tool cache. */
async function populate(
  req: FetchRequest,
  choose: Chooser,
  previous: Manifest | undefined,
  previousDir: string,
  version: string,
  arch: string,
  timings: { download: number; extract: number },
): Promise<{ dir: string; manifest: Manifest; names: string[] }> {
  const { source } = req
  const staging = fs.mkdtempSync(path.join(req.tempDir, 'emulators-'))
  const manifest: Manifest = { source: source.id, available: [], emulators: {} }
  if (previous) {
    // Keep what an earlier run stored; only what is missing is fetched.
    for (const [n, m] of Object.entries(previous.emulators)) {
      const f = path.join(previousDir, `qemu-${n}`)
      if (fs.existsSync(f)) {
        fs.copyFileSync(f, path.join(staging, `qemu-${n}`))
        manifest.emulators[n] = m
      }
    }
  }

  let names: string[]
  let t = performance.now()
  if (source.perTarget) {
    names = choose(PER_TARGET_ALL)
    manifest.available = PER_TARGET_ALL
    const todo = names.filter(n => !manifest.emulators[n])
    const files = await Promise.all(todo.map(n => obtain(req, source.locate(n))))
    timings.download = performance.now() - t
    t = performance.now()
    await Promise.all(
      todo.map(async (n, i) => {
        const { file, label, sha } = files[i]
        const archive = await EmulatorArchive.open(file, label, req.runner)
        const out =
          archive.format === 'elf'
            ? copyInto(file, staging, n)
            : (await archive.extract([n], staging)).get(n) ?? path.join(staging, `qemu-${n}`)
        manifest.emulators[n] = await describeEmulator(req, out, n, label, sha)
      }),
    )
  } else {
    const { file, label, sha } = await obtain(req, source.locate())
    timings.download = performance.now() - t
    t = performance.now()
    const archive = await EmulatorArchive.open(file, label, req.runner)
    if (archive.format === 'elf') {
      throw new ActionError(
        `qemu-url: ${label} is a single emulator binary; put {target} in qemu-url to download one emulator per target, or point it at an archive`,
      )
    }
    manifest.available = archive.targets()
    names = choose(manifest.available)
    const todo = names.filter(n => !manifest.emulators[n])
    const extracted = await archive.extract(todo, staging)
    await Promise.all(
      todo.map(async n => {
        manifest.emulators[n] = await describeEmulator(req, extracted.get(n) ?? path.join(staging, `qemu-${n}`), n, label, sha)
      }),
    )
  }
  timings.extract = performance.now() - t
  fs.writeFileSync(path.join(staging, MANIFEST), JSON.stringify(manifest, null, 1))
  const dir = await tc.cacheDir(staging, TOOL, version, arch)
  fs.rmSync(staging, { recursive: true, force: true })
  return { dir, manifest, names }
}

function copyInto(file: string, dir: string, name: string): string {
  const out = path.join(dir, `qemu-${name}`)
  fs.copyFileSync(file, out)
  fs.chmodSync(out, 0o755)
  return out
}

/** The file as a local path, downloading it when it is a URL; its digest is checked against qemu-sha256. */
async function obtain(req: FetchRequest, location: string): Promise<{ file: string; label: string; sha: string }> {
  let file = location
  if (!req.source.local) {
    const dir = fs.mkdtempSync(path.join(req.tempDir, 'download-'))
    // The name is ours: the URL's last segment is only a label (it may decode to '../../etc/...').
    const dest = path.join(dir, 'download')
    req.log.info(`Downloading ${location}`)
    try {
      file = await tc.downloadTool(await resolveRelativeRedirects(location), dest)
    } catch (e) {
      const status = (e as { httpStatusCode?: number }).httpStatusCode
      const why = status ? `HTTP ${status}` : errorMessage(e)
      throw new ActionError(`qemu-url: download of ${location} failed: ${why}; check qemu-version and qemu-url`)
    }
  } else {
    statOrFail(location)
  }
  const sha = await sha256File(file)
  const name = fileNameOf(location)
  if (req.sha256.size && !checkDigest(req.sha256, name, sha, name) && !isEmulatorFileName(name)) {
    throw new ActionError(`qemu-sha256: no line for ${name}; add '${sha}  ${name}' once you have checked the file`)
  }
  return { file, label: location, sha }
}

/**
 * @actions/http-client cannot follow a redirect whose Location is relative
 * (actions/http-client#62), common on S3/CloudFront mirrors. Resolve those hops
 * here with HEAD requests; stop at the first absolute one, which the client
 * follows itself (signed download URLs are often valid for GET only).
 */
export async function resolveRelativeRedirects(url: string, maxHops = 10): Promise<string> {
  const client = new HttpClient('setup-qemu-binfmt', [], { allowRedirects: false, socketTimeout: 30000 })
  let current = url
  try {
    for (let hop = 0; hop < maxHops; hop++) {
      const res = await client.head(current)
      res.message.resume()
      const status = res.message.statusCode ?? 0
      const location = res.message.headers.location
      if (status < 300 || status >= 400 || !location || /^[a-z][a-z0-9+.-]*:/i.test(location)) return current
      current = new URL(location, current).toString()
    }
  } catch {
    // HEAD is only a helper here: the download itself reports real failures.
  } finally {
    client.dispose()
  }
  return current
}

const isEmulatorFileName = (name: string): boolean => /^qemu-[^/]+$/.test(name) && !/\.(tar|tgz|gz|xz|zst|deb)/.test(name)

async function describeEmulator(req: FetchRequest, file: string, name: string, label: string, fileSha256: string): Promise<ManifestEmulator> {
  await checkHostExecutable(file, req.host, `qemu-${name} from ${label}`)
  const sha256 = await sha256File(file)
  const r = await req.runner.run(file, ['--version'], { timeoutMs: 10000 }).catch(() => undefined)
  const reportedVersion = r?.code === 0 ? r.stdout.split('\n')[0].trim() : undefined
  return { sha256, file: fileNameOf(label), fileSha256, reportedVersion }
}

/** With qemu-sha256 set, every emulator used must be covered: listed itself, or taken from a listed file. */
async function checkCached(req: FetchRequest, manifest: Manifest, names: readonly string[], dir: string): Promise<void> {
  if (!req.sha256.size) return
  for (const n of names) {
    const m = manifest.emulators[n]
    const listedName = [`qemu-${n}`, `qemu-${n}-static`].find(k => req.sha256.has(k))
    if (listedName) {
      checkDigest(req.sha256, listedName, await sha256File(path.join(dir, `qemu-${n}`)), `qemu-${n}`)
    } else if (!checkDigest(req.sha256, m.file, m.fileSha256, m.file)) {
      throw new ActionError(`qemu-sha256: no line for ${m.file} or qemu-${n}; add '${m.fileSha256}  ${m.file}' once you have checked the file`)
    }
  }
}

/** A local directory of emulators (e.g. qemu-url: /usr/bin with Debian's qemu-user-static): used in place. */
async function useDirectory(req: FetchRequest, choose: Chooser): Promise<FetchResult> {
  const dir = req.source.locate()
  const found = scanDirectory(dir)
  const names = choose([...found.keys()])
  const emulators = new Map<string, Emulator>()
  await Promise.all(
    names.map(async n => {
      const file = found.get(n)
      if (!file) {
        throw new ActionError(`qemu-url: ${dir} has no qemu-${n} or qemu-${n}-static; it has ${[...found.keys()].map(k => `qemu-${k}`).join(', ') || 'no emulators'}`)
      }
      const m = await describeEmulator(req, file, n, file, '')
      if (req.sha256.size) {
        const listed = [path.basename(file), `qemu-${n}`].find(k => req.sha256.has(k))
        if (!listed) throw new ActionError(`qemu-sha256: no line for ${path.basename(file)}; add '${m.sha256}  ${path.basename(file)}' once you have checked the file`)
        checkDigest(req.sha256, listed, m.sha256, file)
      }
      emulators.set(n, { name: n, path: file, origin: file, reportedVersion: m.reportedVersion })
    }),
  )
  return { emulators, cacheHit: true, from: 'local', timings: { download: 0, extract: 0 } }
}

async function restoreActionsCache(req: FetchRequest, dir: string, key: string): Promise<boolean> {
  // Loaded only when needed: it is large, and a warm run never needs it.
  const cache = await import('@actions/cache')
  if (!cache.isFeatureAvailable()) {
    req.log.debug('The Actions cache service is not available here (local run?); using the runner tool cache only')
    return false
  }
  try {
    const hit = await cache.restoreCache([dir], key)
    if (!hit) return false
    // @actions/tool-cache marks complete entries with a sibling file; the Actions cache holds only the directory.
    fs.writeFileSync(`${dir}.complete`, '')
    req.log.info(`Restored emulators from the Actions cache (${key})`)
    return true
  } catch (e) {
    req.log.warning(`Actions cache restore failed, downloading instead: ${errorMessage(e)}`)
    return false
  }
}

async function saveActionsCache(req: FetchRequest, dir: string, key: string): Promise<void> {
  const cache = await import('@actions/cache')
  if (!cache.isFeatureAvailable()) {
    req.log.debug('The Actions cache service is not available here (local run?); not saving')
    return
  }
  try {
    await cache.saveCache([dir], key)
    req.log.info(`Saved emulators to the Actions cache (${key})`)
  } catch (e) {
    req.log.warning(`Actions cache save failed (the emulators are still used): ${errorMessage(e)}`)
  }
}
