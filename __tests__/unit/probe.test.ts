import { spawnSync } from 'child_process'
import { chmodSync, existsSync, mkdtempSync, rmSync, writeFileSync } from 'fs'
import { tmpdir } from 'os'
import { join } from 'path'
import { argumentsProblem, buildProbe, PROBE_ARGS, PROBE_EXIT_STATUS } from '../../src/probe'
import { allTargets, emulatorName, matchesHeader, Target } from '../../src/targets'

// Runs every probe through Debian's static emulator (qemu-user-static, installed
// by CI) directly, without binfmt_misc, with the arguments verification passes
// and with vectors shifted by one (QEMU's -0 sets the guest's argv[0]). A
// missing emulator is a failure.

/** Other targets whose magic/mask a target's probe is known to match too. None so far. */
const EXPECTED_OVERLAPS: Readonly<Record<string, readonly string[]>> = {}

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
  test.each(targets)('%s: is a tiny ELF its own binfmt entry (and only it) matches', (name, t) => {
    const probe = buildProbe(t)
    expect(probe.length).toBeLessThan(300)
    expect(matchesHeader(t.magic, t.mask, probe)).toBe(true)
    const matched = allTargets()
      .filter(o => matchesHeader(o.magic, o.mask, probe))
      .map(o => o.name)
      .sort()
    expect(matched).toEqual([name, ...(EXPECTED_OVERLAPS[name] ?? [])].sort())
  })

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

  test('throws for a target it has no code for', () => {
    expect(() => buildProbe({ name: 'nios2', family: 'nios2', magic: '7f454c46', mask: 'ffffffff' })).toThrow(/nios2/)
  })
})

describe('argumentsProblem', () => {
  test('the expected status is argc + first byte of argv[1] for [path, ...PROBE_ARGS]', () => {
    expect(PROBE_ARGS).toEqual(['A', 'Q'])
    expect(PROBE_EXIT_STATUS).toBe(3 + code('A'))
    expect(argumentsProblem(PROBE_EXIT_STATUS)).toBeUndefined()
  })

  test('argv[0] lost: names the arguments received and expected, and preserve-argv0', () => {
    expect(argumentsProblem(2 + code('Q'))).toBe(
      "the test program received the arguments 'Q' instead of 'A' 'Q' (argv[0] lost, one argument too few): the emulator and the entry's preserve-argv0 (P) flag disagree",
    )
  })

  test('argv[0] twice: names the first byte received and the arguments expected, and preserve-argv0', () => {
    expect(argumentsProblem(4 + code('/'))).toBe(
      "the test program received one argument too many (argv[1] starting with '/' instead of 'A' 'Q'; argv[0] passed twice): the emulator and the entry's preserve-argv0 (P) flag disagree",
    )
  })

  test('any other status says what was expected', () => {
    expect(argumentsProblem(42)).toMatch(/^the test program exited with status 42 instead of 68 \(argc \+ first byte of argv\[1\] for the arguments 'A' 'Q'\)/)
    expect(argumentsProblem(0)).toMatch(/exited with status 0 instead of 68/)
  })
})
