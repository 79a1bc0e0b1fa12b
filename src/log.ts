/**
 * The one log interface. The engine and every module below it say what happens through it; each face
 * (the action, the command) decides how that looks. A module takes only the part it uses (Pick<Log, ...>).
 */
export interface Log {
  info(m: string): void
  debug(m: string): void
  warning(m: string): void
  notice(m: string): void
  /** how far a slow download got: a log line in the action, a bar redrawn in place on a terminal */
  progress(p: DownloadProgress): void
  /** a value that must never be shown (a credential in qemu-url): the action masks it in the job's log */
  secret(value: string): void
}

export interface DownloadProgress {
  /** the download as messages may name it (credentials removed) */
  readonly shown: string
  readonly bytes: number
  /** the size the server declared; NaN when it did not */
  readonly declared: number
}

/** Bytes as MB with one decimal, as progress is shown. */
export const mb = (n: number): string => (n / 1048576).toFixed(1)

/** `Downloading <url>: 12.3 of 88.0 MB` (`?` when the server did not say the size). */
export function progressLine(p: DownloadProgress): string {
  return `Downloading ${p.shown}: ${mb(p.bytes)} of ${Number.isFinite(p.declared) ? mb(p.declared) : '?'} MB`
}

/** A log that says nothing: for steps whose words a caller does not want (the command's own access checks). */
export const silentLog: Log = {
  info: () => undefined,
  debug: () => undefined,
  warning: () => undefined,
  notice: () => undefined,
  progress: () => undefined,
  secret: () => undefined,
}
