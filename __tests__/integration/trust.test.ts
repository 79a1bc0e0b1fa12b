// Trust: the proof checks that a program's arguments arrive intact. A stand-in
// emulator that drops the kernel's preserve-argv0 signal (it execs the real
// qemu-aarch64-static, so the aux vector QEMU reads no longer says P) makes the
// guest see argv[0] twice; verification must catch that and leave nothing.
import { execFileSync } from 'child_process'
import * as fs from 'fs'
import * as path from 'path'
import { runAction } from '../support/action'
import { CoreFixtures, VERSION, closeFixtures, expectCleanFailure, expectRegistered, expectSuccess, freshDir, myRaw, startFixtures, withKernel } from './core-helpers'

let fx: CoreFixtures
beforeAll(async () => {
  fx = await startFixtures()
}, 120000)
afterAll(() => closeFixtures(fx))

/** A directory holding qemu-aarch64-static: a static program that execs Debian's emulator with the arguments it got. */
function shiftingEmulator(): string {
  const dir = freshDir('shifter')
  const src = path.join(dir, 'shifter.c')
  fs.writeFileSync(
    src,
    [
      '#include <unistd.h>',
      // A fresh execve: QEMU's aux vector no longer carries binfmt_misc's preserve-argv0 flag.
      'int main(int argc, char **argv) { (void)argc; argv[0] = "/usr/bin/qemu-aarch64-static"; execv(argv[0], argv); return 127; }',
      '',
    ].join('\n'),
  )
  execFileSync('gcc', ['-static', '-O2', '-o', path.join(dir, 'qemu-aarch64-static'), src])
  fs.rmSync(src)
  return dir
}

describe('a stand-in emulator that ignores the preserve-argv0 signal', () => {
  let dir: string
  beforeAll(() => {
    dir = shiftingEmulator()
  })

  test('registered with P: verification fails naming the arguments and preserve-argv0, nothing is left registered', async () => {
    await withKernel(async () => {
      const before = myRaw()
      const r = await runAction({ platforms: 'linux/arm64', 'qemu-url': dir, 'qemu-version': VERSION, buildx: 'false' }, { toolCache: freshDir('toolcache') })
      expectCleanFailure(
        r,
        before,
        /^verification failed for linux\/arm64 \(qemu-aarch64\): /,
        /the test program received one argument too many \(argv\[1\] starting with '\/' instead of 'A' 'Q'; argv\[0\] passed twice\)/,
        /preserve-argv0/,
        /the entries this run made were removed/,
      )
    })
  })

  test('registered without P the same stand-in hands the arguments on intact and verifies', async () => {
    await withKernel(async () => {
      const r = await runAction(
        { platforms: 'linux/arm64', 'qemu-url': dir, 'qemu-version': VERSION, 'preserve-argv0': 'false', buildx: 'false' },
        { toolCache: freshDir('toolcache') },
      )
      expectSuccess(r)
      expect(r.outputs.platforms.split(',')).toContain('linux/arm64')
      expectRegistered('qemu-aarch64', '/', 'OCF')
    })
  })
})
