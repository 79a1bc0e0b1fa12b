import { untrustedLines } from '../errors'
import { Log, progressLine } from '../log'
import { SetupIO } from '../setup'
import { withCore } from './core'
import { stepState } from './state'

/**
 * The action's log (through @actions/core once it is loaded: what comes before waits, in order). Messages carry
 * names, URLs, server messages and program output the action did not write: each passes untrustedLines on its
 * way to the runner, so none can be read as a workflow command.
 */
export const actionLog: Log = {
  info: m => withCore(core => core.info(untrustedLines(m))),
  debug: m => withCore(core => core.debug(untrustedLines(m))),
  warning: m => withCore(core => core.warning(untrustedLines(m))),
  notice: m => withCore(core => core.notice(untrustedLines(m))),
  progress: p => withCore(core => core.info(untrustedLines(progressLine(p)))),
  secret: value => withCore(core => core.setSecret(value)),
}

/** The engine's io in the action: log groups fold (as core.group folds them), the handoff is the step state. */
export const actionIO: SetupIO = {
  log: actionLog,
  group: async (title, step) => {
    withCore(core => core.startGroup(title))
    try {
      return await step()
    } finally {
      withCore(core => core.endGroup())
    }
  },
  handoff: stepState.handoff,
}

/** The step's one error; the step fails. */
export function fail(m: string): void {
  withCore(core => core.setFailed(untrustedLines(m)))
}

/** An output, as safe as a log line: workflows print outputs. */
export function setOutput(name: string, value: string): void {
  withCore(core => core.setOutput(name, untrustedLines(value)))
}
