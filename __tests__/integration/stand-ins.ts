// Stand-in emulators the kernel tests register, and what they need to watch and
// end the runs that use them. Shared by core-kernel, shared-host and review tests.
import { ChildProcess, execFileSync, spawnSync } from 'child_process'
import * as fs from 'fs'
import * as path from 'path'
import { freshDir } from './core-helpers'

/** A static x86_64 program built from C for the test. */
export function buildStatic(dir: string, name: string, source: string): string {
  const c = path.join(dir, `${name}.c`)
  fs.writeFileSync(c, source)
  const out = path.join(dir, name)
  execFileSync('gcc', ['-static', '-O2', '-o', out, c])
  fs.rmSync(c)
  fs.chmodSync(out, 0o755)
  return out
}

function withRealAarch64(label: string): string {
  const dir = freshDir(label)
  fs.copyFileSync('/usr/bin/qemu-aarch64-static', path.join(dir, 'qemu-aarch64-static'))
  fs.chmodSync(path.join(dir, 'qemu-aarch64-static'), 0o755)
  return dir
}

/** qemu-arm-static that is a real static x86_64 QEMU, but for aarch64: it cannot run the arm probe. */
export function fakeDir(): string {
  const dir = withRealAarch64('fake-qemu')
  fs.copyFileSync('/usr/bin/qemu-aarch64-static', path.join(dir, 'qemu-arm-static'))
  fs.chmodSync(path.join(dir, 'qemu-arm-static'), 0o755)
  return dir
}

/**
 * qemu-aarch64-static is the real one; qemu-arm-static is a stand-in that hangs:
 * it ignores SIGTERM and SIGINT and leaves a child holding its output open.
 */
export function hangingDir(): string {
  const dir = withRealAarch64('hanging-qemu')
  buildStatic(
    dir,
    'qemu-arm-static',
    `#include <signal.h>
#include <unistd.h>
int main(void) {
  signal(SIGTERM, SIG_IGN);
  signal(SIGINT, SIG_IGN);
  if (fork() == 0) { sleep(600); return 0; }
  sleep(600);
  return 0;
}
`,
  )
  return dir
}

/** Processes whose command line mentions `dir` (the stand-in emulators of a test). */
export function processesUnder(dir: string): number[] {
  const r = spawnSync('pgrep', ['-f', dir], { encoding: 'utf8' })
  return r.stdout.split('\n').filter(Boolean).map(Number)
}

export function killUnder(dir: string): void {
  for (const pid of processesUnder(dir)) {
    try {
      process.kill(pid, 'SIGKILL')
    } catch {
      // gone
    }
  }
}

/** Resolves once the action's output contains `pattern`. */
export function whenPrinted(child: ChildProcess, pattern: RegExp): Promise<void> {
  return new Promise(resolve => {
    let seen = ''
    const on = (d: Buffer): void => {
      seen += d.toString()
      if (pattern.test(seen)) {
        child.stdout?.off('data', on)
        resolve()
      }
    }
    child.stdout?.on('data', on)
  })
}
