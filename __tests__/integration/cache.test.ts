// `cache: true` against the Actions cache service protocol (v2): a stand-in service on
// 127.0.0.1 (Twirp JSON endpoints + Azurite for the blobs, __tests__/support/cache-service.ts),
// reached by the action through the environment a runner gives it. Asserted through what
// users see: outputs, log lines, the kernel entry and a foreign program, and the
// requests the service received.
import { execFileSync } from 'child_process'
import * as fs from 'fs'
import * as path from 'path'
import { RunActionResult, runAction } from '../support/action'
import { Archives, buildArchives, sha256 } from '../support/fixtures'
import { CacheService } from '../support/cache-service'
import { TestServer, startServer } from '../support/server'
import { ustarHeader } from '../support/tar'
import { Snapshot } from '../support/binfmt'
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
  witnessEmulator,
} from './core-helpers'

let svc: CacheService
let root: string
let archives: Archives
beforeAll(async () => {
  svc = await CacheService.start()
  root = freshDir('cache-fixtures')
  archives = buildArchives(path.join(root, 'main'), ['aarch64'], VERSION)
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

/** main then post, as a runner runs a step (saving may happen in either phase); `checkMain` looks at main first. */
async function runStep(
  url: string,
  toolCache: string,
  extra: Record<string, string> = {},
  checkMain: (main: RunActionResult) => void = () => undefined,
): Promise<RunActionResult> {
  const main = await runAction({ ...inputs(url), ...extra }, { toolCache, env: svc.env() })
  checkMain(main)
  expectSuccess(main)
  const post = await runAction({ ...inputs(url), ...extra }, { phase: 'post', state: main.stateFile, toolCache, env: svc.env() })
  if (post.code !== 0) throw new Error(`the post step failed:\n${transcript(post)}`)
  return { ...main, stdout: `${main.stdout}${post.stdout}`, annotations: [...main.annotations, ...post.annotations] }
}

/** Empties the tool cache but keeps its path: the cache entry's version is derived from the cached path. */
function emptyDir(dir: string): void {
  for (const e of fs.readdirSync(dir)) fs.rmSync(path.join(dir, e), { recursive: true, force: true })
}

/** A cold run that saves one new entry; returns that entry's key. */
async function coldRun(url: string, toolCache: string, extra: Record<string, string> = {}): Promise<{ key: string; run: RunActionResult }> {
  const before = svc.entries.length
  const run = await runStep(url, toolCache, extra)
  expect(run.outputs['cache-hit']).toBe('false')
  const added = svc.entries.slice(before)
  expect(added.map(e => e.finalized)).toEqual([true])
  return { key: added[0].key, run }
}

const warningsOf = (r: RunActionResult): string[] => r.annotations.filter(a => a.kind === 'warning').map(a => a.message)
const errorsOf = (r: RunActionResult): string[] => r.annotations.filter(a => a.kind === 'error').map(a => a.message)

/**
 * After a restored entry was refused: the step downloaded, registered and ran the emulator, no error; what it
 * downloaded was saved under a key of its own (one new entry since `entries`), which the next job restores.
 */
async function expectDownloadedThenRestored(
  r: RunActionResult,
  { server, url, toolCache, entries, snap }: { server: TestServer; url: string; toolCache: string; entries: number; snap: Snapshot },
): Promise<void> {
  expect(errorsOf(r)).toEqual([])
  expect(server.requests.length).toBeGreaterThan(0)
  expectRegistered('qemu-aarch64', `${toolCache}/`)
  await expectForeignUname('arm64')
  expect(svc.entries.slice(entries).map(e => e.finalized)).toEqual([true])
  endKernel(snap)
  emptyDir(toolCache)
  const next = await runStep(url, toolCache)
  expect(next.outputs['cache-hit']).toBe('true')
  expect(warningsOf(next)).toEqual([])
  expect(next.stdout).toContain(`Restored emulators from the Actions cache (${svc.entries.at(-1)?.key})`)
}

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
    // One lookup: the newest entry under the key's prefix (a key ends in a digest of what the entry holds), with the
    // version the client saved it under; the action reads the entry itself (no tar -P), and no signed URL reaches the log.
    const prefix = key.replace(/-[0-9a-f]{16}$/, '')
    expect(prefix).not.toBe(key)
    expect(lookup.map(r => r.body.key)).toEqual([prefix])
    expect(lookup[0].body.restore_keys).toEqual([`${prefix}-`])
    expect(lookup[0].body.version).toBe(svc.entries.find(e => e.key === key)?.version)
    expect(lookup.every(r => r.authorized)).toBe(true)
    expect(warm.stdout).not.toMatch(/[?&](sig|se|sp|sv)=/)
    expect(warm.stdout).not.toContain(svc.token)
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

    const entries = svc.entries.length
    const r = await runStep(url, toolCache)
    expect(r.outputs['cache-hit']).toBe('false')
    expect(warningsOf(r)).toEqual([expect.stringMatching(/restore/i)])
    // The bad entry's key stays taken: the download went under a key of its own, which the next job restores.
    await expectDownloadedThenRestored(r, { server, url, toolCache, entries, snap })
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

/**
 * What a job that can write the Actions cache makes of a saved entry, whatever its layout: every
 * qemu-aarch64 in it becomes `forged`, every marker beside one says it came from `claim`, and every
 * gzip file (an archive) becomes a .tar.gz holding `forged` as qemu-aarch64. Packed as the client packs.
 */
function poisoned(blob: Buffer, forged: string, claim: { file: string; fileSha256: string }): Buffer {
  const work = freshDir('poison')
  const zstd = blob.readUInt32LE(0) === 0xfd2fb528
  const unpacked = path.join(work, 'entry.tar')
  execFileSync('sh', ['-c', `${zstd ? 'zstd -d --long=30 -q -c' : 'gzip -dc'} > ${unpacked}`], { input: blob })
  const names = execFileSync('tar', ['-tPf', unpacked]).toString().split('\n').filter(Boolean)
  // Member names climb out of the workspace ('../../tmp/...'): unpack deep enough that they stay in `work`.
  const up = Math.max(...names.map(n => (/^(\.\.\/)*/.exec(n) as RegExpExecArray)[0].length / 3))
  const cwd = path.join(work, 'x', ...Array<string>(up).fill('d'))
  fs.mkdirSync(cwd, { recursive: true })
  execFileSync('tar', ['-xPf', unpacked, '-C', cwd])
  for (const n of names) {
    const f = path.join(cwd, n)
    if (!fs.lstatSync(f).isFile()) continue
    if (path.basename(f) === 'qemu-aarch64') fs.copyFileSync(forged, f)
    else if (path.basename(f) === 'qemu-aarch64.json') fs.writeFileSync(f, JSON.stringify({ sha256: sha256(forged), size: fs.statSync(forged).size, ...claim }))
    else if (
      fs
        .readFileSync(f)
        .subarray(0, 2)
        .equals(Buffer.from([0x1f, 0x8b]))
    ) {
      execFileSync('tar', ['-czf', f, '-C', path.dirname(forged), 'qemu-aarch64'])
    }
  }
  const repacked = path.join(work, 'poisoned.tar')
  execFileSync('tar', ['--posix', '-cPf', repacked, '-C', cwd, '--no-recursion', ...names])
  return execFileSync('sh', ['-c', `${zstd ? 'zstd -q -c' : 'gzip -c'} < ${repacked}`], { maxBuffer: 1 << 30 })
}

test("a poisoned cache entry is proven against the pin before use: the attacker's emulator never runs, and the next job restores a good entry", async () => {
  const snap = await beginKernel()
  const { server, url } = await serve()
  try {
    const toolCache = freshDir('toolcache')
    const archive = { file: path.basename(archives.tarGz), fileSha256: sha256(archives.tarGz) }
    // The archive's line only: its emulators are covered by it.
    const pin = { 'qemu-sha256': `${archive.fileSha256}  ${archive.file}` }
    const { key } = await coldRun(url, toolCache, pin)
    endKernel(snap)
    emptyDir(toolCache)

    const witness = path.join(freshDir('witness'), 'ran-as-root')
    const forged = witnessEmulator(witness)
    await svc.overwrite(key, poisoned(await svc.read(key), forged, archive))
    server.reset()
    const entries = svc.entries.length
    const r = await runStep(url, toolCache, pin, () => {
      // Root never ran the attacker's program (verification runs the registered emulator).
      expect({ ran: fs.existsSync(witness) }).toEqual({ ran: false })
    })
    expect(r.outputs['cache-hit']).toBe('false')
    expect(warningsOf(r)).toEqual([expect.stringMatching(/^Not using the Actions cache entry \S+: .*; downloading instead$/)])
    expect(server.requests.length).toBeGreaterThan(0)
    const e = expectRegistered('qemu-aarch64', `${toolCache}/`)
    expect(sha256(e.interpreter)).toBe(sha256('/usr/bin/qemu-aarch64-static'))
    // The bad entry's key cannot be saved again: what was downloaded went under a key of its own.
    expect(svc.entries.slice(entries).map(x => x.finalized)).toEqual([true])

    endKernel(snap)
    emptyDir(toolCache)
    await server.close()
    const next = await runStep(url, toolCache, pin)
    expect(next.outputs['cache-hit']).toBe('true')
    expect(warningsOf(next)).toEqual([])
    expect(next.stdout).toContain(`Restored emulators from the Actions cache (${svc.entries.at(-1)?.key})`)
    expect(sha256(expectRegistered('qemu-aarch64', `${toolCache}/`).interpreter)).toBe(sha256('/usr/bin/qemu-aarch64-static'))
  } finally {
    await server.close()
    endKernel(snap)
  }
}, 240000)

test('what a later step of the job changes before the post step is not saved', async () => {
  const snap = await beginKernel()
  const { server, url } = await serve()
  try {
    const toolCache = freshDir('toolcache')
    const main = await runAction(inputs(url), { toolCache, env: svc.env() })
    expectSuccess(main)
    // A later step: every file the main step left in the tool cache gets a byte more (renamed into place: the kernel holds the registered one).
    const files = (fs.readdirSync(toolCache, { recursive: true }) as string[]).map(f => path.join(toolCache, f)).filter(f => fs.lstatSync(f).isFile())
    expect(files.length).toBeGreaterThan(0)
    for (const f of files) {
      fs.writeFileSync(`${f}.new`, Buffer.concat([fs.readFileSync(f), Buffer.from('x')]))
      fs.renameSync(`${f}.new`, f)
    }
    const entries = svc.entries.length
    const post = await runAction(inputs(url), { phase: 'post', state: main.stateFile, toolCache, env: svc.env() })
    expect(post.code).toBe(0)
    expect(svc.entries.length).toBe(entries)
    expect(warningsOf(post)).toEqual([expect.stringMatching(/ changed after the main step read it \(sha256 [0-9a-f]{64}, was [0-9a-f]{64}\); not saving it$/)])
  } finally {
    await server.close()
    endKernel(snap)
  }
}, 240000)

/** A tar member built by hand (ustar; a name over 100 bytes split into prefix and name), padded to whole blocks. */
function member(name: string, opts: { type?: string; linkname?: string; data?: Buffer } = {}): Buffer {
  let prefix: string | undefined
  let base = name
  if (Buffer.byteLength(name) > 100) {
    const cut = name.lastIndexOf('/', name.length - 2)
    prefix = name.slice(0, cut)
    base = name.slice(cut + 1)
  }
  const data = opts.data ?? Buffer.alloc(0)
  return Buffer.concat([
    ustarHeader(base, { size: data.length, type: opts.type, linkname: opts.linkname, prefix }),
    data,
    Buffer.alloc((512 - (data.length % 512)) % 512),
  ])
}

/**
 * The saved entry with hostile members in front of what it held, packed as the client packs: a file
 * climbing out of the workspace, an absolute one, and a symbolic link (in the entry's own directory)
 * leading outside, with a file written through it. The genuine files stay: only the extras are an attack.
 */
function hostile(blob: Buffer, witness: { dotdot: string; absolute: string; linkedDir: string }): Buffer {
  const work = freshDir('hostile')
  const zstd = blob.readUInt32LE(0) === 0xfd2fb528
  const tar = execFileSync('sh', ['-c', zstd ? 'zstd -d --long=30 -q -c' : 'gzip -dc'], { input: blob, maxBuffer: 1 << 30 })
  const names = execFileSync('tar', ['-tPf', '-'], { input: tar }).toString().split('\n').filter(Boolean)
  const dir = names.find(n => n.endsWith('/source/')) as string
  expect(dir).toBeDefined()
  const crafted = Buffer.concat([
    member(`${'../'.repeat(16)}${witness.dotdot.slice(1)}`, { data: Buffer.from('planted\n') }),
    member(witness.absolute, { data: Buffer.from('planted\n') }),
    member(`${dir}out`, { type: '2', linkname: witness.linkedDir }),
    member(`${dir}out/planted`, { data: Buffer.from('planted\n') }),
    tar,
  ])
  const file = path.join(work, 'entry.tar')
  fs.writeFileSync(file, crafted)
  return execFileSync('sh', ['-c', `${zstd ? 'zstd -q -c' : 'gzip -c'} < ${file}`], { maxBuffer: 1 << 30 })
}

test('a cache entry holding files outside its own directory is not unpacked: nothing is written outside, one warning, and the run downloads', async () => {
  const snap = await beginKernel()
  const { server, url } = await serve()
  const tag = `setup-qemu-binfmt-witness-${process.pid}-${Date.now()}`
  const witness = { dotdot: `/tmp/${tag}-dotdot`, absolute: `/tmp/${tag}-absolute`, linkedDir: `/tmp/${tag}-dir` }
  fs.mkdirSync(witness.linkedDir)
  try {
    const toolCache = freshDir('toolcache')
    const { key } = await coldRun(url, toolCache)
    endKernel(snap)
    emptyDir(toolCache)
    await svc.overwrite(key, hostile(await svc.read(key), witness))
    server.reset()

    const entries = svc.entries.length
    const r = await runStep(url, toolCache)
    expect({
      dotdot: fs.existsSync(witness.dotdot),
      absolute: fs.existsSync(witness.absolute),
      throughLink: fs.readdirSync(witness.linkedDir),
    }).toEqual({ dotdot: false, absolute: false, throughLink: [] })
    expect(r.outputs['cache-hit']).toBe('false')
    expect(warningsOf(r)).toEqual([expect.stringMatching(new RegExp(`^Not using the Actions cache entry ${key}: .*; downloading instead$`))])
    // The bad entry's key stays taken: the download went under a key of its own, which the next job restores.
    await expectDownloadedThenRestored(r, { server, url, toolCache, entries, snap })
  } finally {
    for (const w of [witness.dotdot, witness.absolute, witness.linkedDir]) fs.rmSync(w, { recursive: true, force: true })
    await server.close()
    endKernel(snap)
  }
}, 240000)
