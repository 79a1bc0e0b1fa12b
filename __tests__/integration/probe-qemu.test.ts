import { spawnSync } from 'child_process'
import { chmodSync, existsSync, mkdtempSync, rmSync, writeFileSync } from 'fs'
import { tmpdir } from 'os'
import { join } from 'path'
import { buildProbe, PROBE_ARGS, PROBE_EXIT_STATUS } from '../../src/probe'
import { allTargets, emulatorName, Target } from '../../src/targets'

// Runs every probe through Debian's static emulator (qemu-user-static, installed
// by CI) directly, without binfmt_misc, with the arguments verification passes
// and with vectors shifted by one (QEMU's -0 sets the guest's argv[0]). A
// missing emulator is a failure.

/** Probes the host kernel runs itself, keyed by Node's process.arch. */
const NATIVE: Readonly<Record<string, readonly string[]>> = {
  x64: ['x86_64', 'i386', 'i486'],
}

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

  const native = allTargets().filter(t => (NATIVE[process.arch] ?? []).includes(t.name))
  // test.each rejects an empty table, so hosts with no native probes get no test.
  if (native.length > 0) {
    test.each(native.map(t => [t.name, t] as const))('%s: exits with argc + argv[1][0] natively', (_name, t) => {
      const file = writeProbe(t)
      expectExit(file, [...PROBE_ARGS], PROBE_EXIT_STATUS)
      expectExit(file, [file, ...PROBE_ARGS], 4 + code('/'))
    })
  }
})
