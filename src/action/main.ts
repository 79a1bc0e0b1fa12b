import * as core from '@actions/core'
import { setMaxListeners } from 'events'
import * as fs from 'fs'
import * as path from 'path'
import { failureOf, watchCancellation } from '../cancellation'
import { ActionError } from '../errors'
import { readInputs } from '../inputs'
import { securePathForRoot } from '../search-path'
import { runnerDirs, setup } from '../setup'
import { actionIO, actionLog as log, fail, setOutput } from './log'
import { writeSummary } from './summary'

/** The action's main step: inputs from the runner, the engine's result to outputs and the job summary. */
export async function runMain(): Promise<void> {
  const cancel = new AbortController()
  // Every child of the run listens for it (dozens of probes at once with platforms: all).
  setMaxListeners(0, cancel.signal)
  let temp: string | undefined
  const removeTemp = (): void => {
    if (temp) fs.rmSync(temp, { recursive: true, force: true })
  }
  const stopWatching = watchCancellation(cancel, log, signal => {
    removeTemp()
    fail(`cancelled (${signal}) and the clean-up did not finish in time`)
  })
  try {
    // Before any program is looked up: as root, none from a directory another user could write.
    securePathForRoot(log.warning)
    // Every bad input fails here, before anything is touched.
    const inputs = readInputs(name => core.getInput(name))
    const dirs = runnerDirs(process.env)
    temp = fs.mkdtempSync(path.join(dirs.temp, 'setup-qemu-binfmt-'))
    const result = await setup(inputs, { temp, toolCache: dirs.toolCache, env: process.env, cancel: cancel.signal }, actionIO)
    for (const [name, value] of Object.entries(result.outputs)) setOutput(name, value)
    log.debug(`timings ${JSON.stringify(result.timings)}`)
    await writeSummary(result.outcome, result.builder)
  } catch (e) {
    fail(failureOf(e, cancel.signal))
    if (!(e instanceof ActionError) && e instanceof Error && e.stack) log.debug(e.stack)
  } finally {
    removeTemp()
    stopWatching()
  }
}
