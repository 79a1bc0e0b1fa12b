import * as fs from 'fs'
import * as http from 'http'
import * as net from 'net'
import * as os from 'os'
import * as path from 'path'
import * as zlib from 'zlib'
import { ActionError } from '../../../src/errors'
import { cacheVersion, compressionMethod, parsePending, readEntry, restoreEntry, saveKey } from '../../../src/fetch/actions-cache'
import { DEFAULT_NETWORK } from '../../../src/fetch/download'
import { DEFAULT_LIMITS } from '../../../src/fetch/limits'
import { ustarHeader } from '../../support/tar'

// What the Actions cache entry is called and what post trusts of main's state.

const A = 'a'.repeat(64)
const B = 'b'.repeat(64)

test('a key names what the entry holds, whatever the order; after a bad entry it is new each time', () => {
  const key = saveKey('p', [{ slot: 'archive', sha256: A }], false)
  expect(key).toMatch(/^p-[0-9a-f]{16}$/)
  expect(saveKey('p', [{ slot: 'archive', sha256: A }], false)).toBe(key)
  expect(saveKey('p', [{ slot: 'archive', sha256: B }], false)).not.toBe(key)
  expect(
    saveKey(
      'p',
      [
        { slot: 'arm', sha256: A },
        { slot: 'aarch64', sha256: B },
      ],
      false,
    ),
  ).toBe(
    saveKey(
      'p',
      [
        { slot: 'aarch64', sha256: B },
        { slot: 'arm', sha256: A },
      ],
      false,
    ),
  )
  expect(saveKey('p', [{ slot: 'archive', sha256: A }], true)).toMatch(new RegExp(`^${key}-[0-9a-z]+$`))
})

test("post takes main's state only whole, and only slots that are plain names", () => {
  const ok = { dir: '/t/source', key: 'p-1', files: [{ slot: 'archive', sha256: A }] }
  expect(parsePending(JSON.stringify(ok))).toEqual(ok)
  expect(parsePending('')).toBeUndefined()
  expect(parsePending('{')).toBeUndefined()
  expect(parsePending(JSON.stringify({ dir: '/t/source', key: 'p-1' }))).toBeUndefined()
  expect(parsePending(JSON.stringify({ ...ok, files: [{ slot: '../etc/passwd', sha256: A }] }))).toBeUndefined()
})

// The restore: this action's own reader of an entry (never `tar -P`), and what it asks the service.

