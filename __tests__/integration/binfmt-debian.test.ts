import { execSync } from 'child_process'
import * as fs from 'fs'
import * as os from 'os'
import * as path from 'path'
import { allTargets, getTarget } from '../../src/targets'
import { debDir } from '../support/fixtures'

// The target table against Debian's: the installed qemu-user-static's binfmt.d and the
// arm64 package .ci/prepare.sh downloads.

describe('target table', () => {
  /** A binfmt.d magic or mask (`\xNN` escapes, other characters literal) as hex. */
  const escapedToHex = (s: string): string =>
    Buffer.from(
      s.replace(/\\x([0-9a-f]{2})/gi, (_, h) => String.fromCharCode(parseInt(h, 16))),
      'latin1',
    ).toString('hex')

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
        const [, , , , magic, mask] = fs
          .readFileSync(path.join(dir, 'usr/lib/binfmt.d', `qemu-${name}.conf`), 'utf8')
          .trim()
          .split(':')
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
