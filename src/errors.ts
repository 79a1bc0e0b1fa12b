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

/**
 * The one way text the action did not write (a lock holder's answer, a server's message, a URL, a file or
 * member name, a program's output) reaches a log line, the job summary or an output: one line (ANSI escapes
 * go; control characters, line separators and bidi overrides become spaces), with workflow commands made inert
 * in both of the runner's syntaxes, `::name::` at the start of a line and the older `##[name]` anywhere in it;
 * at most `max` characters, the rest cut with '...'.
 */
export function untrusted(text: string, max = Infinity): string {
  const one = text
    .replace(/\x1b\[[0-?]*[ -/]*[@-~]/g, '')
    .replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g, ' ')
    .replace(/##\[/g, '## [')
    .replace(/^(\s*)::/, '$1: :')
  return one.length > max ? `${one.slice(0, max - 3)}...` : one
}

/** Each line of a message as untrusted() makes it, the line breaks kept: for whole log messages. */
export function untrustedLines(text: string): string {
  return text
    .split('\n')
    .map(l => untrusted(l))
    .join('\n')
}

/** What `read` gives, or `fallback` when it throws: for files the kernel may not offer (a /proc entry, an unmounted table). */
export function readOr<R, T>(read: () => R, fallback: T): R | T {
  try {
    return read()
  } catch {
    return fallback
  }
}
