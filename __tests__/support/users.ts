// Running programs as the machine's test users, the way a runner would start a job's step:
// runuser, and a clean environment holding only what the test gives.
import { ChildProcess, execFileSync, spawn, spawnSync } from 'child_process'

/** The PATH a runner's job gets. */
export const RUNNER_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'

export const uidOf = (user: string): number => Number(execFileSync('id', ['-u', user]).toString().trim())

/** runuser's arguments that run `argv` as `user` with exactly `env` (PATH defaults to the runner's). */
export function runuserArgs(user: string, env: Record<string, string>, argv: readonly string[]): string[] {
  const clean = { PATH: RUNNER_PATH, ...env }
  return ['-u', user, '--', '/usr/bin/env', '-i', ...Object.entries(clean).map(([k, v]) => `${k}=${v}`), ...argv]
}

export interface Ran {
  code: number | null
  stdout: string
  stderr: string
}

/** What a started child prints and how it exits. */
export function collect(child: ChildProcess): Promise<Ran> {
  let stdout = ''
  let stderr = ''
  child.stdout?.on('data', (d: Buffer) => (stdout += d.toString()))
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()))
  return new Promise((resolve, reject) => {
    child.on('error', reject)
    child.on('close', code => resolve({ code, stdout, stderr }))
  })
}

/** Runs `argv` as `user` in /tmp with a clean environment; asynchronously, so that a server in this process can answer it. */
export function runAs(user: string, argv: readonly string[], env: Record<string, string>, timeoutMs = 240000): Promise<Ran> {
  return collect(spawn('runuser', runuserArgs(user, env, argv), { cwd: '/tmp', stdio: ['ignore', 'pipe', 'pipe'], timeout: timeoutMs }))
}

export interface Held {
  /** the process running `argv` (runuser's child, once it has exec'd the program) */
  pid: number
  /** kills it and runuser */
  stop: () => void
}

/**
 * Starts `argv` as `user` and resolves once runuser's child runs `program` (at most 30 s; `argv` may exec it,
 * as unshare does): that child, not any process of the user by that name (one an earlier run left, about to exit).
 */
export async function startAs(user: string, argv: readonly string[], program: string): Promise<Held> {
  const runuser = spawn('runuser', ['-u', user, '--', ...argv], { stdio: 'ignore' })
  const stop = (pid?: number): void => {
    if (pid) {
      try {
        process.kill(pid, 'SIGKILL')
      } catch {
        // gone
      }
    }
    runuser.kill('SIGKILL')
  }
  for (let i = 0; i < 300; i++) {
    await new Promise(r => setTimeout(r, 100))
    const found = spawnSync('pgrep', ['-P', String(runuser.pid), '-x', program], { encoding: 'utf8' }).stdout.trim()
    if (found) {
      const pid = Number(found.split('\n')[0])
      return { pid, stop: () => stop(pid) }
    }
  }
  stop()
  throw new Error(`runuser -u ${user} -- ${argv.join(' ')}: ${program} did not start within 30 s`)
}
