// linux/386 on an x86_64 kernel that runs no 32-bit x86 programs (some
// paravirtualized VMs): the action must find that out, register qemu-i386 and
// verify it. Whatever this host's kernel does, the test makes it behave so, as
// .ci/no-ia32.sh does for a whole CI run: binfmt_misc entries of its own, tried
// before the kernel's ELF loader, hand every i386/i486 program to a file that is
// not a program, so exec fails with ENOEXEC. qemu-i386, registered later, is
// matched first, as it would be there.
import * as fs from 'fs'
import * as path from 'path'
import { runAction } from '../support/action'
import { entryExists, registerRaw, restore, snapshot } from '../support/binfmt'
import { sha256 } from '../support/fixtures'
import { i386Taker, ldsoAmd64Levels, runI386Program, skippedHere } from '../support/host'
import { VERSION, cleanupDirs, esc, expectRegistered, expectSuccess, freshDir, summaryRows } from './core-helpers'

const BLOCKERS = ['testnoia32-i386', 'testnoia32-i486']
/** The entries this test creates: its blockers and what the action registers for linux/386. */
const ours = (name: string): boolean => BLOCKERS.includes(name) || name === 'qemu-i386' || /^qemu-i386\.staged-\d+$/.test(name)
const MASK = 'fffffffffffefe00fffffffffffffffffeffffff'
/** An ELF32 little-endian ET_EXEC header for e_machine `machine` (EM_386 3, EM_486 6), as QEMU's i386 entry has it. */
const magic = (machine: number): string => `7f454c46010101${'00'.repeat(9)}0200${machine.toString(16).padStart(2, '0')}00`

afterAll(() => cleanupDirs())

const takenBy = process.arch === 'x64' ? i386Taker() : undefined
if (process.arch !== 'x64') {
  skippedHere('linux/386 on a kernel without 32-bit x86', 'not an x86_64 host')
} else if (takenBy || entryExists('qemu-i386')) {
  skippedHere('linux/386 on a kernel without 32-bit x86', `binfmt entry ${takenBy ?? 'qemu-i386'} is registered here, not this test's to remove`)
} else {
  test('linux/386 on a kernel without 32-bit x86: qemu-i386 registered with F and verified, linux/386 listed', async () => {
    const snap = snapshot()
    const notAProgram = path.join(freshDir('no-ia32'), 'not-a-program')
    fs.writeFileSync(notAProgram, 'not a program\n', { mode: 0o755 })
    try {
      for (const [name, machine] of [
        [BLOCKERS[0], 3],
        [BLOCKERS[1], 6],
      ] as const)
        registerRaw(`:${name}:M::${esc(magic(machine))}:${esc(MASK)}:${notAProgram}:F`)
      // Now this host is one that cannot run 32-bit x86.
      expect(runI386Program()).not.toBe(42)

      const r = await runAction({ platforms: 'linux/amd64,linux/386', 'qemu-version': VERSION, 'qemu-url': '/usr/bin' }, { toolCache: freshDir('toolcache') })
      expectSuccess(r)
      expect(r.outputs.emulators).toBe('i386')
      expect(r.outputs.platforms.split(',').sort()).toEqual(['linux/386', 'linux/amd64', ...(ldsoAmd64Levels() ?? [])].sort())
      const e = expectRegistered('qemu-i386', '/usr/bin/qemu-i386-static')
      expect(sha256(e.interpreter)).toBe(sha256('/usr/bin/qemu-i386-static'))
      const row = summaryRows(r.summary).find(cells => cells[0].split(', ').includes('linux/386'))
      expect(row?.join(' | ')).toMatch(/qemu-i386 \(added\).*\| yes \|/)
      // A 32-bit program runs again, through the emulator.
      expect(runI386Program()).toBe(42)
    } finally {
      restore(snap, ours)
    }
    expect(BLOCKERS.some(entryExists) || entryExists('qemu-i386')).toBe(false)
  })
}
