import { execFile } from 'child_process'
import { createHash } from 'crypto'
import * as fs from 'fs'
import { promises as fsp } from 'fs'
import * as path from 'path'
import { readCompressedTar } from './archive'
import { sha256File } from './checksum'
import { ActionError, errorMessage, untrusted } from '../errors'
import { pause } from '../timeouts'
import { download, DownloadError, NetworkPolicy, openRequest, transport, Transient } from './download'
import { SizeLimits, throwIfAborted } from './limits'
import { TarHeader } from './tar'
import { Log } from '../log'

/**
 * What the main step leaves for the post step to save (as actions/setup-node does): the directory
 * holding the files it downloaded, their digests as main read them, and the key.
 */
export interface PendingSave {
  readonly dir: string
  readonly key: string
  readonly files: readonly { readonly slot: string; readonly sha256: string }[]
}

type CacheLog = Pick<Log, 'info' | 'debug' | 'warning' | 'progress'>

/**
 * The key to save `files` under: `<prefix>-` and their digests' hash, so that what an entry holds
 * decides its name; `fresh` (a restored entry was broken or failed its check) adds the time, so that the good
 * entry is saved even when a bad one took its name, and is the newest the next restore finds.
 */
export function saveKey(prefix: string, files: PendingSave['files'], fresh: boolean): string {
  const sums = [...files]
    .sort((a, b) => a.slot.localeCompare(b.slot))
    .map(f => `${f.slot}=${f.sha256}`)
    .join(',')
  const key = `${prefix}-${createHash('sha256').update(sums).digest('hex').slice(0, 16)}`
  return fresh ? `${key}-${Date.now().toString(36)}` : key
}

/** What a restore found: whether there is a service at all, the key it restored and where its files are, or that the restore broke. */
export interface Restored {
  readonly available: boolean
  readonly hit?: string
  /** a directory this run made, holding the restored files by slot; the caller removes it */
  readonly dir?: string
  readonly failed?: true
}

export interface RestoreRequest {
  /** the directory entries are saved from: it decides the entry's version and where in the entry its files lie */
  readonly saveDir: string
  readonly prefix: string
  /** the files of `saveDir` to take (slots); nothing else of an entry is ever written anywhere */
  readonly slots: readonly string[]
  /** where to make the directory the files are written to */
  readonly tempDir: string
  readonly limits: SizeLimits
  readonly network: NetworkPolicy
  readonly signal?: AbortSignal
  readonly log: CacheLog
}

const SERVICE = '/twirp/github.actions.results.api.v1.CacheService/'
/** a file of an entry, as the post step saves it: a slot name, never a path */
const SLOT = /^[a-z0-9_]+$/
/** what the restored files are called in messages (an entry and its member names are untrusted) */
const RESTORED = 'the restored entry'

/**
 * The cache service v2 (Twirp; what @actions/cache speaks when the runner sets ACTIONS_CACHE_SERVICE_V2
 * and ACTIONS_RESULTS_URL, except on GitHub Enterprise Server), or why not.
 */
function serviceV2(): { url: string; token: string } | { why: string; local?: true } {
  const env = process.env
  if (!env.ACTIONS_RESULTS_URL && !env.ACTIONS_CACHE_URL) return { why: 'is not available here (local run?)', local: true }
  const host = (() => {
    try {
      return new URL(env.GITHUB_SERVER_URL || 'https://github.com').hostname.toLowerCase()
    } catch {
      return ''
    }
  })()
  const ghes = host !== 'github.com' && !host.endsWith('.ghe.com') && !host.endsWith('.localhost')
  if (!env.ACTIONS_CACHE_SERVICE_V2 || !env.ACTIONS_RESULTS_URL || ghes) {
    return { why: 'here is not v2 (no ACTIONS_CACHE_SERVICE_V2 / ACTIONS_RESULTS_URL, or GitHub Enterprise Server)' }
  }
  if (!env.ACTIONS_RUNTIME_TOKEN) return { why: 'has no ACTIONS_RUNTIME_TOKEN here' }
  return { url: env.ACTIONS_RESULTS_URL, token: env.ACTIONS_RUNTIME_TOKEN }
}

