import { errorMessage } from './errors'
import { Log } from './log'
import { CANCEL_GRACE_MS } from './timeouts'

/**
 * The runner cancels a step with SIGINT, then SIGTERM (a terminal's ^C is SIGINT). Either aborts the
 * run: children are killed, unverified entries removed, the lock released. Should that take too long,
 * `overrun` says so and removes what it can, and the process exits anyway. Returns the way to stop watching.
 */
export function watchCancellation(cancel: AbortController, log: Pick<Log, 'info'>, overrun: (signal: NodeJS.Signals) => void): () => void {
  const signals: NodeJS.Signals[] = ['SIGINT', 'SIGTERM']
  let deadline: NodeJS.Timeout | undefined
  const handler = (signal: NodeJS.Signals): void => {
    if (cancel.signal.aborted) return
    log.info(`Received ${signal}: stopping`)
    cancel.abort(signal)
    deadline = setTimeout(() => {
      overrun(signal)
      process.exit(1)
    }, CANCEL_GRACE_MS)
    deadline.unref()
  }
  for (const s of signals) process.on(s, handler)
  return () => {
    clearTimeout(deadline)
    for (const s of signals) process.off(s, handler)
  }
}

/** The run's failure as one line: a cancellation says so, whatever it interrupted. */
export function failureOf(e: unknown, cancel: AbortSignal): string {
  return cancel.aborted ? `the step was cancelled (${String(cancel.reason)})` : errorMessage(e)
}
