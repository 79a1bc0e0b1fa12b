import { errorMessage } from '../errors'
import { readInputs } from '../inputs'
import { securePathForRoot } from '../search-path'
import { runSetup, runnerPlace } from '../setup'
import { input, loadCore } from './core'
import { actionIO, actionLog as log, fail, setOutput } from './log'
import { writeSummary } from './summary'

/** The action's main step: inputs from the runner, the engine's result to outputs and the job summary. */
export async function runMain(): Promise<void> {
  try {
    await mainStep()
  } finally {
    // What the step said before @actions/core was loaded is written by now at the latest.
    await loadCore()
  }
}

async function mainStep(): Promise<void> {
  let inputs
  try {
    // Before any program is looked up: as root, none from a directory another user could write.
    securePathForRoot(log.warning)
    // Every bad input fails here, before anything is touched.
    inputs = readInputs(input)
  } catch (e) {
    return fail(errorMessage(e))
  }
  const running = runSetup(inputs, runnerPlace(process.env), actionIO, fail)
  // The run started the builder's first commands before it first waited: @actions/core loads while they run.
  await loadCore()
  const result = await running
  if (!result) return
  for (const [name, value] of Object.entries(result.outputs)) setOutput(name, value)
  try {
    await writeSummary(result.outcome, result.builder)
  } catch (e) {
    fail(errorMessage(e))
  }
}
