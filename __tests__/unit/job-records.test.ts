// The usage records live in a world-writable place: what another local user put
// there must never make a root run delete files, or remove entries live jobs use.
import { execFileSync, spawn } from 'child_process'
import * as fs from 'fs'
import * as os from 'os'
import * as path from 'path'
import { UsageRecords } from '../../src/job-records'

const dead = { pid: 999999999, start: '1', entries: ['1/qemu-aarch64'] }

/** The records with both areas under `base`: the shared one at `jobs`, root's at `root`. */
const recordsIn = (base: string): UsageRecords => new UsageRecords('1', path.join(base, 'jobs'), path.join(base, 'root'))
const startOf = (pid: number): string => fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ')[19]

test('the records directory is a symlink to another directory: nothing there is deleted, and the records count as unknown', () => {
  const base = fs.mkdtempSync(path.join(os.tmpdir(), 'usage-'))
  try {
    const victim = path.join(base, 'victim')
    fs.mkdirSync(victim)
    // A file of the victim directory that happens to read as a dead job's record (or one an attacker swapped in).
    fs.writeFileSync(path.join(victim, 'daemon.json'), JSON.stringify(dead))
    const dir = path.join(base, 'jobs')
    fs.symlinkSync(victim, dir)
    const records = recordsIn(base)
    expect(records.problem()).toMatch(/not a directory/)
    let thrown: unknown
    try {
      records.users('qemu-aarch64')
    } catch (e) {
      thrown = e
    }
    expect(fs.existsSync(path.join(victim, 'daemon.json'))).toBe(true)
    expect(String(thrown)).toMatch(/not a directory/)
  } finally {
    fs.rmSync(base, { recursive: true, force: true })
  }
})

test('records in a directory not owned by the uid it is named after are not read (they could hide a live job or lie): the records are unknown', () => {
  const base = fs.mkdtempSync(path.join(os.tmpdir(), 'usage-'))
  try {
    const dir = path.join(base, 'jobs')
    const records = recordsIn(base)
    const start = startOf(process.pid)
    const live = { pid: process.pid, start, entries: ['1/qemu-aarch64'] }
    // uid 4242's directory, but made (and owned) by someone else: uid 4242 could not have written its records.
    fs.mkdirSync(path.join(dir, '4242'), { recursive: true })
    fs.chownSync(path.join(dir, '4242'), 65534, 65534)
    fs.writeFileSync(path.join(dir, '4242', `${process.pid}-${start}.json`), JSON.stringify(live))
    expect(() => records.users('qemu-aarch64')).toThrow(/4242 is not a directory of uid 4242 that only it can write \(owner uid 65534\); remove it/)
    // The same record in a directory its user owns counts.
    fs.chownSync(path.join(dir, '4242'), 4242, 4242)
    expect(records.users('qemu-aarch64')).toEqual([{ pid: process.pid, start }])
    // And a record another user's directory holds for a dead job is left there, not deleted by root.
    fs.writeFileSync(path.join(dir, '4242', `${dead.pid}-1.json`), JSON.stringify(dead))
    records.users('qemu-aarch64')
    expect(fs.existsSync(path.join(dir, '4242', `${dead.pid}-1.json`))).toBe(true)
  } finally {
    fs.rmSync(base, { recursive: true, force: true })
  }
})

test('a safe directory: dead records are dropped, live ones reported', () => {
  const base = fs.mkdtempSync(path.join(os.tmpdir(), 'usage-'))
  try {
    const rootDir = path.join(base, 'root')
    const records = recordsIn(base)
    const start = startOf(process.pid)
    records.add({ pid: process.pid, start }, ['qemu-aarch64'])
    fs.writeFileSync(path.join(rootDir, `${dead.pid}-1.json`), JSON.stringify(dead))
    expect(records.users('qemu-aarch64')).toEqual([{ pid: process.pid, start }])
    expect(fs.existsSync(path.join(rootDir, `${dead.pid}-1.json`))).toBe(false)
  } finally {
    fs.rmSync(base, { recursive: true, force: true })
  }
})

