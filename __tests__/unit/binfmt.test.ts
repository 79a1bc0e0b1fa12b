import { effectiveFlags, parseEntry, registerLine, sameEntry, EntrySpec } from '../../src/binfmt'
import { planChanges, stagedBy, stagingName } from '../../src/register'
import { allTargets, getTarget, hexToEscaped } from '../../src/targets'

const aarch64 = getTarget('aarch64')
const spec = (over: Partial<EntrySpec> = {}): EntrySpec => ({
  name: 'qemu-aarch64',
  offset: 0,
  magic: aarch64.magic,
  mask: aarch64.mask,
  interpreter: '/opt/hostedtoolcache/setup-qemu-binfmt/10.2.3-68/amd64-0123456789ab/qemu-aarch64',
  flags: 'PCF',
  ...over,
})

// What the kernel prints for an entry (format of fs/binfmt_misc.c's entry_status).
const kernelText = (s: EntrySpec, flags: string, enabled = true): string =>
  `${enabled ? 'enabled' : 'disabled'}\ninterpreter ${s.interpreter}\nflags: ${flags}\noffset ${s.offset}\nmagic ${s.magic}\nmask ${s.mask}\n`

describe('register line', () => {
  test('is the kernel format with \\x escapes', () => {
    expect(registerLine(spec())).toBe(`:qemu-aarch64:M::${hexToEscaped(aarch64.magic)}:${hexToEscaped(aarch64.mask)}:${spec().interpreter}:PCF`)
    expect(registerLine(spec()).startsWith(':qemu-aarch64:M::\\x7f\\x45\\x4c\\x46\\x02\\x01\\x01\\x00')).toBe(true)
  })

  test('rejects interpreter paths the kernel cannot take', () => {
    expect(() => registerLine(spec({ interpreter: '/' + 'x'.repeat(127) }))).toThrow(/longer than the kernel's 127 characters; set RUNNER_TOOL_CACHE/)
    expect(() => registerLine(spec({ interpreter: '/a:b/qemu' }))).toThrow(/contains ':'/)
  })
})

describe('kernel entry parsing', () => {
  test('round trip of every target', () => {
    for (const t of allTargets()) {
      const s = spec({ name: `qemu-${t.name}`, magic: t.magic, mask: t.mask })
      const e = parseEntry(s.name, kernelText(s, 'POCF'))
      expect(e).toMatchObject({ name: s.name, enabled: true, interpreter: s.interpreter, flags: 'POCF', magic: t.magic, mask: t.mask })
      expect(sameEntry(e, s)).toBe(true)
    }
  })

  test('a missing mask line means all ones', () => {
    expect(parseEntry('x', 'enabled\ninterpreter /i\nflags: \noffset 0\nmagic 7f454c46\n').mask).toBe('ffffffff')
  })

  test('C implies O; order does not matter', () => {
    expect(effectiveFlags('PCF')).toBe('POCF')
    expect(effectiveFlags('FCP')).toBe('POCF')
    expect(effectiveFlags('F')).toBe('F')
  })
})

describe('planChanges', () => {
  const wanted = [{ target: aarch64, spec: spec() }]
  const entry = (flags: string, over: Partial<EntrySpec> = {}, enabled = true) =>
    parseEntry(over.name ?? 'qemu-aarch64', kernelText(spec(over), flags, enabled))
  const plain = { reset: false, pinned: false }
  const kinds = (changes: ReturnType<typeof planChanges>): string[] =>
    changes.map(c => (c.kind === 'remove' ? `remove ${c.entry.name}` : c.kind === 'replace' ? `replace (${c.why})` : c.kind))

  test('adds what is missing', () => {
    expect(kinds(planChanges([], wanted, plain))).toEqual(['add'])
  })
  test('keeps an identical entry', () => {
    expect(kinds(planChanges([entry('POCF')], wanted, plain))).toEqual(['keep'])
  })
  test('with pins, an identical entry is registered again from the checked file, not kept by path', () => {
    expect(kinds(planChanges([entry('POCF')], wanted, { reset: false, pinned: true }))).toEqual(['replace (pinned)'])
  })
  test('replaces a distro entry without F, another interpreter, or a disabled one', () => {
    expect(kinds(planChanges([entry('OC', { interpreter: '/usr/libexec/qemu-binfmt/aarch64-binfmt-P' })], wanted, plain))).toEqual(['replace (differs)'])
    expect(kinds(planChanges([entry('POC')], wanted, plain))).toEqual(['replace (differs)'])
    expect(kinds(planChanges([entry('POCF', {}, false)], wanted, plain))).toEqual(['replace (differs)'])
  })
  test('reset replaces the wanted entries and removes every other qemu-* entry, nothing else and no staging entry of another run', () => {
    const existing = [entry('POCF'), entry('F', { name: 'qemu-riscv64' }), entry('F', { name: 'qemu-riscv64.staged-4242' }), entry('', { name: 'python3.11' })]
    expect(kinds(planChanges(existing, wanted, { reset: true, pinned: false }))).toEqual(['remove qemu-riscv64', 'replace (reset)'])
  })
  test('refuses to manage a name outside qemu-*', () => {
    expect(() => planChanges([], [{ target: aarch64, spec: spec({ name: 'aarch64' }) }], plain)).toThrow(/non-qemu/)
  })
})

describe('staging names', () => {
  test('carry the pid of the run that made them, and only qemu-* names count', () => {
    expect(stagingName('qemu-aarch64', 4242)).toBe('qemu-aarch64.staged-4242')
    expect(stagedBy('qemu-aarch64.staged-4242')).toBe(4242)
    expect(stagedBy('qemu-aarch64')).toBeUndefined()
    expect(stagedBy('aarch64.staged-12')).toBeUndefined()
  })
})

describe('target table', () => {
  test('34 targets, magic and mask of equal length', () => {
    expect(allTargets()).toHaveLength(34)
    for (const t of allTargets()) expect(t.magic.length).toBe(t.mask.length)
  })
})

describe('root without the rights to change binfmt_misc', () => {
  const { rootLimits } = jest.requireActual('../../src/kernel') as typeof import('../../src/kernel')
  const mounts = (procSys: string, binfmt?: string) =>
    [
      '22 1 0:21 / / rw,relatime - overlay overlay rw',
      '23 22 0:22 / /proc rw,nosuid,nodev,noexec - proc proc rw',
      `24 23 0:22 /sys /proc/sys ${procSys},nosuid - proc proc rw`,
      ...(binfmt ? [`25 24 0:45 / /proc/sys/fs/binfmt_misc ${binfmt},relatime - binfmt_misc binfmt_misc rw`] : []),
    ].join('\n')
  const caps = (hex: string) => `Name:\tnode\nCapEff:\t${hex}\n`

  test('full root on a host: allowed', () => {
    expect(rootLimits(caps('000001ffffffffff'), mounts('rw', 'rw'))).toBeUndefined()
  })
  test('an unprivileged container: no CAP_SYS_ADMIN', () => {
    expect(rootLimits(caps('00000000a80425fb'), mounts('ro'))).toBe('root, but without CAP_SYS_ADMIN (an unprivileged container?)')
  })
  test('/proc/sys read-only and binfmt_misc not mounted over it', () => {
    expect(rootLimits(caps('000001ffffffffff'), mounts('ro'))).toBe('root, but /proc/sys is mounted read-only here')
  })
  test('a writable binfmt_misc mount under a read-only /proc/sys is fine', () => {
    expect(rootLimits(caps('000001ffffffffff'), mounts('ro', 'rw'))).toBeUndefined()
  })
})