describe('restoring', () => {
  let work: string
  let workspace: string
  let saveDir: string
  let out: string
  const saved = { ...process.env }
  beforeAll(() => {
    work = fs.mkdtempSync(path.join(os.tmpdir(), 'actions-cache-unit-'))
    workspace = path.join(work, 'home', 'runner', 'work', 'repo', 'repo')
    saveDir = path.join(work, 'toolcache', 'setup-qemu-binfmt', '10.0.0', 'x64-abc', 'source')
    fs.mkdirSync(workspace, { recursive: true })
  })
  afterAll(() => fs.rmSync(work, { recursive: true, force: true }))
  beforeEach(() => {
    process.env.GITHUB_WORKSPACE = workspace
    out = fs.mkdtempSync(path.join(work, 'out-'))
  })
  afterEach(() => {
    process.env = { ...saved }
  })

  /** A member (ustar; long names split into prefix and name), padded to whole blocks. */
  function member(name: string, opts: { type?: string; linkname?: string; data?: string } = {}): Buffer {
    let prefix: string | undefined
    let base = name
    if (Buffer.byteLength(name) > 100) {
      const cut = name.lastIndexOf('/', name.length - 2)
      prefix = name.slice(0, cut)
      base = name.slice(cut + 1)
    }
    const data = Buffer.from(opts.data ?? '')
    return Buffer.concat([
      ustarHeader(base, { size: data.length, type: opts.type, linkname: opts.linkname, prefix }),
      data,
      Buffer.alloc((512 - (data.length % 512)) % 512),
    ])
  }
  /** An entry as the client packs it (names relative to the workspace, `..` and all), gzip-compressed, with `extra` members in front. */
  function entry(extra: Buffer[] = [], files: Record<string, string> = { archive: 'the archive\n' }): string {
    const rel = path.relative(workspace, saveDir)
    const tar = Buffer.concat([
      ...extra,
      member(`${rel}/`, { type: '5' }),
      ...Object.entries(files).map(([slot, data]) => member(`${rel}/${slot}`, { data })),
      Buffer.alloc(1024),
    ])
    const file = path.join(work, `entry-${Math.random().toString(36).slice(2)}.tgz`)
    fs.writeFileSync(file, zlib.gzipSync(tar))
    return file
  }
  const read = (blob: string, slots: string[] = ['archive'], limits = DEFAULT_LIMITS): Promise<void> => readEntry(blob, out, { saveDir, slots, limits })

  test('takes exactly the files asked for, from where the post step saved them; an unasked one of the entry is skipped', async () => {
    await read(entry([], { aarch64: 'one\n', arm: 'two\n' }), ['arm'])
    expect(fs.readdirSync(out)).toEqual(['arm'])
    expect(fs.readFileSync(path.join(out, 'arm'), 'utf8')).toBe('two\n')
    expect(fs.statSync(path.join(out, 'arm')).mode & 0o777).toBe(0o600)
  })

  test('an entry holding anything else is refused, and nothing of it is written anywhere', async () => {
    const tag = `actions-cache-unit-${process.pid}-${Date.now()}`
    const outside = path.join(work, `${tag}-dir`)
    fs.mkdirSync(outside)
    const rel = path.relative(workspace, saveDir)
    const cases: [Buffer[], RegExp][] = [
      [[member(`${'../'.repeat(16)}tmp/${tag}-dotdot`, { data: 'x' })], /holds "(\.\.\/){16}tmp\/[^"]+-dotdot", which is not a file this action saves/],
      [[member(`/tmp/${tag}-absolute`, { data: 'x' })], /holds "\/tmp\/[^"]+-absolute", which is not a file this action saves/],
      [
        [member(`${rel}/out`, { type: '2', linkname: outside }), member(`${rel}/out/planted`, { data: 'x' })],
        /holds "[^"]*\/source\/out" as a symlink, not as a regular file/,
      ],
      [[member(`${rel}/archive`, { type: '2', linkname: '/etc/shadow' })], /holds "[^"]*\/source\/archive" as a symlink, not as a regular file/],
      [[member(`${rel}/archive`, { type: '1', linkname: '/etc/shadow' })], /holds "[^"]*\/source\/archive" as a hard link, not as a regular file/],
      [[member(`${rel}/archive`, { data: 'first\n' })], /holds "[^"]*\/source\/archive" twice/],
      [[member(`${rel}/sub/`, { type: '5' })], /holds "[^"]*\/source\/sub\/" as a directory, not as a regular file/],
      [[member(`${rel}/.archive-1`, { data: 'x' })], /holds "[^"]*\/source\/\.archive-1", which is not a file this action saves/],
      [[member(`${rel}/dev`, { type: '3' })], /holds "[^"]*\/source\/dev" as a device, not as a regular file/],
    ]
    for (const [extra, why] of cases) {
      await expect(read(entry(extra))).rejects.toThrow(why)
      // `archive` comes after the hostile members; one cut short (the duplicate) is removed by the caller with the directory.
      expect(fs.readdirSync(out).filter(f => f !== 'archive')).toEqual([])
      fs.rmSync(out, { recursive: true, force: true })
      fs.mkdirSync(out)
    }
    expect(fs.readdirSync('/tmp').filter(f => f.startsWith(tag))).toEqual([])
    expect(fs.readdirSync(outside)).toEqual([])
  })

  test('a member name reaches the message inert: one line, no workflow command', async () => {
    const e = await read(entry([member('::error::x\n##[set-output name=a;]b', { data: 'x' })])).catch((x: Error) => x)
    expect(e).toBeInstanceOf(ActionError)
    expect((e as Error).message).not.toMatch(/::|##\[|\n/)
  })

  test('a file over the size limit, a missing file, or an archive that is not one: refused', async () => {
    await expect(read(entry([], { archive: 'x'.repeat(2000) }), ['archive'], { ...DEFAULT_LIMITS, download: 1000 })).rejects.toThrow(
      /of 2000 bytes, more than 1000$/,
    )
    await expect(read(entry([], { aarch64: 'x' }), ['arm'])).rejects.toThrow(/^the restored entry has no .*\/source\/arm$/)
    const garbage = path.join(work, 'garbage')
    fs.writeFileSync(garbage, 'this is not a tar archive\n'.repeat(100))
    await expect(read(garbage)).rejects.toThrow(/^the restored entry is not gzip- or zstd-compressed$/)
    const cut = path.join(work, 'cut.tgz')
    fs.writeFileSync(cut, fs.readFileSync(entry()).subarray(0, 60))
    await expect(read(cut)).rejects.toThrow(/^the restored entry is corrupt or truncated/)
  })

  test('the version is the one @actions/cache gives the same path and compression; so is the compression', async () => {
    const utils = await import('../../../node_modules/@actions/cache/lib/internal/cacheUtils.js' as string)
    for (const c of ['zstd-without-long', 'gzip']) expect(cacheVersion([saveDir], c)).toBe(utils.getCacheVersion([saveDir], c))
    expect(await compressionMethod()).toBe(await utils.getCompressionMethod())
  })

  test('without the v2 service nothing is restored (and no tar -P path either): a debug line says why', async () => {
    const log = { info: jest.fn(), debug: jest.fn(), warning: jest.fn(), progress: jest.fn() }
    const req = { saveDir, prefix: 'p', slots: ['archive'], tempDir: work, limits: DEFAULT_LIMITS, network: DEFAULT_NETWORK, log }
    delete process.env.ACTIONS_CACHE_SERVICE_V2
    delete process.env.ACTIONS_RESULTS_URL
    process.env.ACTIONS_CACHE_URL = 'http://127.0.0.1:9/'
    process.env.ACTIONS_RUNTIME_TOKEN = 't'
    expect(await restoreEntry(req)).toEqual({ available: false })
    expect(log.debug).toHaveBeenCalledWith(expect.stringMatching(/^The Actions cache service here is not v2 .*; not restoring/))
    delete process.env.ACTIONS_CACHE_URL
    expect(await restoreEntry(req)).toEqual({ available: false })
    expect(log.debug).toHaveBeenLastCalledWith('The Actions cache service is not available here (local run?); using the runner tool cache only')
    expect(log.warning).not.toHaveBeenCalled()
    expect(log.info).not.toHaveBeenCalled()
  })
})

