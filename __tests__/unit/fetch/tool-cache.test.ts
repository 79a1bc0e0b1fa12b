import * as fs from 'fs'
import * as os from 'os'
import * as path from 'path'
import { ToolCacheEntry } from '../../../src/fetch/tool-cache'

// Under a pin a marker is believed only where nobody but this user or root could have written it.

let base: string
beforeEach(() => {
  base = fs.mkdtempSync(path.join(os.tmpdir(), 'tool-cache-'))
})
afterEach(() => fs.rmSync(base, { recursive: true, force: true }))

const uid = process.geteuid?.() ?? 0
const other = uid + 4242

function entryWith(...targets: string[]): ToolCacheEntry {
  const entry = new ToolCacheEntry(path.join(base, 'tool', '1.0.0', 'amd64'))
  fs.mkdirSync(entry.dir, { recursive: true, mode: 0o755 })
  for (const t of targets) {
    fs.writeFileSync(path.join(entry.dir, `qemu-${t}`), 'ELF', { mode: 0o755 })
    const marker = { sha256: 'a'.repeat(64), size: 3, file: 'x.tar.gz', fileSha256: 'b'.repeat(64) }
    fs.writeFileSync(path.join(entry.dir, `qemu-${t}.json`), JSON.stringify(marker), { mode: 0o644 })
  }
  return entry
}

test('an entry only this user or root can change is read either way', () => {
  const entry = entryWith('aarch64')
  expect([...entry.read(true).emulators.keys()]).toEqual(['aarch64'])
  expect(entry.read(true).doubt).toBeUndefined()
})

test('a directory on the way that another user owns or may write: nothing is believed, and it says why', () => {
  const entry = entryWith('aarch64')
  fs.chownSync(path.join(base, 'tool'), other, other)
  expect(entry.read(true)).toEqual({ emulators: new Map(), doubt: `${path.join(base, 'tool')} belongs to uid ${other}` })
  // Without a pin the entry is used as before.
  expect([...entry.read().emulators.keys()]).toEqual(['aarch64'])
  fs.chownSync(path.join(base, 'tool'), uid, uid)
  fs.chmodSync(path.join(base, 'tool'), 0o777)
  expect(entry.read(true).doubt).toBe(`${path.join(base, 'tool')} is writable by others (mode 777)`)
})

test('a binary or marker another user owns or may write is skipped', () => {
  const entry = entryWith('aarch64', 'arm', 'riscv64')
  fs.chownSync(path.join(entry.dir, 'qemu-arm.json'), other, other)
  fs.chmodSync(path.join(entry.dir, 'qemu-riscv64'), 0o777)
  expect([...entry.read(true).emulators.keys()]).toEqual(['aarch64'])
  expect([...entry.read().emulators.keys()].sort()).toEqual(['aarch64', 'arm', 'riscv64'])
})
