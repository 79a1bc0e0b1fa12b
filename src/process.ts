import { spawn } from 'child_process'

export interface RunOptions {
  /** written to the child's stdin, then closed */
  input?: string | Buffer
  cwd?: string
  env?: NodeJS.ProcessEnv
  timeoutMs?: number
}

export interface RunResult {
  /** exit status; null when killed by a signal (see `signal`) */
  code: number | null
  signal: NodeJS.Signals | null
  stdout: string
  stderr: string
}

/** Runs programs without a shell. Kept behind an interface so steps can be unit-tested. */
export interface ProcessRunner {
  run(command: string, args: readonly string[], options?: RunOptions): Promise<RunResult>
}

/** Never throws for a non-zero exit; throws only when the program cannot be started (e.g. ENOENT). */
export class ChildProcessRunner implements ProcessRunner {
  run(command: string, args: readonly string[], options: RunOptions = {}): Promise<RunResult> {
    return new Promise((resolve, reject) => {
      const child = spawn(command, args, {
        cwd: options.cwd,
        env: options.env ?? process.env,
        stdio: ['pipe', 'pipe', 'pipe'],
        timeout: options.timeoutMs,
      })
      const out: Buffer[] = []
      const err: Buffer[] = []
      child.stdout.on('data', (d: Buffer) => out.push(d))
      child.stderr.on('data', (d: Buffer) => err.push(d))
      child.on('error', reject)
      child.on('close', (code, signal) =>
        resolve({ code, signal, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString() }),
      )
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