/** The compression @actions/cache saves with here (zstd when `zstd --quiet --version` says anything, else gzip): part of the entry's version. */
export async function compressionMethod(): Promise<'zstd-without-long' | 'gzip'> {
  const said = await new Promise<string>(resolve => {
    execFile('zstd', ['--quiet', '--version'], { timeout: 10000 }, (_e, stdout, stderr) => resolve(`${stdout ?? ''}${stderr ?? ''}`.trim()))
  })
  return said ? 'zstd-without-long' : 'gzip'
}

/** The version @actions/cache gives an entry of `paths` (utils/cacheUtils getCacheVersion, on Linux): the service matches it exactly. */
export function cacheVersion(paths: readonly string[], compression: string): string {
  return createHash('sha256')
    .update([...paths, compression, '1.0'].join('|'))
    .digest('hex')
}

/**
 * Restores the newest entry saved under `prefix`, with this action's own client and tar reader: the
 * entry is looked up, its archive downloaded, and only the files `req.slots` names (regular files where
 * the post step saved them) are written, into a directory this run makes. An entry holding anything
 * else is not used (a warning says so). What is restored is as untrusted as a download: the caller checks it.
 */
export async function restoreEntry(req: RestoreRequest): Promise<Restored> {
  const { log } = req
  const service = serviceV2()
  if ('why' in service) {
    if (service.local) log.debug(`The Actions cache service ${service.why}; using the runner tool cache only`)
    else log.debug(`The Actions cache service ${service.why}; not restoring: only v2 entries are restored, by this action's own reader`)
    return { available: false }
  }
  const mode = (process.env.ACTIONS_CACHE_MODE ?? '').trim().toLowerCase()
  if (mode === 'none' || mode === 'write-only') {
    log.info(`Not restoring from the Actions cache: the effective cache mode '${mode}' does not permit reads`)
    return { available: true }
  }
  // Nothing left from an earlier run may be saved as this run's.
  fs.rmSync(req.saveDir, { recursive: true, force: true })
  let found: { key: string; url: string } | undefined
  try {
    found = await lookUp(service, req)
  } catch (e) {
    if (req.signal?.aborted) throw e
    log.warning(`Actions cache restore failed, downloading instead: ${errorMessage(e)}`)
    return { available: true, failed: true }
  }
  if (!found) return { available: true }
  const dir = await fsp.mkdtemp(path.join(req.tempDir, 'restored-entry-'))
  const blob = path.join(dir, '.entry')
  let keep = false
  try {
    try {
      await download(found.url, blob, {
        maxBytes: req.limits.archive,
        network: req.network,
        signal: req.signal,
        log,
        label: `the Actions cache entry ${found.key}`,
      })
    } catch (e) {
      if (req.signal?.aborted) throw e
      log.warning(
        `Actions cache restore failed, downloading instead: the entry ${found.key} could not be downloaded (${e instanceof DownloadError ? e.why : errorMessage(e)})`,
      )
      return { available: true, failed: true }
    }
    try {
      await readEntry(blob, dir, req)
    } catch (e) {
      if (req.signal?.aborted) throw e
      log.warning(`Not using the Actions cache entry ${found.key}: ${errorMessage(e)}; downloading instead`)
      return { available: true, failed: true }
    }
    log.info(`Restored emulators from the Actions cache (${found.key})`)
    keep = true
    return { available: true, hit: found.key, dir }
  } finally {
    await fsp.rm(keep ? blob : dir, { recursive: true, force: true })
  }
}

const KIND: Record<TarHeader['type'], string> = {
  file: 'a file',
  hardlink: 'a hard link',
  symlink: 'a symlink',
  directory: 'a directory',
  device: 'a device',
  fifo: 'a FIFO',
  sparse: 'a sparse file',
  other: 'a special member',
}

/** A member name made safe for a log line: one line, short, nothing a runner reads as a command. */
const shownName = (name: string): string => `"${untrusted(name, 120).replace(/[^A-Za-z0-9._/+=@ -]/g, '?')}"`

/**
 * Reads the entry's archive `blob`, writing the files `req.slots` names to `dir/<slot>` and nothing else;
 * anything in it that the post step does not save (another path, a link, a device, a file twice) refuses the entry.
 * A member's name is where `tar -P` would put it, resolved against the workspace as the client packs it.
 */
