import { AMD64_LEVEL_BASE, amd64LevelOf, argumentsProblem, buildAmd64LevelProbe, buildProbe, PROBE_ARGS, PROBE_EXIT_STATUS } from '../../src/test-programs'
import { allTargets, matchesHeader } from '../../src/targets'

// Running the probes (under qemu-user-static and natively) is in __tests__/integration/probe-qemu.test.ts.

/** Other targets whose magic/mask a target's probe is known to match too. None so far. */
const EXPECTED_OVERLAPS: Readonly<Record<string, readonly string[]>> = {}

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

describe('the x86-64 level probe', () => {
  test('is an x86-64 program only the x86_64 entry matches', () => {
    const probe = buildAmd64LevelProbe()
    const matched = allTargets()
      .filter(o => matchesHeader(o.magic, o.mask, probe))
      .map(o => o.name)
    expect(matched).toEqual(['x86_64'])
  })

  test('its status names a level only from AMD64_LEVEL_BASE + 1 to + 4', () => {
    expect(amd64LevelOf(AMD64_LEVEL_BASE + 1)).toBe(1)
    expect(amd64LevelOf(AMD64_LEVEL_BASE + 4)).toBe(4)
    for (const other of [null, 0, 1, 127, 126, AMD64_LEVEL_BASE, AMD64_LEVEL_BASE + 5, PROBE_EXIT_STATUS]) expect(amd64LevelOf(other)).toBeUndefined()
  })
})