// Whoever creates the top directory first owns it: a root job must still be able to record what it uses.
test('a records directory a sudo runner user created first: a root job takes it over and records what it uses', () => {
  const base = fs.mkdtempSync(path.join(os.tmpdir(), 'usage-'))
  try {
    const dir = path.join(base, 'jobs')
    fs.mkdirSync(dir, { mode: 0o1777 })
    fs.chmodSync(dir, 0o1777)
    fs.chownSync(dir, 1002, 1002)
    const records = recordsIn(base)
    const start = startOf(process.pid)
    records.add({ pid: process.pid, start }, ['qemu-aarch64'])
    expect(records.problem()).toBeUndefined()
    expect(fs.statSync(dir).uid).toBe(0)
    expect(fs.statSync(dir).mode & 0o7777).toBe(0o1777)
    expect(records.users('qemu-aarch64')).toEqual([{ pid: process.pid, start }])
  } finally {
    fs.rmSync(base, { recursive: true, force: true })
  }
})

/** Runs `fn` with this process's effective uid and gid those of `uid` (another local user), then back to root's. */
function asUser<T>(uid: number, fn: () => T): T {
  process.setegid?.(uid)
  process.seteuid?.(uid)
  try {
    return fn()
  } finally {
    process.seteuid?.(0)
    process.setegid?.(0)
  }
}

/** A base directory every user can write, sticky, as /tmp is. */
function openBase(): string {
  const base = fs.mkdtempSync(path.join(os.tmpdir(), 'usage-'))
  fs.chmodSync(base, 0o1777)
  return base
}

// Issue 23.4: another user makes the shared directory, and root's, before root's first run.
test("another user's pre-made directories do not make a root job go unrecorded: its record goes where only root can write", () => {
  const base = openBase()
  try {
    const jobs = path.join(base, 'jobs')
    fs.mkdirSync(path.join(jobs, '0'), { recursive: true })
    fs.chownSync(jobs, 1001, 1001)
    fs.chownSync(path.join(jobs, '0'), 1001, 1001)
    const records = recordsIn(base)
    const job = { pid: process.pid, start: startOf(process.pid) }
    records.add(job, ['qemu-aarch64'])
    expect(fs.readdirSync(path.join(base, 'root'))).toEqual([`${job.pid}-${job.start}.json`])
    // The planted "0" cannot be told apart from a root job's records that are missing: the records are unknown, uninstall keeps.
    expect(() => records.users('qemu-aarch64')).toThrow(/0 is not a directory of uid 0 that only it can write \(owner uid 1001\)/)
    fs.rmSync(path.join(jobs, '0'), { recursive: true })
    expect(records.users('qemu-aarch64')).toEqual([job])
  } finally {
    fs.rmSync(base, { recursive: true, force: true })
  }
})

