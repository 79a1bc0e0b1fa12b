// The usage records live in a world-writable place: what another local user put
// there must never make a root run delete files, or remove entries live jobs use.
import * as fs from 'fs'
import * as os from 'os'
import * as path from 'path'
import { UsageRecords } from '../../src/usage'

const dead = { pid: 999999999, start: '1', entries: ['1/qemu-aarch64'] }

test('the records directory is a symlink to another directory: nothing there is deleted, and the records count as unknown', () => {
  const base = fs.mkdtempSync(path.join(os.tmpdir(), 'usage-'))
  try {
    const victim = path.join(base, 'victim')
    fs.mkdirSync(victim)
    // A file of the victim directory that happens to read as a dead job's record (or one an attacker swapped in).
    fs.writeFileSync(path.join(victim, 'daemon.json'), JSON.stringify(dead))
    const dir = path.join(base, 'jobs')
    fs.symlinkSync(victim, dir)
    const records = new UsageRecords('1', dir)
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

test('records in a directory not owned by the uid it is named after are not read (they could hide a live job or lie)', () => {
  const base = fs.mkdtempSync(path.join(os.tmpdir(), 'usage-'))
  try {
    const dir = path.join(base, 'jobs')
    const records = new UsageRecords('1', dir)
    const start = fs.readFileSync(`/proc/${process.pid}/stat`, 'utf8').split(') ')[1].split(' ')[19]
    const live = { pid: process.pid, start, entries: ['1/qemu-aarch64'] }
    // uid 4242's directory, but made (and owned) by someone else.
    fs.mkdirSync(path.join(dir, '4242'), { recursive: true })
    fs.chownSync(path.join(dir, '4242'), 65534, 65534)
    fs.writeFileSync(path.join(dir, '4242', `${process.pid}-${start}.json`), JSON.stringify(live))
    expect(records.users('qemu-aarch64')).toEqual([])
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
    const dir = path.join(base, 'jobs')
    const records = new UsageRecords('1', dir)
    const start = fs.readFileSync(`/proc/${process.pid}/stat`, 'utf8').split(') ')[1].split(' ')[19]
    records.add({ pid: process.pid, start }, ['qemu-aarch64'])
    fs.writeFileSync(path.join(dir, '0', `${dead.pid}-1.json`), JSON.stringify(dead))
    expect(records.users('qemu-aarch64')).toEqual([{ pid: process.pid, start }])
    expect(fs.existsSync(path.join(dir, '0', `${dead.pid}-1.json`))).toBe(false)
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
    const records = new UsageRecords('1', dir)
    const start = fs.readFileSync(`/proc/${process.pid}/stat`, 'utf8').split(') ')[1].split(' ')[19]
    records.add({ pid: process.pid, start }, ['qemu-aarch64'])
    expect(records.problem()).toBeUndefined()
    expect(fs.statSync(dir).uid).toBe(0)
    expect(fs.statSync(dir).mode & 0o7777).toBe(0o1777)
    expect(records.users('qemu-aarch64')).toEqual([{ pid: process.pid, start }])
  } finally {
    fs.rmSync(base, { recursive: true, force: true })
  }
})
