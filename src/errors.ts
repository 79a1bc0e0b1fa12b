/**
 * A failure the user can fix. The message is one line that names the input or
 * file at fault and what to do; main prints it as the step's error, without a stack.
 */
export class ActionError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'ActionError'
  }
}

export function errorMessage(e: unknown): string {
  return e instanceof Error ? e.message : String(e)
}