export async function readEntry(blob: string, dir: string, req: Pick<RestoreRequest, 'saveDir' | 'slots' | 'limits' | 'signal'>): Promise<void> {
  const workspace = process.env.GITHUB_WORKSPACE || process.cwd()
  const saveDir = path.resolve(req.saveDir)
  const wanted = new Set(req.slots)
  const taken = new Set<string>()
  const max = req.limits.download
  let declared = 0
  await readCompressedTar(
    blob,
    RESTORED,
    async (h: TarHeader) => {
      const where = path.resolve(workspace, h.name)
      if (where === saveDir && h.type === 'directory') return 'skip'
      const slot = path.dirname(where) === saveDir ? path.basename(where) : undefined
      if (slot === undefined || !SLOT.test(slot)) {
        throw new ActionError(`${RESTORED} holds ${shownName(h.name)}, which is not a file this action saves (${saveDir}/<file>)`)
      }
      if (h.type !== 'file') throw new ActionError(`${RESTORED} holds ${shownName(h.name)} as ${KIND[h.type]}, not as a regular file`)
      if (h.fullSize > max) throw new ActionError(`${RESTORED} holds ${shownName(h.name)} of ${h.fullSize} bytes, more than ${max}`)
      if ((declared += h.fullSize) > req.limits.archive) throw new ActionError(`${RESTORED} declares more than ${req.limits.archive} bytes`)
      if (taken.has(slot)) throw new ActionError(`${RESTORED} holds ${shownName(h.name)} twice`)
      taken.add(slot)
      if (!wanted.has(slot)) return 'skip'
      const out = await fsp.open(path.join(dir, slot), 'wx', 0o600)
      let size = 0
      return {
        write: async (chunk: Buffer) => {
          if ((size += chunk.length) > max) throw new ActionError(`${RESTORED} holds ${shownName(h.name)} larger than ${max} bytes`)
          await out.write(chunk)
        },
        end: () => out.close(),
      }
    },
    req.signal,
  )
  const missing = req.slots.filter(s => !taken.has(s))
  if (missing.length) throw new ActionError(`${RESTORED} has no ${missing.map(s => `${saveDir}/${s}`).join(', ')}`)
}

/** GetCacheEntryDownloadURL for the newest entry under `req.prefix`; undefined when there is none. */
async function lookUp(service: { url: string; token: string }, req: RestoreRequest): Promise<{ key: string; url: string } | undefined> {
  const version = cacheVersion([req.saveDir], await compressionMethod())
  const body = JSON.stringify({ key: req.prefix, restore_keys: [`${req.prefix}-`], version })
  // As the client resolves it: from the URL's origin.
  const answer = await twirp(new URL(`${SERVICE}GetCacheEntryDownloadURL`, service.url), service.token, body, req)
  if (answer.ok !== true) return undefined
  const key = typeof answer.matched_key === 'string' ? answer.matched_key : ''
  const url = typeof answer.signed_download_url === 'string' ? answer.signed_download_url : ''
  // Only an entry of ours: a key under the prefix asked for.
  if (!key.startsWith(`${req.prefix}-`) || !/^[\x21-\x7e]+$/.test(key))
    throw new Error(`the cache service matched ${shownName(key)}, not a key under ${req.prefix}-`)
  if (!/^https?:/.test(url)) throw new Error(`the cache service gave no http(s) download URL for ${key}`)
  return { key, url }
}

const RETRY = new Set([429, 500, 502, 503, 504])

