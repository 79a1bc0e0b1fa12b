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

/** A system call's error as `CODE: what`, without the call and path Node appends (`EINVAL: invalid argument`); else the message. */
export function errnoMessage(e: unknown): string {
  const err = e as NodeJS.ErrnoException
  return err.code ? `${err.code}: ${err.message.replace(/^\w+: /, '').split(',')[0]}` : errorMessage(e)
}

/** `text` as one line of at most `max` characters, for a message: control characters become spaces, the rest is cut with '...'. */
export function clip(text: string, max: number): string {
  const one = text.replace(/[\x00-\x1f\x7f]/g, ' ')
  return one.length > max ? `${one.slice(0, max - 3)}...` : one
}

/** What `read` gives, or `fallback` when it throws: for files the kernel may not offer (a /proc entry, an unmounted table). */
export function readOr<R, T>(read: () => R, fallback: T): R | T {
  try {
    return read()
  } catch {
    return fallback
  }
}