describe('talking to the service', () => {
  let work: string
  let server: http.Server
  let base: string
  const saved = { ...process.env }
  let answer: Record<string, unknown> = {}
  let blob: { status: number; body: Buffer } = { status: 200, body: Buffer.alloc(0) }
  const seen: string[] = []
  beforeAll(async () => {
    work = fs.mkdtempSync(path.join(os.tmpdir(), 'actions-cache-svc-'))
    server = http.createServer((req, res) => {
      seen.push(`${req.method} ${req.url} ${req.headers.authorization ?? ''}`)
      if (req.method === 'POST') {
        res.writeHead(200, { 'Content-Type': 'application/json' })
        res.end(JSON.stringify(answer))
      } else {
        res.writeHead(blob.status)
        res.end(blob.body)
      }
    })
    await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
    base = `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`
  })
  afterAll(async () => {
    await new Promise(resolve => server.close(resolve))
    fs.rmSync(work, { recursive: true, force: true })
  })
  afterEach(() => {
    process.env = { ...saved }
    seen.length = 0
  })

  async function restore(): Promise<{ r: Awaited<ReturnType<typeof restoreEntry>>; logs: string[] }> {
    const workspace = path.join(work, 'ws')
    fs.mkdirSync(workspace, { recursive: true })
    Object.assign(process.env, {
      ACTIONS_CACHE_SERVICE_V2: 'True',
      ACTIONS_RESULTS_URL: `${base}/some/path/`,
      ACTIONS_RUNTIME_TOKEN: 'the-token',
      GITHUB_SERVER_URL: 'https://github.com',
      GITHUB_WORKSPACE: workspace,
    })
    const logs: string[] = []
    const log = {
      info: (m: string) => logs.push(m),
      debug: (m: string) => logs.push(m),
      warning: (m: string) => logs.push(`warning: ${m}`),
      progress: () => undefined,
    }
    const saveDir = path.join(work, 'tc', 'source')
    const network = { ...DEFAULT_NETWORK, retryDelayMs: 1 }
    const r = await restoreEntry({ saveDir, prefix: 'p', slots: ['archive'], tempDir: work, limits: DEFAULT_LIMITS, network, log })
    return { r, logs }
  }
  const tgz = (): Buffer => {
    const name = path.relative(path.join(work, 'ws'), path.join(work, 'tc', 'source', 'archive'))
    const data = Buffer.from('the archive\n')
    return zlib.gzipSync(Buffer.concat([ustarHeader(name, { size: data.length }), data, Buffer.alloc(512 - data.length), Buffer.alloc(1024)]))
  }

  test('one lookup from the URL origin with the runtime token; the entry read; the signed URL never in a log line', async () => {
    answer = { ok: true, matched_key: 'p-0123456789abcdef', signed_download_url: `${base}/blob?sv=1&sig=SECRETSIG` }
    blob = { status: 200, body: tgz() }
    const { r, logs } = await restore()
    expect(seen).toEqual(['POST /twirp/github.actions.results.api.v1.CacheService/GetCacheEntryDownloadURL Bearer the-token', 'GET /blob?sv=1&sig=SECRETSIG '])
    expect(r).toEqual({ available: true, hit: 'p-0123456789abcdef', dir: expect.any(String) })
    expect(fs.readdirSync(r.dir as string)).toEqual(['archive'])
    expect(logs).toEqual(['Restored emulators from the Actions cache (p-0123456789abcdef)'])
    fs.rmSync(r.dir as string, { recursive: true })
  })

  test('a refused download says why without the signed URL; an entry not under the prefix is not fetched', async () => {
    answer = { ok: true, matched_key: 'p-1', signed_download_url: `${base}/blob?sig=SECRETSIG` }
    blob = { status: 403, body: Buffer.from('denied') }
    let { r, logs } = await restore()
    expect(r).toEqual({ available: true, failed: true })
    expect(logs).toEqual(['warning: Actions cache restore failed, downloading instead: the entry p-1 could not be downloaded (HTTP 403 Forbidden)'])
    answer = { ok: true, matched_key: 'other-1', signed_download_url: `${base}/blob?sig=SECRETSIG` }
    ;({ r, logs } = await restore())
    expect(r).toEqual({ available: true, failed: true })
    expect(logs).toEqual(['warning: Actions cache restore failed, downloading instead: the cache service matched "other-1", not a key under p-'])
    expect(seen.filter(s => s.startsWith('GET'))).toHaveLength(1)
    answer = { ok: false }
    expect((await restore()).r).toEqual({ available: true })
    expect(fs.readdirSync(work).filter(f => f.startsWith('restored-entry-'))).toEqual([])
  })
})
