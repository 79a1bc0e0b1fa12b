import { execFileSync } from 'child_process'
import { createHash } from 'crypto'
import * as fs from 'fs'
import * as os from 'os'
import * as path from 'path'
import { parseChecksums } from '../../src/fetch/checksum'
import { ActionError } from '../../src/errors'
import { FetchRequest, fetchEmulators } from '../../src/fetch'
import { ToolCacheEntry } from '../../src/fetch/tool-cache'
import { EmulatorWant } from '../../src/plan'
import { resolveSource } from '../../src/fetch/source'
import { qemuDeb } from '../support/fixtures'

// The fetch side without a network: local archives, per-target files and directories
// built from Debian's /usr/bin/qemu-<T>-static, into tool caches made per test.

const host = process.arch === 'arm64' ? 'arm64' : 'amd64'
const usrBin = (t: string): string => `/usr/bin/qemu-${t}-static`
const sha = (f: string): string => createHash('sha256').update(fs.readFileSync(f)).digest('hex')
const quiet = { info: () => undefined, debug: () => undefined, warning: () => undefined, progress: () => undefined }
let work: string
let tgz: string
let perTarget: string
let dirOfEmulators: string

beforeAll(() => {
  work = fs.mkdtempSync(path.join(os.tmpdir(), 'fetch-test-'))
  const flat = path.join(work, 'flat')
  fs.mkdirSync(flat)
  for (const t of ['aarch64', 'arm', 'riscv64']) fs.copyFileSync(usrBin(t), path.join(flat, `qemu-${t}`))
  tgz = path.join(work, 'qemu_v7_linux-amd64.tar.gz')
  execFileSync('tar', ['-I', 'gzip -1', '-cf', tgz, 'qemu-aarch64', 'qemu-arm', 'qemu-riscv64'], { cwd: flat })
  perTarget = path.join(work, 'per')
  fs.mkdirSync(perTarget)
  for (const t of ['aarch64', 'arm']) fs.copyFileSync(usrBin(t), path.join(perTarget, `qemu-${t}-static`))
  dirOfEmulators = perTarget
})
afterAll(() => fs.rmSync(work, { recursive: true, force: true }))

function request(url: string, want: EmulatorWant, extra: Partial<FetchRequest> = {}): FetchRequest {
  const temp = fs.mkdtempSync(path.join(work, 'temp-'))
  return {
    source: resolveSource(url, '7.2.0-1', host),
    version: '7.2.0-1',
    host,
    sha256: new Map(),
    cache: false,
    want,
    selectionKey: want.required ? [...want.names].sort().join(',') : 'all',
    tempDir: temp,
    log: quiet,
    toolCache: fs.mkdtempSync(path.join(work, 'tc-')),
    ...extra,
  }
}
const list = (...names: string[]): EmulatorWant => ({ names, required: true })
const ALL: EmulatorWant = { names: ['aarch64', 'arm', 'riscv64', 'mips64el', 's390x'], required: false }