test("a root records directory another user made first: root's record is refused, and the records are unknown", () => {
  const base = openBase()
  try {
    fs.mkdirSync(path.join(base, 'root'))
    fs.chownSync(path.join(base, 'root'), 1001, 1001)
    const records = recordsIn(base)
    expect(() => records.add({ pid: process.pid, start: startOf(process.pid) }, ['qemu-aarch64'])).toThrow(
      /root is not a directory only root can write \(owner uid 1001/,
    )
    expect(() => records.users('qemu-aarch64')).toThrow(/root is not a directory only root can write/)
  } finally {
    fs.rmSync(base, { recursive: true, force: true })
  }
})

test("a user's record directory another user made first: its record is refused, and every reader counts the records as unknown", () => {
  const base = openBase()
  try {
    const jobs = path.join(base, 'jobs')
    fs.mkdirSync(jobs, { mode: 0o1777 })
    fs.chmodSync(jobs, 0o1777)
    // uid 1001 gets there first with uid 1002's directory.
    asUser(1001, () => fs.mkdirSync(path.join(jobs, '1002')))
    const job = { pid: process.pid, start: startOf(process.pid) }
    expect(() => asUser(1002, () => recordsIn(base).add(job, ['qemu-aarch64']))).toThrow(/1002 is not a directory of uid 1002/)
    expect(() => recordsIn(base).users('qemu-aarch64')).toThrow(/1002 is not a directory of uid 1002/)
    expect(() => asUser(1002, () => recordsIn(base).users('qemu-aarch64'))).toThrow(/1002 is not a directory of uid 1002/)
  } finally {
    fs.rmSync(base, { recursive: true, force: true })
  }
})

test("a shared directory another user owns: a third user's records could be removed by that owner, so they count as unknown", () => {
  const base = openBase()
  try {
    const job = { pid: process.pid, start: startOf(process.pid) }
    // uid 1001 made the shared directory; uid 1002 records into it.
    asUser(1001, () => recordsIn(base).add(job, ['qemu-arm']))
    expect(() => asUser(1002, () => recordsIn(base).add(job, ['qemu-aarch64']))).toThrow(/jobs belongs to uid 1001, who could remove uid 1002's records/)
    expect(() => recordsIn(base).users('qemu-aarch64')).toThrow(/belongs to uid 1001/)
    // Once root has taken the shared directory over (by descriptor), uid 1002 can record, and the records count.
    recordsIn(base).add(job, ['qemu-riscv64'])
    expect(fs.statSync(path.join(base, 'jobs')).uid).toBe(0)
    asUser(1002, () => recordsIn(base).add(job, ['qemu-aarch64']))
    expect(recordsIn(base).users('qemu-aarch64')).toEqual([job])
    expect(recordsIn(base).users('qemu-arm')).toEqual([job])
  } finally {
    fs.rmSync(base, { recursive: true, force: true })
  }
})

test('a record written under umask 077 is still read by another user: an unreadable record would hide the job', () => {
  const base = openBase()
  const umask = process.umask(0o077)
  try {
    const job = { pid: process.pid, start: startOf(process.pid) }
    asUser(1001, () => recordsIn(base).add(job, ['qemu-aarch64']))
    expect(asUser(1002, () => recordsIn(base).users('qemu-aarch64'))).toEqual([job])
  } finally {
    process.umask(umask)
    fs.rmSync(base, { recursive: true, force: true })
  }
})

// Issue 23.5: the owner of the shared directory swaps it with a symlink in a loop (renameat2 RENAME_EXCHANGE) while
// root takes it over; fs.protected_symlinks does not help when the swap happens between root's check and its change.
const SWAPPER = `#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <unistd.h>
int main(int argc, char **argv) {
  for (;;) syscall(SYS_renameat2, AT_FDCWD, argv[1], AT_FDCWD, argv[2], 2 /* RENAME_EXCHANGE */);
}
`

test('the shared directory swapped with a symlink in a loop by its owner: root never changes the mode or owner of what the link points to', async () => {
  const base = openBase()
  const src = path.join(base, 'swap.c')
  fs.writeFileSync(src, SWAPPER)
  execFileSync('gcc', ['-O2', '-o', path.join(base, 'swap'), src])
  const jobs = path.join(base, 'jobs')
  const link = path.join(base, 'link')
  // Root's: what the attacker wants made world-writable.
  const victim = path.join(base, 'victim')
  fs.mkdirSync(victim, { mode: 0o755 })
  fs.chmodSync(victim, 0o755)
  asUser(1001, () => {
    fs.mkdirSync(jobs)
    fs.symlinkSync(victim, link)
  })
  const swapper = spawn(path.join(base, 'swap'), [jobs, link], { uid: 1001, gid: 1001, stdio: 'ignore' })
  try {
    await new Promise(r => setTimeout(r, 100))
    const job = { pid: process.pid, start: startOf(process.pid) }
    const deadline = Date.now() + 5000
    for (let i = 0; i < 2000 && Date.now() < deadline; i++) {
      // The attacker's directory, whichever name it has now, is the attacker's again for the next try.
      for (const name of [jobs, link]) {
        try {
          const fd = fs.openSync(name, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY | fs.constants.O_NOFOLLOW)
          fs.fchownSync(fd, 1001, 1001)
          fs.closeSync(fd)
        } catch {
          // the symlink, at this moment
        }
      }
      try {
        recordsIn(base).add(job, ['qemu-aarch64'])
      } catch {
        // a swap at the wrong moment: refused, as it should be
      }
      const st = fs.statSync(victim)
      expect({ try: i, uid: st.uid, mode: (st.mode & 0o7777).toString(8) }).toEqual({ try: i, uid: 0, mode: '755' })
    }
  } finally {
    swapper.kill('SIGKILL')
    fs.rmSync(base, { recursive: true, force: true })
  }
}, 30000)
