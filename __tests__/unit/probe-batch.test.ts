// The batch that runs test programs through one /bin/sh (shellProbes), with
// stand-in programs (shell scripts): every way a program can end, a hang that
// the timeout ends for the whole batch, and a cancellation.
import * as fs from 'fs'
import * as os from 'os'
import * as path from 'path'
import { CancelledError, ChildProcessRunner, RunResult } from '../../src/process'
import { shellProbes } from '../../src/verify'

let dir: string
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'probe-batch-'))
})
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }))

function program(name: string, body: string, mode = 0o755): string {
  fs.writeFileSync(path.join(dir, name), `#!/bin/sh\n${body}\n`, { mode })
  return name
}

/** Running, not a zombie waiting to be reaped. */
const alive = (pid: number): boolean => {
  try {
    return !/^\d+ \(.*\) Z/.test(fs.readFileSync(`/proc/${pid}/stat`, 'utf8'))
  } catch {
    return false
  }
}
async function gone(pid: number): Promise<boolean> {
  for (let i = 0; i < 40 && alive(pid); i++) await new Promise(r => setTimeout(r, 50))
  return !alive(pid)
}

test('each program ends its own way, all reported from one batch, arguments passed', async () => {
  const names = [
    program('args', 'exit $(( $# + 60 ))'),
    program('first', '[ "$1" = A ] && [ "$2" = Q ] && exit 7; exit 9'),
    program('talks', 'echo "qemu: unhandled CPU exception" >&2; echo second line >&2; exit 1'),
    program('segv', 'kill -SEGV $$'),
    program('noexec', 'exit 0', 0o644),
  ]
  fs.writeFileSync(path.join(dir, 'garbage'), Buffer.from([0x7f, 0x45, 0x4c, 0x46, 0, 1, 2, 3]), { mode: 0o755 })
  const out = await shellProbes(new ChildProcessRunner()).runAll(dir, [...names, 'garbage', 'missing'])
  const plain = (n: string): RunResult => out.get(n) as RunResult
  expect(plain('args')).toEqual({ code: 62, signal: null, stdout: '', stderr: '' })
  expect(plain('first').code).toBe(7)
  expect(plain('talks')).toEqual({ code: 1, signal: null, stdout: '', stderr: 'qemu: unhandled CPU exception' })
  expect(plain('segv')).toMatchObject({ code: null, signal: 'SIGSEGV' })
  expect((out.get('noexec') as NodeJS.ErrnoException).code).toBe('EACCES')
  expect((out.get('garbage') as NodeJS.ErrnoException).code).toBe('ENOEXEC')
  expect((out.get('missing') as NodeJS.ErrnoException).code).toBe('ENOENT')
})

test('a program that hangs: the batch stops at its timeout, the others are reported, the hanging one (and its child) killed', async () => {
  const pids = path.join(dir, 'pids')
  const names = [program('quick', 'exit 3'), program('hangs', `sleep 600 & echo $! >${pids}; echo $$ >>${pids}; wait`)]
  const start = Date.now()
  const out = await shellProbes(new ChildProcessRunner(), 1500).runAll(dir, names)
  expect(Date.now() - start).toBeLessThan(10_000)
  expect((out.get('quick') as RunResult).code).toBe(3)
  expect(out.get('hangs')).toMatchObject({ code: null, timedOut: true })
  for (const pid of fs.readFileSync(pids, 'utf8').trim().split('\n').map(Number)) expect({ pid, gone: await gone(pid) }).toEqual({ pid, gone: true })
})

test('cancelled: the batch rejects with CancelledError and nothing of it runs on', async () => {
  const pids = path.join(dir, 'pids')
  const names = [program('hangs', `echo $$ >${pids}; sleep 600`)]
  const cancel = new AbortController()
  const run = shellProbes(new ChildProcessRunner(cancel.signal), 60_000).runAll(dir, names)
  for (let i = 0; i < 100 && !fs.existsSync(pids); i++) await new Promise(r => setTimeout(r, 50))
  cancel.abort()
  await expect(run).rejects.toBeInstanceOf(CancelledError)
  expect(await gone(Number(fs.readFileSync(pids, 'utf8')))).toBe(true)
})
