import { spawn } from 'child_process'

export interface RunOptions {
  /** written to the child's stdin, then closed */
  input?: string | Buffer
  env?: NodeJS.ProcessEnv
  /** the child (and everything it started) is killed after this long; default DEFAULT_TIMEOUT_MS */
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

/** Nothing this action runs should take longer; a program that does is stuck. */
const DEFAULT_TIMEOUT_MS = 300_000
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
      const child = spawn(command, args, { env: options.env ?? process.env, stdio: ['pipe', 'pipe', 'pipe'], detached: true })
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
      }, options.timeoutMs ?? DEFAULT_TIMEOUT_MS)
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

// Lines programs add after the real error, which say nothing about it.
const HINTS = [/^dmesg\(1\) may have more information/]

/** Last meaningful line of a program's error output: the one that usually says what went wrong. */
export function lastLine(text: string): string {
  const lines = text
    .split('\n')
    .map(l => l.trim())
    .filter(l => l && !HINTS.some(h => h.test(l)))
  return lines.length ? lines[lines.length - 1] : ''
}
