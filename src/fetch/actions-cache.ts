import * as fs from 'fs'
import { errorMessage } from '../errors'

/** What the main step leaves for the post step to save (as actions/setup-node does): the entry dir and its key. */
export interface PendingSave {
  readonly dir: string
  readonly key: string
}

/** The name of the state main saves and post reads. */
export const CACHE_STATE = 'emulator-cache'

interface Log {
  info(m: string): void
  debug(m: string): void
  warning(m: string): void
}

/** Restores the tool-cache entry `dir` from the Actions cache; false when there is no service or no hit. */
export async function restoreEntry(dir: string, key: string, log: Log): Promise<boolean> {
  // Loaded only when needed: it is large, and a warm run never needs it.
  const cache = await import('@actions/cache')
  if (!cache.isFeatureAvailable()) {
    log.debug('The Actions cache service is not available here (local run?); using the runner tool cache only')
    return false
  }
  try {
    const hit = await cache.restoreCache([dir], key)
    if (!hit) return false
    log.info(`Restored emulators from the Actions cache (${key})`)
    return true
  } catch (e) {
    log.warning(`Actions cache restore failed, downloading instead: ${errorMessage(e)}`)
    return false
  }
}

/** Saves a tool-cache entry the main step filled from a download; never fails the job. */
export async function saveEntry(pending: PendingSave, log: Log): Promise<void> {
  const cache = await import('@actions/cache')
  if (!cache.isFeatureAvailable()) {
    log.debug('The Actions cache service is not available here (local run?); not saving')
    return
  }
  if (!fs.existsSync(pending.dir)) {
    log.warning(`Actions cache: ${pending.dir} is gone; nothing to save`)
    return
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
    return typeof p.dir === 'string' && typeof p.key === 'string' ? p : undefined
  } catch {
    return undefined
  }
}