describe('fetchEmulators', () => {
  test('a local archive: extracted once into the tool cache, then found there', async () => {
    const req = request(tgz, list('aarch64', 'arm'))
    const cold = await fetchEmulators(req)
    expect(cold.from).toBe('local')
    expect([...cold.emulators.keys()].sort()).toEqual(['aarch64', 'arm'])
    for (const [t, e] of cold.emulators) {
      expect(sha(e.path)).toBe(sha(usrBin(t)))
      expect(e.path.startsWith(req.toolCache!)).toBe(true)
      expect(e.origin).toBe(path.basename(tgz))
      expect(e.reportedVersion).toMatch(new RegExp(`^qemu-${t} version `))
    }
    const warm = await fetchEmulators({ ...req })
    expect(warm.from).toBe('tool-cache')
    expect([...warm.emulators.values()].map(e => e.path).sort()).toEqual([...cold.emulators.values()].map(e => e.path).sort())
  })

  test('a local .deb (issue 25): its Version field is the version, the tool-cache folder the QEMU version its emulators report, and only the warm run is a cache hit', async () => {
    const deb = path.join(work, 'qemu-user-static.deb')
    fs.copyFileSync(qemuDeb(), deb)
    const pkg = execFileSync('dpkg-deb', ['-f', deb, 'Version'], { encoding: 'utf8' }).trim()
    // The input says another release altogether: a local file's own version wins.
    const req = request(deb, list('aarch64', 'arm'), { source: resolveSource(deb, '10.2.3-68', host), version: '10.2.3-68' })
    const cold = await fetchEmulators(req)
    expect({ from: cold.from, cacheHit: cold.cacheHit, version: cold.version }).toEqual({ from: 'local', cacheHit: false, version: pkg })
    const aarch64 = cold.emulators.get('aarch64')!.path
    const qemu = /version (\d+\.\d+\.\d+)/.exec(execFileSync(aarch64, ['--version'], { encoding: 'utf8' }))![1]
    expect(path.relative(req.toolCache!, aarch64).split(path.sep).slice(0, 2)).toEqual(['setup-qemu-binfmt', qemu])
    expect(fs.readdirSync(path.join(req.toolCache!, 'setup-qemu-binfmt'))).toEqual([qemu])

    // The warm run reads nothing of the file: the same size and mtime, other bytes, and it still knows the version.
    const times = `${deb}.times`
    execFileSync('touch', ['-r', deb, times])
    fs.writeFileSync(deb, Buffer.alloc(fs.statSync(deb).size))
    // touch keeps the nanoseconds (utimes would round them): the identity the tool cache knows it by
    execFileSync('touch', ['-r', times, deb])
    const warm = await fetchEmulators({ ...req, tempDir: fs.mkdtempSync(path.join(work, 'temp-')) })
    expect({ from: warm.from, cacheHit: warm.cacheHit, version: warm.version }).toEqual({ from: 'tool-cache', cacheHit: true, version: pkg })
    expect(warm.emulators.get('aarch64')!.path).toBe(aarch64)
  })

  test('a local archive or directory that names no version: the version is what the emulators report; a directory used in place is no cache hit', async () => {
    const qemu = /version (\d+\.\d+\.\d+)/.exec(execFileSync(usrBin('arm'), ['--version'], { encoding: 'utf8' }))![1]
    const cold = await fetchEmulators(request(tgz, list('arm')))
    expect({ cacheHit: cold.cacheHit, version: cold.version }).toEqual({ cacheHit: false, version: qemu })
    expect(cold.emulators.get('arm')!.path).toContain(`/setup-qemu-binfmt/${qemu}/`)
    const dir = await fetchEmulators(request(dirOfEmulators, list('arm')))
    expect({ from: dir.from, cacheHit: dir.cacheHit, version: dir.version }).toEqual({ from: 'local', cacheHit: false, version: qemu })
  })

  test('platforms: all reads the whole archive once; the next run knows what it offers', async () => {
    const req = request(tgz, ALL)
    const cold = await fetchEmulators(req)
    expect([...cold.emulators.keys()].sort()).toEqual(['aarch64', 'arm', 'riscv64'])
    const warm = await fetchEmulators(req)
    expect(warm.from).toBe('tool-cache')
    expect([...warm.emulators.keys()].sort()).toEqual(['aarch64', 'arm', 'riscv64'])
  })

  test('one file per target, and a directory used in place', async () => {
    const per = await fetchEmulators(request(path.join(perTarget, 'qemu-{target}-static'), list('aarch64', 'arm')))
    expect(sha(per.emulators.get('arm')!.path)).toBe(sha(usrBin('arm')))
    const dir = await fetchEmulators(request(dirOfEmulators, list('aarch64')))
    expect(dir.from).toBe('local')
    expect(dir.emulators.get('aarch64')!.path).toBe(path.join(dirOfEmulators, 'qemu-aarch64-static'))
    await expect(fetchEmulators(request(dirOfEmulators, list('s390x')))).rejects.toThrow(
      /has no qemu-s390x or qemu-s390x-static; it has qemu-aarch64, qemu-arm$/,
    )
  })

  test('four fetches at once into one tool cache all succeed, and leave no staging behind', async () => {
    const toolCache = fs.mkdtempSync(path.join(work, 'tc-'))
    const results = await Promise.all([0, 1, 2, 3].map(() => fetchEmulators(request(tgz, list('aarch64', 'arm', 'riscv64'), { toolCache }))))
    for (const r of results) for (const [t, e] of r.emulators) expect(sha(e.path)).toBe(sha(usrBin(t)))
    const files = fs.readdirSync(toolCache, { recursive: true }) as string[]
    expect(files.filter(f => f.includes('.tmp-'))).toEqual([])
  })

  test('an abort stops the fetch, and nothing is kept', async () => {
    const ctl = new AbortController()
    ctl.abort(new Error('cancelled'))
    const req = request(tgz, list('aarch64'), { signal: ctl.signal })
    await expect(fetchEmulators(req)).rejects.toThrow('cancelled')
    const files = fs.readdirSync(req.toolCache!, { recursive: true }) as string[]
    expect(files.filter(f => /^qemu-|^\.tmp-/.test(path.basename(f)))).toEqual([])
  })

  test('pins: checked before anything is stored, and on warm runs against the bytes', async () => {
    const wrong = parseChecksums(`${'0'.repeat(64)}  ${path.basename(tgz)}`)
    const cold = request(tgz, list('aarch64'), { sha256: wrong })
    await expect(fetchEmulators(cold)).rejects.toThrow(/^qemu-sha256: checksum mismatch for qemu_v7_linux-amd64\.tar\.gz: expected 0{64}, got [0-9a-f]{64}; /)
    expect((fs.readdirSync(cold.toolCache!, { recursive: true }) as string[]).filter(f => f.endsWith('.json'))).toEqual([])

    const right = parseChecksums(`${sha(tgz)}  ${path.basename(tgz)}`)
    const req = request(tgz, list('aarch64'), { sha256: right })
    const first = await fetchEmulators(req)
    const file = first.emulators.get('aarch64')!.path
    const bytes = fs.readFileSync(file)
    bytes[1000] ^= 1
    fs.writeFileSync(file, bytes)
    await expect(fetchEmulators(req)).rejects.toThrow(/^qemu-sha256: .*qemu-aarch64 in the tool cache changed after it was stored/)
    // Also when the run downloads something else and reuses the stored one.
    await expect(fetchEmulators({ ...req, want: list('aarch64', 'arm') })).rejects.toThrow(/qemu-aarch64 in the tool cache changed after it was stored/)
  })

  test('a tool cache that cannot be written says what to do', async () => {
    const blocker = path.join(work, 'not-a-dir')
    fs.writeFileSync(blocker, '')
    await expect(fetchEmulators(request(tgz, list('aarch64'), { toolCache: blocker }))).rejects.toThrow(
      /^cannot write the tool cache entry .* \(ENOTDIR: a parent is not a directory\); make RUNNER_TOOL_CACHE a writable directory for this user, or point it elsewhere$/,
    )
  })
})

