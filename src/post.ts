import * as core from '@actions/core'
import { BuilderState, cleanupBuilder } from './buildx/builder'
import { errorMessage } from './errors'
import { CACHE_STATE, parsePending, saveEntry } from './fetch/actions-cache'
import { ChildProcessRunner } from './process'

/**
 * The post phase: removes the buildx builder the main phase created. Emulator
 * registrations stay: later steps and containers of the job may still need them.
 * Nothing here fails the job; problems are warnings.
 */
export async function post(): Promise<void> {
  // Emulators this job downloaded go to the Actions cache here, off the main step's clock.
  const pending = parsePending(core.getState(CACHE_STATE))
  if (pending) await saveEntry(pending, { info: core.info, debug: core.debug, warning: core.warning })
  const saved = core.getState('builder')
  if (!saved) {
    core.debug('post: no builder to clean up')
    return
  }
  try {
    await cleanupBuilder(JSON.parse(saved) as BuilderState, new ChildProcessRunner(), { info: core.info, warning: core.warning })
  } catch (e) {
    core.warning(`post: builder cleanup failed: ${errorMessage(e)}`)
  }
}
