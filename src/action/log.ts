import * as core from '@actions/core'
import { untrustedLines } from '../errors'
import { Log, progressLine } from '../log'
import { SetupIO } from '../setup'
import { stepState } from './state'

/**
 * The action's log. Messages carry names, URLs, server messages and program output the action did not write:
 * each passes untrustedLines on its way to the runner, so none can be read as a workflow command.
 */
export const actionLog: Log = {
  info: m => core.info(untrustedLines(m)),
  debug: m => core.debug(untrustedLines(m)),
  warning: m => core.warning(untrustedLines(m)),
  notice: m => core.notice(untrustedLines(m)),
  progress: p => core.info(untrustedLines(progressLine(p))),
  secret: value => core.setSecret(value),
}

/** The engine's io in the action: log groups fold, the handoff is the step state. */
export const actionIO: SetupIO = {
  log: actionLog,
  group: (title, step) => core.group(title, step),
  handoff: stepState.handoff,
}

/** The step's one error; the step fails. */
export function fail(m: string): void {
  core.setFailed(untrustedLines(m))
}

/** An output, as safe as a log line: workflows print outputs. */
export function setOutput(name: string, value: string): void {
  core.setOutput(name, untrustedLines(value))
}
