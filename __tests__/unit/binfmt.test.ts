import { execSync } from 'child_process'
import * as fs from 'fs'
import * as os from 'os'
import * as path from 'path'
import { effectiveFlags, parseEntry, registerLine, sameEntry, EntrySpec } from '../../src/binfmt'
import { planChanges, stagedBy, stagingName } from '../../src/register'
import { allTargets, getTarget, hexToEscaped } from '../../src/targets'
import { debDir } from '../support/fixtures'

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
    expect(registerLine(spec())).toBe(
      `:qemu-aarch64:M::${hexToEscaped(aarch64.magic)}:${hexToEscaped(aarch64.mask)}:${spec().interpreter}:PCF`,
    )
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
  const entry = (flags: string, over: Partial<EntrySpec> = {}, enabled = true) => parseEntry(over.name ?? 'qemu-aarch64', kernelText(spec(over), flags, enabled))
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
    const existing = [
      entry('POCF'),
      entry('F', { name: 'qemu-riscv64' }),
      entry('F', { name: 'qemu-riscv64.staged-4242' }),
      entry('', { name: 'python3.11' }),
    ]
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
  /** A binfmt.d magic or mask (`\xNN` escapes, other characters literal) as hex. */
  const escapedToHex = (s: string): string =>
    Buffer.from(s.replace(/\\x([0-9a-f]{2})/gi, (_, h) => String.fromCharCode(parseInt(h, 16))), 'latin1').toString('hex')

  test('34 targets, magic and mask of equal length', () => {
    expect(allTargets()).toHaveLength(34)
    for (const t of allTargets()) expect(t.magic.length).toBe(t.mask.length)
  })

  // Debian's qemu-user-static installs the same table; every target it has must agree.
  test('matches /usr/lib/binfmt.d from qemu-user-static where Debian has the target', () => {
    const dir = '/usr/lib/binfmt.d'
    const files = fs.readdirSync(dir).filter(f => /^qemu-.*\.conf$/.test(f))
    expect(files.length).toBeGreaterThan(20)
    let compared = 0
    for (const f of files) {
      const [, name, , , magic, mask] = fs.readFileSync(`${dir}/${f}`, 'utf8').trim().split(':')
      const target = allTargets().find(t => `qemu-${t.name}` === name)
      if (!target) continue // Debian also has cris, which QEMU's script does not list
      expect([name, escapedToHex(magic), escapedToHex(mask)]).toEqual([name, target.magic, target.mask])
      compared++
    }
    expect(compared).toBeGreaterThanOrEqual(28)
  })

  // The x86 rows are what arm64 hosts register; the amd64 package leaves them out
  // (its host's own family), so they are read from the arm64 package's binfmt.d.
  test('x86_64, i386 and i486 match the binfmt.d of qemu-user-static:arm64, but for the OS/ABI byte Debian also checks', () => {
    const debs = fs.readdirSync(debDir()).filter(n => /^qemu-user-static_.*_arm64\.deb$/.test(n))
    expect({ debs: debs.length }).toEqual({ debs: 1 }) // downloaded by .ci/prepare.sh
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'binfmt-d-'))
    try {
      execSync(`dpkg-deb --fsys-tarfile '${path.join(debDir(), debs[0])}' | tar -x -C '${dir}' --wildcards './usr/lib/binfmt.d/*'`)
      const debian = (name: string): { magic: string; mask: string } => {
        const [, , , , magic, mask] = fs.readFileSync(path.join(dir, 'usr/lib/binfmt.d', `qemu-${name}.conf`), 'utf8').trim().split(':')
        return { magic: escapedToHex(magic), mask: escapedToHex(mask) }
      }
      // Byte 7 is EI_OSABI: Debian's mask 0xfc accepts only SYSV, HP-UX, NetBSD and
      // GNU/Linux there; QEMU's qemu-binfmt-conf.sh (and so this table) ignores it.
      const osabiAsQemu = (mask: string): string => `${mask.slice(0, 14)}00${mask.slice(16)}`
      const x86_64 = debian('x86_64')
      const i386 = debian('i386')
      expect(x86_64.mask.slice(14, 16)).toBe('fc')
      expect(getTarget('x86_64')).toMatchObject({ magic: x86_64.magic, mask: osabiAsQemu(x86_64.mask) })
      expect(getTarget('i386')).toMatchObject({ magic: i386.magic, mask: osabiAsQemu(i386.mask) })
      // Debian has no i486 entry: it is i386's with e_machine EM_486 (6) instead of EM_386 (3).
      expect(i386.magic.slice(36, 38)).toBe('03')
      expect(getTarget('i486')).toMatchObject({ magic: `${i386.magic.slice(0, 36)}06${i386.magic.slice(38)}`, mask: osabiAsQemu(i386.mask) })
    } finally {
      fs.rmSync(dir, { recursive: true, force: true })
    }
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
