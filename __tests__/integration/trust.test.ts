// Trust: the proof checks that a program's arguments arrive intact, and every
// run gives paste-ready qemu-sha256 lines for what it downloaded. A stand-in
// emulator that drops the kernel's preserve-argv0 signal (it execs the real
// qemu-aarch64-static, so the aux vector QEMU reads no longer says P) makes the
// guest see argv[0] twice; verification must catch that and leave nothing.
import { execFileSync } from 'child_process'
import * as fs from 'fs'
import * as path from 'path'
import { runAction } from '../support/action'
import { sha256 } from '../support/fixtures'
import {
  CoreFixtures,
  VERSION,
  closeFixtures,
  expectCleanFailure,
  expectRegistered,
  expectSuccess,
  freshDir,
  myRaw,
  startFixtures,
  summaryRows,
  withKernel,
} from './core-helpers'

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

describe('paste-ready qemu-sha256 lines', () => {
  const TAR_GZ = 'qemu_v7.2.0_linux-amd64.tar.gz'
  const run = (extra: Record<string, string> = {}) =>
    runAction(
      { platforms: 'linux/arm64', 'qemu-url': fx.tarGzUrl, 'qemu-version': VERSION, buildx: 'false', cache: 'false', ...extra },
      // A fresh tool cache each time: every run downloads (cold).
      { toolCache: freshDir('toolcache') },
    )
  /** The summary's 'Files the emulators came from' rows: [line, checked]. */
  const fileRows = (summary: string): string[][] =>
    summaryRows(summary.slice(summary.indexOf('Files the emulators came from')))
      .filter(r => r[0].startsWith('<code>'))
      .map(([l, p]) => [l.replace(/<\/?code>/g, ''), p])

  test("the summary's line pasted into qemu-sha256 makes the next cold run pass; one changed digit fails it", async () => {
    let line = ''
    await withKernel(async () => {
      const first = await run()
      expectSuccess(first)
      const expected = `${sha256(fx.archives.tarGz)}  ${TAR_GZ}`
      expect(fileRows(first.summary)).toEqual([[expected, 'not pinned: set qemu-sha256']])
      expect(first.outputs.sha256).toBe(expected)
      line = fileRows(first.summary)[0][0]
    })

    await withKernel(async () => {
      const pinned = await run({ 'qemu-sha256': line })
      expectSuccess(pinned)
      expect(fileRows(pinned.summary)).toEqual([[line, 'pinned by qemu-sha256']])
      expectRegistered('qemu-aarch64', '/')
    })

    const changed = `${line[0] === '0' ? '1' : '0'}${line.slice(1)}`
    await withKernel(async () => {
      const before = myRaw()
      const r = await run({ 'qemu-sha256': changed })
      expectCleanFailure(r, before, /^qemu-sha256: checksum mismatch for qemu_v7\.2\.0_linux-amd64\.tar\.gz: /, /nothing was registered/)
    })
  })
})