describe('ToolCacheEntry', () => {
  test('trusts a binary only with its marker and the size the marker says', () => {
    const entry = new ToolCacheEntry(fs.mkdtempSync(path.join(work, 'entry-')))
    const staging = entry.stage()
    fs.copyFileSync(usrBin('arm'), path.join(staging, 'x'))
    const size = fs.statSync(usrBin('arm')).size
    entry.commit(staging, new Map([['arm', { path: path.join(staging, 'x'), sha256: sha(usrBin('arm')), size, file: 'f', fileSha256: 'a'.repeat(64) }]]), [
      'arm',
      'aarch64',
    ])
    expect([...entry.read().emulators.keys()]).toEqual(['arm'])
    expect(entry.read().offered).toEqual(['arm', 'aarch64'])
    // A binary without a marker (a run killed between the two renames), and one cut short.
    fs.copyFileSync(usrBin('aarch64'), path.join(entry.dir, 'qemu-aarch64'))
    fs.truncateSync(path.join(entry.dir, 'qemu-arm'), 1000)
    expect([...entry.read().emulators.keys()]).toEqual([])
  })
})

test('errors are ActionErrors (one line, no stack)', async () => {
  const e = await fetchEmulators(request(path.join(work, 'nope.tar.gz'), list('arm'))).catch(x => x)
  expect(e).toBeInstanceOf(ActionError)
  expect(e.message).toMatch(/^qemu-url: .*nope\.tar\.gz does not exist \(ENOENT\); check the path$/)
})