/** One Twirp JSON call, retried as @actions/cache retries (5 attempts, the wait growing by half each time). */
async function twirp(url: URL, token: string, body: string, req: RestoreRequest): Promise<Record<string, unknown>> {
  const attempts = 5
  for (let attempt = 1; ; attempt++) {
    throwIfAborted(req.signal)
    let why: string
    try {
      const res = await post(url, token, body, req)
      if (res.status === 200) {
        try {
          const parsed = JSON.parse(res.text) as unknown
          if (parsed && typeof parsed === 'object') return parsed as Record<string, unknown>
        } catch {
          // below
        }
        throw new Error('the cache service answered something that is not a JSON object')
      }
      const msg = (() => {
        try {
          const m = (JSON.parse(res.text) as { msg?: unknown }).msg
          return typeof m === 'string' ? ` (${untrusted(m, 200)})` : ''
        } catch {
          return ''
        }
      })()
      why = `HTTP ${res.status}${msg}`
      if (!RETRY.has(res.status)) throw new Error(`the cache service answered ${why}`)
    } catch (e) {
      if (!(e instanceof Transient)) throw e
      why = e.message
    }
    if (attempt >= attempts) throw new Error(`the cache service answered ${why} (after ${attempts} attempts)`)
    const wait = req.network.retryDelayMs * 1.5 ** (attempt - 1) * (1 + Math.random() / 2)
    req.log.info(`Looking up the Actions cache failed (${why}); retrying in ${(wait / 1000).toFixed(1)} s`)
    await pause(wait, req.signal)
  }
}

/** A POST with the runtime token; the answer's body read up to 1 MiB, within the network policy's timeouts. */
async function post(url: URL, token: string, body: string, req: RestoreRequest): Promise<{ status: number; text: string }> {
  const via = await transport(url)
  return new Promise((resolve, reject) => {
    const headers = {
      'Content-Type': 'application/json',
      Accept: 'application/json',
      Authorization: `Bearer ${token}`,
      'Content-Length': Buffer.byteLength(body),
    }
    const { req: r, settled: done } = openRequest(url, { method: 'POST', headers, via }, req.network, req.signal, reject)
    r.on('response', res => {
      const parts: Buffer[] = []
      let size = 0
      res.on('data', (c: Buffer) => {
        if ((size += c.length) > 1 << 20) res.destroy(new Error('the cache service answered more than 1 MiB'))
        else parts.push(c)
      })
      res.on('end', () => {
        done()
        resolve({ status: res.statusCode ?? 0, text: Buffer.concat(parts).toString('utf8') })
      })
      res.on('error', e => {
        done()
        reject(e)
      })
    })
    r.end(body)
  })
}

/**
 * Saves the files the main step downloaded, if they are still what main read; never fails the job.
 * Removes them afterwards: the tool cache keeps the emulators, not the archives.
 */
export async function saveEntry(pending: PendingSave, log: CacheLog): Promise<void> {
  try {
    await save(pending, log)
  } finally {
    fs.rmSync(pending.dir, { recursive: true, force: true })
  }
}

async function save(pending: PendingSave, log: CacheLog): Promise<void> {
  // Only where this action restores from (the v2 service): an entry it would never read is not worth saving.
  const service = serviceV2()
  if ('why' in service) {
    log.debug(`The Actions cache service ${service.why}; not saving`)
    return
  }
  const cache = await import('@actions/cache')
  if (!fs.existsSync(pending.dir)) {
    log.warning(`Actions cache: ${pending.dir} is gone; nothing to save`)
    return
  }
  for (const f of pending.files) {
    const now = await sha256File(`${pending.dir}/${f.slot}`).catch(() => 'unreadable')
    if (now !== f.sha256) {
      log.warning(`Actions cache: ${pending.dir}/${f.slot} changed after the main step read it (sha256 ${now}, was ${f.sha256}); not saving it`)
      return
    }
  }
  try {
    // -1: the service kept nothing (the key exists already, or it refused); @actions/cache says why at info level.
    const id = await cache.saveCache([pending.dir], pending.key)
    if (id === -1) log.info(`The Actions cache did not store the emulators under ${pending.key} (see above); the next job downloads them`)
    else log.info(`Saved emulators to the Actions cache (${pending.key})`)
  } catch (e) {
    log.warning(`Actions cache save failed (the emulators are still used): ${errorMessage(e)}`)
  }
}

/** For post: the state main saved, or undefined. */
export function parsePending(state: string): PendingSave | undefined {
  if (!state) return undefined
  try {
    const p = JSON.parse(state) as PendingSave
    const files = Array.isArray(p.files) && p.files.every(f => typeof f?.slot === 'string' && /^[a-z0-9_]+$/.test(f.slot) && typeof f.sha256 === 'string')
    return typeof p.dir === 'string' && typeof p.key === 'string' && files ? p : undefined
  } catch {
    return undefined
  }
}
