// Which staging entries belong to a run that is gone: judged from a table of
// plain files (a BinfmtReader reads any directory), whose mtimes stand for when
// each entry was registered, and this process's own start time.
import { spawnSync } from 'child_process'
import * as fs from 'fs'
import * as os from 'os'
import * as path from 'path'
import { BinfmtReader } from '../../src/binfmt'
import { unstaged } from '../../src/register'
import { abandonedStaging, stagingOf } from '../../src/staging'

let root: string
let reader: BinfmtReader
beforeEach(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'staging-'))
  fs.writeFileSync(path.join(root, 'register'), '')
  reader = new BinfmtReader(root)
})
afterEach(() => fs.rmSync(root, { recursive: true, force: true }))

/** An entry file made `ageS` seconds ago. */
function entry(name: string, ageS = 0): void {
  const file = path.join(root, name)
  fs.writeFileSync(file, 'enabled\ninterpreter /gone/qemu-arm\nflags: F\noffset 0\nmagic 7f454c46\n')
  const t = (Date.now() - ageS * 1000) / 1000
  fs.utimesSync(file, t, t)
}

/** The pid of a process that has exited (and been reaped). */
function deadPid(): number {
  return Number(spawnSync('sh', ['-c', 'echo $$'], { encoding: 'utf8' }).stdout.trim())
}

test('a staging entry made while its run lives belongs to that running run', () => {
  entry(`qemu-arm.staged-${process.pid}`)
  expect(stagingOf(reader, `qemu-arm.staged-${process.pid}`)).toEqual({ pid: process.pid, running: true })
  expect(abandonedStaging(reader)).toEqual([])
})

test("a staging entry whose pid is not running is abandoned; other names are nobody's staging", () => {
  const pid = deadPid()
  entry(`qemu-aarch64.staged-${pid}`)
  entry('qemu-aarch64')
  entry('no-ia32-i386')
  expect(stagingOf(reader, `qemu-aarch64.staged-${pid}`)).toEqual({ pid, running: false })
  expect(stagingOf(reader, 'qemu-aarch64')).toBeUndefined()
  expect(abandonedStaging(reader)).toEqual([`qemu-aarch64.staged-${pid}`])
})

test('a live process that started after the entry was made got its pid later: the entry is abandoned', () => {
  // Made a day before this process started: not this process's.
  const age = process.uptime() + 86400
  entry(`qemu-arm.staged-${process.pid}`, age)
  expect(stagingOf(reader, `qemu-arm.staged-${process.pid}`)).toEqual({ pid: process.pid, running: false })
  expect(abandonedStaging(reader)).toEqual([`qemu-arm.staged-${process.pid}`])
})

test('unstaged: the name a staging entry stands for', () => {
  expect(unstaged('qemu-arm.staged-12339')).toBe('qemu-arm')
  expect(unstaged('qemu-aarch64')).toBe('qemu-aarch64')
  expect(unstaged('other.staged-1')).toBe('other.staged-1')
})
