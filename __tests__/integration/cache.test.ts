// `cache: true` against the Actions cache service protocol (v2): a stand-in service on
// 127.0.0.1 (Twirp JSON endpoints + Azurite for the blobs, __tests__/support/cache-service.ts),
// reached by the action through the environment a runner gives it. Asserted through what
// users see: outputs, log lines, the kernel entry and a foreign program, and the
// requests the service received.
import * as fs from 'fs'
import * as path from 'path'
import { RunActionResult, runAction } from '../support/action'
import { buildArchives } from '../support/fixtures'
import { CacheService } from '../support/cache-service'
import { TestServer, startServer } from '../support/server'
import {
  VERSION,
  beginKernel,
  cleanupDirs,
  endKernel,
  expectForeignUname,
  expectRegistered,
  expectSuccess,
  freshDir,
  myEntry,
  transcript,
} from './core-helpers'

let svc: CacheService
let root: string
beforeAll(async () => {
  svc = await CacheService.start()
  root = freshDir('cache-fixtures')
  buildArchives(path.join(root, 'main'), ['aarch64'], VERSION)
}, 120000)
afterAll(async () => {
  await svc?.stop()
  cleanupDirs()
})

/** A download server of its own per test: its URL is part of the cache key, and one test stops it. */
async function serve(): Promise<{ server: TestServer; url: string }> {
  const server = await startServer(root)
  return { server, url: `${server.url}/main/releases/download/deploy%2Fv{version}/qemu_v{qemu}_linux-{host}.tar.gz` }
}

const inputs = (url: string): Record<string, string> => ({
  platforms: 'linux/arm64',
  'qemu-version': VERSION,
  'qemu-url': url,
  cache: 'true',
  buildx: 'false',
})

/** main then post, as a runner runs a step (saving may happen in either phase). */
async function runStep(url: string, toolCache: string): Promise<RunActionResult> {
  const main = await runAction(inputs(url), { toolCache, env: svc.env() })
  expectSuccess(main)
  const post = await runAction(inputs(url), { phase: 'post', state: main.stateFile, toolCache, env: svc.env() })
  if (post.code !== 0) throw new Error(`the post step failed:\n${transcript(post)}`)
  return { ...main, stdout: `${main.stdout}${post.stdout}`, annotations: [...main.annotations, ...post.annotations] }
}

/** Empties the tool cache but keeps its path: the cache entry's version is derived from the cached path. */
function emptyDir(dir: string): void {
  for (const e of fs.readdirSync(dir)) fs.rmSync(path.join(dir, e), { recursive: true, force: true })
}

/** A cold run that saves one new entry; returns that entry's key. */
async function coldRun(url: string, toolCache: string): Promise<{ key: string; run: RunActionResult }> {
  const before = svc.entries.length
  const run = await runStep(url, toolCache)
  expect(run.outputs['cache-hit']).toBe('false')
  const added = svc.entries.slice(before)
  expect(added.map(e => e.finalized)).toEqual([true])
  return { key: added[0].key, run }
}

const warningsOf = (r: RunActionResult): string[] => r.annotations.filter(a => a.kind === 'warning').map(a => a.message)
const errorsOf = (r: RunActionResult): string[] => r.annotations.filter(a => a.kind === 'error').map(a => a.message)

test('a cold run saves to the cache service; with an empty tool cache and the download server stopped, the next run restores from it', async () => {
  const snap = await beginKernel()
  try {
    const { server, url } = await serve()
    const toolCache = freshDir('toolcache')
    const creates = svc.calls('CreateCacheEntry').length

    const { key, run: cold } = await coldRun(url, toolCache)
    expect(server.requests.length).toBeGreaterThan(0)
    expect(svc.calls('CreateCacheEntry')).toHaveLength(creates + 1)
    const finalize = svc.calls('FinalizeCacheEntryUpload').at(-1)!
    expect(finalize.body.key).toBe(key)
    // what was uploaded is what the service was told
    expect(Number(finalize.body.size_bytes)).toBe((await svc.read(key)).length)
    expect(svc.requests.every(r => r.authorized)).toBe(true)
    expect(cold.stdout).not.toContain(svc.token)
    expectRegistered('qemu-aarch64', `${toolCache}/`)

    await server.close()
    endKernel(snap)
    expect(myEntry('qemu-aarch64')).toBeUndefined()
    emptyDir(toolCache)

    const lookups = svc.calls('GetCacheEntryDownloadURL').length
    const warm = await runStep(url, toolCache)
    expect(warm.outputs['cache-hit']).toBe('true')
    expect(warm.stdout).toContain(`Restored emulators from the Actions cache (${key})`)
    expect(warningsOf(warm)).toEqual([])
    const lookup = svc.calls('GetCacheEntryDownloadURL').slice(lookups)
    expect(lookup.map(r => r.body.key)).toEqual([key])
    // nothing new to save
    expect(svc.calls('CreateCacheEntry')).toHaveLength(creates + 1)
    expectRegistered('qemu-aarch64', `${toolCache}/`)
    await expectForeignUname('arm64')
  } finally {
    endKernel(snap)
  }
}, 240000)

test('a corrupt cache entry gives a warning and a normal download; the platforms run', async () => {
  const snap = await beginKernel()
  const { server, url } = await serve()
  try {
    const toolCache = freshDir('toolcache')
    const { key } = await coldRun(url, toolCache)
    endKernel(snap)
    emptyDir(toolCache)
    await svc.overwrite(key, Buffer.from('this is not a tar archive\n'.repeat(100)))
    server.reset()

    const r = await runStep(url, toolCache)
    expect(r.outputs['cache-hit']).toBe('false')
    expect(warningsOf(r)).toEqual([expect.stringMatching(/restore/i)])
    expect(errorsOf(r)).toEqual([])
    expect(server.requests.length).toBeGreaterThan(0)
    expectRegistered('qemu-aarch64', `${toolCache}/`)
    await expectForeignUname('arm64')
  } finally {
    await server.close()
    endKernel(snap)
  }
}, 240000)

test('a cache service answering 500 gives a warning and a normal download; the platforms run', async () => {
  const snap = await beginKernel()
  const { server, url } = await serve()
  try {
    const toolCache = freshDir('toolcache')
    // @actions/cache tries a 500 five times (with back-off) before giving up
    svc.failNext('GetCacheEntryDownloadURL', 500, 5)
    const r = await runStep(url, toolCache)
    expect(r.outputs['cache-hit']).toBe('false')
    expect(warningsOf(r)).toEqual([expect.stringMatching(/restore.*500/i)])
    expect(errorsOf(r)).toEqual([])
    expect(server.requests.length).toBeGreaterThan(0)
    expectRegistered('qemu-aarch64', `${toolCache}/`)
    await expectForeignUname('arm64')
  } finally {
    await server.close()
    endKernel(snap)
  }
}, 240000)
