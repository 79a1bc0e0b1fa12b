import { spawnSync } from 'child_process'
import { chmodSync, existsSync, mkdtempSync, rmSync, writeFileSync } from 'fs'
import { tmpdir } from 'os'
import { join } from 'path'
import { AMD64_LEVEL_BASE, buildAmd64LevelProbe, buildProbe, PROBE_ARGS, PROBE_EXIT_STATUS } from '../../src/test-programs'
import { allTargets, emulatorName, Target } from '../../src/targets'
import { LDSO_X86_64, ldsoAmd64Levels, runsI386Natively, skippedHere } from '../support/host'

// Runs every probe through Debian's static emulator (qemu-user-static, installed
// by CI) directly, without binfmt_misc, with the arguments verification passes
// and with vectors shifted by one (QEMU's -0 sets the guest's argv[0]). A
// missing emulator is a failure.

/** Probes the host kernel runs itself: learned, not assumed (some x86_64 kernels run no 32-bit x86). */
const NATIVE: readonly string[] = process.arch === 'x64' ? ['x86_64', ...(runsI386Natively() ? ['i386', 'i486'] : [])] : []

let dir: string
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'probe-test-'))
})
afterAll(() => {
  rmSync(dir, { recursive: true, force: true })
})

function writeProbe(t: Target): string {
  const file = join(dir, `probe-${t.name}`)
  writeFileSync(file, buildProbe(t))
  chmodSync(file, 0o755)
  return file
}

function expectExit(cmd: string, args: string[], status: number): void {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 30_000 })
  expect(r.error).toBeUndefined()
  // stderr is in the compared object only so a failure shows what QEMU said.
  expect({ status: r.status, signal: r.signal, stderr: r.stderr }).toEqual({ status, signal: null, stderr: expect.any(String) })
}

const code = (c: string): number => c.charCodeAt(0)

const targets = allTargets().map(t => [t.name, t] as const)

describe('buildProbe', () => {
  test.each(targets)('%s: exits with argc + argv[1][0] under qemu-user-static, shifted vectors included', (_name, t) => {
    const emulator = `/usr/bin/qemu-${emulatorName(t)}-static`
    expect(existsSync(emulator)).toBe(true)
    const file = writeProbe(t)
    expectExit(emulator, [file, ...PROBE_ARGS], PROBE_EXIT_STATUS)
    // argv[0] lost: the guest sees ['A', 'Q'].
    expectExit(emulator, ['-0', PROBE_ARGS[0], file, ...PROBE_ARGS.slice(1)], 2 + code('Q'))
    // argv[0] twice: the guest sees [file, file, 'A', 'Q'].
    expectExit(emulator, [file, file, ...PROBE_ARGS], 4 + code('/'))
    // Another first byte moves the status by as much: the byte is really read.
    expectExit(emulator, [file, 'z', 'Q'], 3 + code('z'))
  })

  const native = allTargets().filter(t => NATIVE.includes(t.name))
  // test.each rejects an empty table, so hosts with no native probes get no test.
  if (native.length > 0) {
    test.each(native.map(t => [t.name, t] as const))('%s: exits with argc + argv[1][0] natively', (_name, t) => {
      const file = writeProbe(t)
      expectExit(file, [...PROBE_ARGS], PROBE_EXIT_STATUS)
      expectExit(file, [file, ...PROBE_ARGS], 4 + code('/'))
    })
  }
  if (process.arch === 'x64' && !runsI386Natively()) {
    skippedHere('i386, i486: exit with argc + argv[1][0] natively', 'this kernel does not run 32-bit x86 programs (or a binfmt_misc entry takes them)')
  }
})

describe('the x86-64 level probe reports the level glibc finds', () => {
  const levelProbe = (): string => {
    const file = join(dir, 'probe-amd64-level')
    writeFileSync(file, buildAmd64LevelProbe())
    chmodSync(file, 0o755)
    return file
  }
  // ld.so lists v2..v4 it supports; the probe exits with BASE + the highest level (v1 when none).
  const statusFor = (levels: readonly string[]): number => AMD64_LEVEL_BASE + 1 + levels.length

  const hostLevels = ldsoAmd64Levels()
  if (hostLevels) {
    test(`on this CPU: the level ${LDSO_X86_64} --help reports supported`, () => {
      expectExit(levelProbe(), [], statusFor(hostLevels))
    })
  } else {
    skippedHere('on this CPU', `no ${LDSO_X86_64} that reports x86-64 levels here (not an x86-64 glibc host)`)
  }

  // QEMU's CPU models give the probe CPUs this host is not: each level, and AVX state checks.
  const emulator = '/usr/bin/qemu-x86_64-static'
  const models = ['qemu64', 'Nehalem-v1', 'Haswell-v1', 'Skylake-Server-v1', 'max']
  if (hostLevels && existsSync(emulator)) {
    test.each(models)('under qemu-x86_64 -cpu %s: the level ld.so reports under the same CPU', model => {
      const levels = ldsoAmd64Levels([emulator, '-cpu', model])
      expect(levels).toBeDefined()
      expectExit(emulator, ['-cpu', model, levelProbe()], statusFor(levels!))
    })
    test('the CPU models above cover levels v1, v2 and v3', () => {
      const seen = new Set(models.map(m => ldsoAmd64Levels([emulator, '-cpu', m])!.length + 1))
      for (const level of [1, 2, 3]) expect(seen).toContain(level)
    })
  } else {
    skippedHere('under qemu-x86_64 -cpu <model>', `needs ${emulator} and an x86-64 ${LDSO_X86_64} to compare with`)
  }
})
