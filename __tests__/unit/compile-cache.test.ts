// The compiled-bundle cache runs as the action: a directory that someone else could write
// must never be handed to Node, whatever lies on the way to it.
import * as fs from 'fs'
import * as os from 'os'
import * as path from 'path'
import { COMPILE_CACHE_TOOL, compileCacheDir } from '../../src/compile-cache'

const uid = process.geteuid!()
let base: string

beforeEach(() => {
  // mkdtemp: 0700, ours, in the sticky /tmp
  base = fs.mkdtempSync(path.join(os.tmpdir(), 'compile-cache-'))
})
afterEach(() => fs.rmSync(base, { recursive: true, force: true }))

test('a private tool cache: the cache directory is created 0700 and used', () => {
  const dir = compileCacheDir(base, uid)
  expect(dir).toBe(path.join(fs.realpathSync(base), COMPILE_CACHE_TOOL))
  const st = fs.lstatSync(dir!)
  expect(st.isDirectory()).toBe(true)
  expect(st.mode & 0o777).toBe(0o700)
  // a second run uses the same directory
  expect(compileCacheDir(base, uid)).toBe(dir)
})

test('a tool cache reached through a symbolic link: Node gets the real path', () => {
  const real = path.join(base, 'real')
  fs.mkdirSync(real, { mode: 0o755 })
  fs.symlinkSync(real, path.join(base, 'link'))
  expect(compileCacheDir(path.join(base, 'link'), uid)).toBe(path.join(fs.realpathSync(real), COMPILE_CACHE_TOOL))
})

test('a tool cache anyone may write in (0777, not sticky): no cache, and nothing created', () => {
  fs.chmodSync(base, 0o777)
  expect(compileCacheDir(base, uid)).toBeUndefined()
  expect(fs.existsSync(path.join(base, COMPILE_CACHE_TOOL))).toBe(false)
})

test('a group-writable directory above the tool cache: no cache', () => {
  const toolCache = path.join(base, 'tool-cache')
  fs.mkdirSync(toolCache, { mode: 0o755 })
  fs.chmodSync(base, 0o770)
  expect(compileCacheDir(toolCache, uid)).toBeUndefined()
})

test('a world-writable sticky directory above (like /tmp): used, as nobody can rename what is ours in it', () => {
  const sticky = path.join(base, 'sticky')
  fs.mkdirSync(sticky)
  fs.chmodSync(sticky, 0o1777)
  const toolCache = path.join(sticky, 'tool-cache')
  fs.mkdirSync(toolCache, { mode: 0o755 })
  expect(compileCacheDir(toolCache, uid)).toBe(path.join(fs.realpathSync(toolCache), COMPILE_CACHE_TOOL))
})

test('a cache directory someone made readable or writable for others: not used, and left as it is', () => {
  const dir = path.join(base, COMPILE_CACHE_TOOL)
  fs.mkdirSync(dir)
  fs.chmodSync(dir, 0o757)
  expect(compileCacheDir(base, uid)).toBeUndefined()
  expect(fs.statSync(dir).mode & 0o777).toBe(0o757)
})

test('a cache directory that is a symbolic link (planted to point elsewhere): not used', () => {
  const elsewhere = fs.mkdtempSync(path.join(os.tmpdir(), 'compile-cache-elsewhere-'))
  try {
    fs.symlinkSync(elsewhere, path.join(base, COMPILE_CACHE_TOOL))
    expect(compileCacheDir(base, uid)).toBeUndefined()
  } finally {
    fs.rmSync(elsewhere, { recursive: true, force: true })
  }
})

test('a cache directory that belongs to another user: not used', () => {
  fs.mkdirSync(path.join(base, COMPILE_CACHE_TOOL), { mode: 0o700 })
  // The directory is ours; asked for another user, it is someone else's.
  expect(compileCacheDir(base, uid + 4242)).toBeUndefined()
})

test('no tool cache, or one that does not exist: no cache, and no error', () => {
  expect(compileCacheDir(undefined, uid)).toBeUndefined()
  expect(compileCacheDir('', uid)).toBeUndefined()
  expect(compileCacheDir(path.join(base, 'missing'), uid)).toBeUndefined()
  expect(fs.existsSync(path.join(base, 'missing'))).toBe(false)
})
