import { errorMessage } from '../errors'
import { readInputs } from '../inputs'
import { teardown } from '../teardown'
import { input, loadCore } from './core'
import { actionLog as log } from './log'
import { stepState } from './state'

/**
 * The action's post step: what the main step handed over (the step state), cleaned up by the
 * engine. The saved state alone never makes this step change the kernel: the step's own input must ask.
 */
export async function runPost(): Promise<void> {
  await loadCore()
  const cacheSave = stepState.cacheSave()
  let builder
  try {
    builder = stepState.builder()
  } catch (e) {
    log.warning(`post: builder cleanup failed: ${errorMessage(e)}`)
  }
  let uninstall
  if (wantsUninstall()) {
    try {
      uninstall = stepState.uninstall()
    } catch (e) {
      log.warning(`uninstall: ${errorMessage(e)}; the entries stay registered`)
    }
  }
  await teardown({ cacheSave, builder, uninstall }, process.env, log)
}

/** The step's `uninstall` input, read as main read it; inputs main refused (it then changed nothing) ask for nothing. */
function wantsUninstall(): boolean {
  try {
    return readInputs(input).uninstall
  } catch (e) {
    log.debug(`post: not uninstalling: ${errorMessage(e)}`)
    return false
  }
}
