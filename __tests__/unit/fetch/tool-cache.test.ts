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

// @actions/tool-cache's find() wants `<tool>/<semver>/<arch>/` and `<arch>.complete` beside it; our own markers decide trust.
describe('the <arch>.complete marker find() looks for', () => {
  function commitOne(entry: ToolCacheEntry, target: string): void {
    const staging = entry.stage()
    const bin = path.join(staging, `qemu-${target}`)
    fs.writeFileSync(bin, 'ELF')
    entry.commit(staging, new Map([[target, { path: bin, sha256: 'a'.repeat(64), size: 3, file: 'x.tar.gz', fileSha256: 'b'.repeat(64) }]]))
  }

  test('is written by rename once an emulator is in place, and stays when more are added', () => {
    const entry = ToolCacheEntry.at(base, 'tool', '1.0.0', 'amd64-0123456789ab')
    const staging = entry.stage()
    // Nothing placed, nothing to find.
    entry.commit(staging, new Map(), ['aarch64'])
    expect(fs.existsSync(entry.completeMarker())).toBe(false)
    commitOne(entry, 'aarch64')
    expect(entry.completeMarker()).toBe(path.join(base, 'tool', '1.0.0', 'amd64-0123456789ab.complete'))
    expect(fs.statSync(entry.completeMarker()).isFile()).toBe(true)
    commitOne(entry, 'arm')
    expect(fs.existsSync(entry.completeMarker())).toBe(true)
    // Staging directories and temporary files are all gone.
    expect(fs.readdirSync(entry.dir).sort()).toEqual(['offers.json', 'qemu-aarch64', 'qemu-aarch64.json', 'qemu-arm', 'qemu-arm.json'])
    expect(fs.readdirSync(path.dirname(entry.dir)).sort()).toEqual(['amd64-0123456789ab', 'amd64-0123456789ab.complete'])
  })

  test('is never what makes an emulator trusted, nor its absence what makes one untrusted', () => {
    const entry = entryWith('aarch64')
    fs.writeFileSync(path.join(entry.dir, 'qemu-arm'), 'ELF', { mode: 0o755 })
    fs.writeFileSync(entry.completeMarker(), '')
    expect([...entry.read().emulators.keys()]).toEqual(['aarch64'])
    fs.rmSync(entry.completeMarker())
    expect([...entry.read().emulators.keys()]).toEqual(['aarch64'])
    expect([...entry.read(true).emulators.keys()]).toEqual(['aarch64'])
  })

  test('goes with its entry when an empty entry is removed', () => {
    const entry = ToolCacheEntry.at(base, 'tool', '1.0.0', 'amd64')
    fs.mkdirSync(entry.dir, { recursive: true })
    fs.writeFileSync(entry.completeMarker(), '')
    entry.removeIfEmpty()
    expect(fs.existsSync(path.join(base, 'tool', '1.0.0'))).toBe(false)
  })

  test('cannot be written: the entry is stored all the same', () => {
    const entry = ToolCacheEntry.at(base, 'tool', '1.0.0', 'amd64')
    // A directory where the marker would go: the rename fails, the commit does not.
    fs.mkdirSync(`${entry.completeMarker()}/x`, { recursive: true })
    commitOne(entry, 'aarch64')
    expect([...entry.read().emulators.keys()]).toEqual(['aarch64'])
  })
})
