import { spawn } from 'child_process'
import { untrusted } from './errors'
import { PROGRAM_MS } from './timeouts'

export interface RunOptions {
  /** written to the child's stdin, then closed */
  input?: string | Buffer
  /** added to this process's environment (a container engine's CLI pointed at its daemon) */
  env?: Readonly<Record<string, string>>
  /** the child (and everything it started) is killed after this long; default PROGRAM_MS */
  timeoutMs?: number
}

export interface RunResult {
  /** exit status; null when killed by a signal (see `signal`) */
  code: number | null
  signal: NodeJS.Signals | null
  stdout: string
  stderr: string
  /** true when the runner killed it: its timeout ran out */
  timedOut?: boolean
}

/** Runs programs without a shell. Kept behind an interface so steps can be unit-tested. */
export interface ProcessRunner {
  run(command: string, args: readonly string[], options?: RunOptions): Promise<RunResult>
}

/** After the child exits, how long its output may still take to arrive (a grandchild may hold the pipes open). */
const DRAIN_MS = 1000

/** Thrown by `run` when the run was cancelled; the child's process group is already killed. */
export class CancelledError extends Error {
  constructor() {
    super('cancelled')
    this.name = 'CancelledError'
  }
}

/**
 * Never throws for a non-zero exit; throws only when the program cannot be
 * started (e.g. ENOENT) or the run is cancelled. Each child leads a process group
 * of its own, so a timeout or a cancellation kills whatever it started too, and
 * output a leftover grandchild keeps open is not waited for.
 */
export class ChildProcessRunner implements ProcessRunner {
  /** `cancel` aborts every child of this run (the step was cancelled). */
  constructor(private readonly cancel?: AbortSignal) {}

  run(command: string, args: readonly string[], options: RunOptions = {}): Promise<RunResult> {
    if (this.cancel?.aborted) return Promise.reject(new CancelledError())
    return new Promise((resolve, reject) => {
      const child = spawn(command, args, {
        env: options.env ? { ...process.env, ...options.env } : process.env,
        stdio: ['pipe', 'pipe', 'pipe'],
        detached: true,
      })
      const out: Buffer[] = []
      const err: Buffer[] = []
      let timedOut = false
      let cancelled = false
      let settled = false
      const killGroup = (): void => {
        try {
          if (child.pid) process.kill(-child.pid, 'SIGKILL')
        } catch {
          // already gone
        }
      }
      const timer = setTimeout(() => {
        timedOut = true
        killGroup()
      }, options.timeoutMs ?? PROGRAM_MS)
      const onCancel = (): void => {
        cancelled = true
        killGroup()
      }
      this.cancel?.addEventListener('abort', onCancel, { once: true })
      let drain: NodeJS.Timeout | undefined
      const finish = (code: number | null, signal: NodeJS.Signals | null): void => {
        if (settled) return
        settled = true
        clearTimeout(timer)
        clearTimeout(drain)
        this.cancel?.removeEventListener('abort', onCancel)
        child.stdout.destroy()
        child.stderr.destroy()
        if (cancelled) return reject(new CancelledError())
        resolve({ code, signal, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString(), ...(timedOut ? { timedOut } : {}) })
      }
      child.stdout.on('data', (d: Buffer) => out.push(d))
      child.stderr.on('data', (d: Buffer) => err.push(d))
      child.on('error', e => {
        if (settled) return
        settled = true
        clearTimeout(timer)
        this.cancel?.removeEventListener('abort', onCancel)
        reject(e)
      })
      child.on('exit', (code, signal) => {
        // Whatever the child left running goes with it.
        killGroup()
        drain = setTimeout(() => finish(code, signal), DRAIN_MS)
      })
      child.on('close', (code, signal) => finish(code, signal))
      // A child that exits before reading its stdin must not crash us with EPIPE.
      child.stdin.on('error', () => undefined)
      child.stdin.end(options.input ?? '')
    })
  }
}

// Lines that say nothing about the error: pointers to help and hints added after it.
const NOISE = [/^(See|Run) '?docker\b.*--help/i, /^Usage:/, /^dmesg\(1\) may have more information/]

/**
 * The line of a program's output that says what went wrong: buildx's last
 * `ERROR:` line (its progress output repeats it after a `#N` prefix), else the
 * last line that is not colour codes, decoration, a "see --help" pointer or a
 * hint added after the real error; one line of at most 300 characters.
 */
export function errorLine(text: string): string {
  const lines = text
    .split('\n')
    .map(l => untrusted(l).trim())
    .filter(l => l !== '' && !/^[-=_~]+$/.test(l) && !NOISE.some(n => n.test(l)))
  const errorOf = (l: string): string | undefined => /(?:^|\s)ERROR:\s*(.+)$/.exec(l)?.[1]
  const newestFirst = [...lines].reverse()
  const error = newestFirst.find(l => l.startsWith('ERROR:')) ?? newestFirst.find(l => errorOf(l) !== undefined)
  if (error) return untrusted(errorOf(error) ?? error, 300)
  const plain = lines.filter(l => !/^#\d+\s/.test(l) && !/^>/.test(l))
  return untrusted(plain.at(-1) ?? lines.at(-1) ?? '', 300)
}

/**
 * How a program run that did not succeed ended, in words that follow its name:
 * `exited with status 1: <its error line>` (or `... and no message`), `did not
 * finish within 20 s and was stopped`, `was killed by SIGTERM`.
 */
export function describeRun(r: RunResult, timeoutMs: number = PROGRAM_MS): string {
  if (r.timedOut) return `did not finish within ${timeoutMs / 1000} s and was stopped`
  if (r.signal) return `was killed by ${r.signal}`
  const why = errorLine(r.stderr)
  return `exited with status ${r.code}${why ? `: ${why}` : ' and no message'}`
}

/**
 * Why a run failed, for a message that says what was being done: its error line
 * (stderr, else stdout), else how it ended (`program` named in front).
 */
export function failureReason(r: RunResult, timeoutMs?: number, program?: string): string {
  const how = (): string => (program ? `${program} ` : '') + describeRun(r, timeoutMs)
  if (r.timedOut || r.signal) return how()
  return errorLine(r.stderr) || errorLine(r.stdout) || how()
}

/** What tells a command-line process to end: ^C, kill's default, a closed terminal. */
export const END_SIGNALS: readonly NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP']

/**
 * Runs `cleanup` when this process is told to end (^C, SIGTERM, SIGHUP), then lets the signal take its course.
 * `cleanup` is synchronous: nothing else runs before the process goes. Returns the function that stops watching.
 */
export function cleanUpOnSignal(cleanup: (signal: NodeJS.Signals) => void): () => void {
  const off = (): void => {
    for (const s of END_SIGNALS) process.off(s, handler)
  }
  function handler(signal: NodeJS.Signals): void {
    cleanup(signal)
    off()
    process.kill(process.pid, signal)
  }
  for (const s of END_SIGNALS) process.on(s, handler)
  return off
}
