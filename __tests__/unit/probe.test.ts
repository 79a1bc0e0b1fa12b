import { spawnSync } from 'child_process'
import { chmodSync, existsSync, mkdtempSync, rmSync, writeFileSync } from 'fs'
import { tmpdir } from 'os'
import { join } from 'path'
import { buildProbe, PROBE_EXIT_STATUS } from '../../src/probe'
import { allTargets, emulatorName, matchesHeader, Target } from '../../src/targets'

// Runs every probe through Debian's static emulator (qemu-user-static, installed
// by CI) directly, without binfmt_misc. A missing emulator is a failure.

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

function expectExit42(cmd: string, args: string[]): void {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 30_000 })
  expect(r.error).toBeUndefined()
  // stderr is in the compared object only so a failure shows what QEMU said.
  expect({ status: r.status, signal: r.signal, stderr: r.stderr }).toEqual({
    status: PROBE_EXIT_STATUS,
    signal: null,
    stderr: expect.any(String),
  })
}

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

  test.each(targets)('%s: exits with PROBE_EXIT_STATUS under qemu-user-static', (_name, t) => {
    const emulator = `/usr/bin/qemu-${emulatorName(t)}-static`
    expect(existsSync(emulator)).toBe(true)
    expectExit42(emulator, [writeProbe(t)])
  })

  const native = allTargets().filter(t => (NATIVE[process.arch] ?? []).includes(t.name))
  // test.each rejects an empty table, so hosts with no native probes get no test.
  if (native.length > 0) {
    test.each(native.map(t => [t.name, t] as const))('%s: exits with PROBE_EXIT_STATUS natively', (_name, t) => {
      expectExit42(writeProbe(t), [])
    })
  }

  test('throws for a target it has no code for', () => {
    expect(() => buildProbe({ name: 'nios2', family: 'nios2', magic: '7f454c46', mask: 'ffffffff' })).toThrow(/nios2/)
  })
})
