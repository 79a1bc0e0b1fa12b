import { createHash } from 'crypto'
import * as fs from 'fs'
import { errorMessage } from '../errors'
import { sha256File } from '../checksum'

/**
 * What the main step leaves for the post step to save (as actions/setup-node does): the directory
 * holding the files it downloaded, their digests as main read them, and the key.
 */
export interface PendingSave {
  readonly dir: string
  readonly key: string
  readonly files: readonly { readonly slot: string; readonly sha256: string }[]
}

interface Log {
  info(m: string): void
  debug(m: string): void
  warning(m: string): void
}

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

/** What a restore found: whether there is a service at all, the key it restored, or that the restore broke. */
export interface Restored {
  readonly available: boolean
  readonly hit?: string
  readonly failed?: true
}

/**
 * Restores the newest entry saved under `prefix` into `dir`. What it restores is as untrusted as a
 * download: the caller checks it.
 */
export async function restoreEntry(dir: string, prefix: string, log: Log): Promise<Restored> {
  // Loaded only when needed: it is large, and a warm run never needs it.
  const cache = await import('@actions/cache')
  if (!cache.isFeatureAvailable()) {
    log.debug('The Actions cache service is not available here (local run?); using the runner tool cache only')
    return { available: false }
  }
  // Nothing left from an earlier run may pass for what was restored.
  fs.rmSync(dir, { recursive: true, force: true })
  try {
    // No entry is saved under the prefix itself: the newest whose key starts with it wins. Looked up
    // first, because a restore that breaks (the client warns) returns what a miss returns.
    const found = await cache.restoreCache([dir], prefix, [`${prefix}-`], { lookupOnly: true })
    if (!found) return { available: true }
    const hit = await cache.restoreCache([dir], found)
    if (!hit) return { available: true, failed: true }
    log.info(`Restored emulators from the Actions cache (${hit})`)
    return { available: true, hit }
  } catch (e) {
    log.warning(`Actions cache restore failed, downloading instead: ${errorMessage(e)}`)
    return { available: true, failed: true }
  }
}

/**
 * Saves the files the main step downloaded, if they are still what main read; never fails the job.
 * Removes them afterwards: the tool cache keeps the emulators, not the archives.
 */
export async function saveEntry(pending: PendingSave, log: Log): Promise<void> {
  try {
    await save(pending, log)
  } finally {
    fs.rmSync(pending.dir, { recursive: true, force: true })
  }
}

async function save(pending: PendingSave, log: Log): Promise<void> {
  const cache = await import('@actions/cache')
  if (!cache.isFeatureAvailable()) {
    log.debug('The Actions cache service is not available here (local run?); not saving')
    return
  }
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
