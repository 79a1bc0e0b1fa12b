// The bundle under Node 24 keeps its compiled code in the tool cache, and a later run loads it from
// there; a tool cache others may write in is never used for it (what is in it would run as the action).
// platforms: linux/amd64 asks for nothing foreign: no download, no entry registered.
import * as fs from 'fs'
import * as os from 'os'
import * as path from 'path'
import { RunActionResult, runAction } from '../support/action'

const CACHE = 'setup-qemu-binfmt-compile-cache'
// Node's own account of its compile cache, on stderr.
const debug = { NODE_DEBUG_NATIVE: 'COMPILE_CACHE' }
const made: string[] = []
afterAll(() => {
  for (const d of made) fs.rmSync(d, { recursive: true, force: true })
})

function toolCache(mode: number): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'compile-cache-'))
  made.push(d)
  fs.chmodSync(d, mode)
  return d
}

function expectNativeOnly(r: RunActionResult): void {
  if (r.code !== 0) throw new Error(`the action failed (exit ${r.code}):\n${r.stdout}\n${r.stderr}`)
  expect(r.outputs.emulators).toBe('')
  expect(r.outputs.platforms.split(',')).toContain('linux/amd64')
}

test('a private tool cache: the first run writes the cache (0700), the second run accepts it and gives the same outputs', async () => {
  const tc = toolCache(0o755)
  const first = await runAction({ platforms: 'linux/amd64' }, { toolCache: tc, env: debug })
  expectNativeOnly(first)
  const dir = path.join(tc, CACHE)
  expect(fs.statSync(dir).mode & 0o777).toBe(0o700)
  expect(first.stderr).toMatch(/\[compile cache\] writing cache for CommonJS .*dist\/\d+\.index\.js/)

  const second = await runAction({ platforms: 'linux/amd64' }, { toolCache: tc, env: debug })
  expectNativeOnly(second)
  expect(second.stderr).toMatch(/\[compile cache\] V8 code cache for CommonJS .*dist\/\d+\.index\.js was accepted/)
  expect(second.stderr).not.toMatch(/was rejected/)
  expect(second.outputs).toEqual(first.outputs)
})

test('a tool cache anyone may write in: no compile cache is read or written there, and the run succeeds', async () => {
  const tc = toolCache(0o777)
  const r = await runAction({ platforms: 'linux/amd64' }, { toolCache: tc, env: debug })
  expectNativeOnly(r)
  expect(r.stderr).not.toMatch(/\[compile cache\]/)
  expect(fs.existsSync(path.join(tc, CACHE))).toBe(false)
})
