import * as core from '@actions/core'
import { untrustedLines } from './errors'

/**
 * The action's log. Messages carry names, URLs, server messages and program output the action did not write:
 * each passes untrustedLines on its way to the runner, so none can be read as a workflow command.
 */
export const log = {
  info: (m: string): void => core.info(untrustedLines(m)),
  debug: (m: string): void => core.debug(untrustedLines(m)),
  warning: (m: string): void => core.warning(untrustedLines(m)),
  notice: (m: string): void => core.notice(untrustedLines(m)),
  /** the step's one error; the step fails */
  fail: (m: string): void => core.setFailed(untrustedLines(m)),
}

/** An output, as safe as a log line: workflows print outputs. */
export function setOutput(name: string, value: string): void {
  core.setOutput(name, untrustedLines(value))
}
