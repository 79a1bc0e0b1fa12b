// The core action end to end: dist/index.js fetches emulators (from a server on
// 127.0.0.1 or local files), registers them in the kernel with the F flag and
// verifies them; a foreign busybox then runs in a chroot that holds no QEMU.
import { find, findAllVersions } from '@actions/tool-cache'
import { execFileSync } from 'child_process'
import * as fs from 'fs'
import * as path from 'path'
import { RunActionResult, runAction } from '../support/action'
import { Snapshot } from '../support/binfmt'
import { buildArchives, sha256 } from '../support/fixtures'
import { ldsoAmd64Levels, nativeExtras } from '../support/host'
import {
  CoreFixtures,
  MY_TARGETS,
  VERSION,
  beginKernel,
  closeFixtures,
  endKernel,
  expectForeignUname,
  expectRegistered,
  expectSuccess,
  freshDir,
  myEntry,
  myRaw,
  startFixtures,
  summaryRows,
  withKernel,
} from './core-helpers'

/** Platforms of the main run: one per target these tests own. */
const PLATFORMS = 'linux/arm64,linux/arm/v7,linux/riscv64,linux/mips64le'
const EMULATED = ['linux/arm64', 'linux/arm/v7', 'linux/arm/v6', 'linux/riscv64', 'linux/mips64le']
/** What this host runs natively, learned independently: linux/386 where the kernel runs it, the levels ld.so reports. */
const NATIVE = ['linux/amd64', ...nativeExtras()]
const NATIVE_LEVELS = ldsoAmd64Levels() ?? []
const platformsOf = (platforms: string): string[] => platforms.split(',').sort()

let fx: CoreFixtures
beforeAll(async () => {
  fx = await startFixtures()
}, 120000)
afterAll(() => closeFixtures(fx))

describe('download, register with F, verify; then a second run on the same tool cache', () => {
  let cache: string
  let first: RunActionResult | undefined
  let afterFirst: Map<string, string>
  let snap: Snapshot

  // One kernel snapshot around both runs: the second run must find the first run's entries.
  beforeAll(async () => {
    cache = freshDir('toolcache')
    snap = await beginKernel()
  }, 120000)
  afterAll(() => endKernel(snap))

  test('first run: exit 0, entries with F in the tool cache, foreign programs run, outputs and summary', async () => {
    fx.server.reset()
    const r = await runAction({ platforms: PLATFORMS, 'qemu-version': VERSION, 'qemu-url': fx.tarGzUrl }, { toolCache: cache })
    first = r
    expectSuccess(r)

    // Exactly one download: the template with {version}, {qemu} and {host} filled in.
    expect(fx.server.requests).toEqual([`/main/${fx.archives.tarGzUrlPath}`])

    for (const t of MY_TARGETS) {
      const e = expectRegistered(`qemu-${t}`, `${cache}/`)
      expect(sha256(e.interpreter)).toBe(sha256(`/usr/bin/qemu-${t}-static`))
    }
    afterFirst = myRaw()

    // The interpreters live outside the chroots: only the F flag makes these run.
    await expectForeignUname('arm64')
    await expectForeignUname('armhf')
    await expectForeignUname('mips64el')

    const o = r.outputs
    // Native and verified platforms, and nothing else.
    expect(platformsOf(o.platforms)).toEqual([...NATIVE, ...NATIVE_LEVELS, ...EMULATED].sort())
    // The matrix-ready output is the same list, in the same order.
    expect(JSON.parse(o['platforms-json'])).toEqual(o.platforms.split(','))
    expect(o.emulators.split(',').sort()).toEqual([...MY_TARGETS].sort())
    expect(o['qemu-version']).toBe(VERSION)
    expect(o['cache-hit']).toBe('false')
    expect(o.method).toBe('direct')

    // The job summary: a row per native platform and per emulator, each verified.
    const rows = summaryRows(r.summary)
    const rowFor = (platform: string): string[] | undefined => rows.find(row => row[0].split(', ').includes(platform))
    for (const p of [...NATIVE, ...NATIVE_LEVELS, ...EMULATED]) expect({ p, hasRow: rowFor(p) !== undefined }).toEqual({ p, hasRow: true })
    for (const [p, t] of [
      ['linux/arm64', 'aarch64'],
      ['linux/arm/v7', 'arm'],
      ['linux/riscv64', 'riscv64'],
      ['linux/mips64le', 'mips64el'],
    ]) {
      const row = (rowFor(p) as string[]).join(' | ')
      expect(row).toContain(`qemu-${t} (added)`)
      expect(row).toContain('| yes |')
      expect(row).toMatch(/\| P?O?CF \|/)
    }
  })

  test('second run, same inputs and tool cache: entries kept, nothing downloaded, cache-hit=true', async () => {
    if (first?.code !== 0) throw new Error('needs a successful first run')
    const requests = fx.server.requests.length
    const r = await runAction({ platforms: PLATFORMS, 'qemu-version': VERSION, 'qemu-url': fx.tarGzUrl }, { toolCache: cache })
    expectSuccess(r)
    expect(fx.server.requests.length).toBe(requests)
    expect(myRaw()).toEqual(afterFirst)
    for (const t of MY_TARGETS) expect(r.stdout).toMatch(new RegExp(`^qemu-${t}: already registered with ${cache}/\\S+ and flags POCF; kept$`, 'm'))
    expect(r.outputs['cache-hit']).toBe('true')
    expect(r.outputs.method).toBe('direct')
    expect(r.outputs.emulators.split(',').sort()).toEqual([...MY_TARGETS].sort())
    expect(r.outputs.platforms).toBe(first.outputs.platforms)
    await expectForeignUname('arm64')
  })

  test("a later step of the job finds the emulators with @actions/tool-cache's find()", () => {
    if (first?.code !== 0) throw new Error('needs a successful first run')
    // The directory of the registered interpreter is what find() must return: <tool>/<version>/<arch>.
    const dir = path.dirname(expectRegistered('qemu-aarch64', `${cache}/`).interpreter)
    const arch = path.basename(dir)
    expect(path.relative(cache, dir)).toBe(path.join('setup-qemu-binfmt', VERSION, arch))
    const saved = process.env.RUNNER_TOOL_CACHE
    process.env.RUNNER_TOOL_CACHE = cache
    try {
      expect(find('setup-qemu-binfmt', VERSION, arch)).toBe(dir)
      expect(findAllVersions('setup-qemu-binfmt', arch)).toEqual([VERSION])
      expect(fs.existsSync(path.join(find('setup-qemu-binfmt', VERSION, arch), 'qemu-aarch64'))).toBe(true)
      // It is the marker beside the entry that find() needs (our own markers are what the action trusts).
      fs.renameSync(`${dir}.complete`, `${dir}.moved`)
      expect(find('setup-qemu-binfmt', VERSION, arch)).toBe('')
      fs.renameSync(`${dir}.moved`, `${dir}.complete`)
    } finally {
      if (saved === undefined) delete process.env.RUNNER_TOOL_CACHE
      else process.env.RUNNER_TOOL_CACHE = saved
    }
  })
})

describe('every source layout', () => {
  interface Layout {
    name: string
    url: () => string
    /** server requests the run must make (URL paths); [] for local sources */
    requests: () => string[]
    /** the registered interpreter for a target: in the tool cache, or this path */
    interpreter?: (t: string) => string
  }
  const layouts: Layout[] = [
    {
      name: 'tar.xz with usr/bin/qemu-T-static',
      url: () => `${fx.server.url}/main/qemu-static_{version}_{host}.tar.xz`,
      requests: () => [`/main/qemu-static_${VERSION}_amd64.tar.xz`],
    },
    {
      name: 'tar.zst with usr/bin/qemu-T-static',
      url: () => `${fx.server.url}/main/qemu-static_{version}_{host}.tar.zst`,
      requests: () => [`/main/qemu-static_${VERSION}_amd64.tar.zst`],
    },
    {
      name: 'one file per target ({target})',
      url: () => `${fx.server.url}/main/per-target/qemu-{target}-static`,
      requests: () => ['/main/per-target/qemu-aarch64-static', '/main/per-target/qemu-arm-static'],
    },
    {
      name: "Debian's qemu-user-static .deb",
      url: () => `${fx.server.url}/main/qemu-user-static_{version}_amd64.deb`,
      requests: () => [`/main/qemu-user-static_${VERSION}_amd64.deb`],
    },
    {
      name: 'a local directory (qemu-url: /usr/bin), used in place',
      url: () => '/usr/bin',
      requests: () => [],
      interpreter: t => `/usr/bin/qemu-${t}-static`,
    },
    {
      name: 'a file:// URL of an archive',
      url: () => `file://${fx.archives.tarGz}`,
      requests: () => [],
    },
    {
      name: 'a file:// URL with {target}',
      url: () => `file://${fx.archives.perTargetDir}/qemu-{target}-static`,
      requests: () => [],
    },
  ]

  test.each(layouts.map(l => [l.name, l] as const))('%s', async (_name, layout) => {
    await withKernel(async () => {
      fx.server.reset()
      const cache = freshDir('toolcache')
      const r = await runAction({ platforms: 'linux/arm64,linux/arm/v7', 'qemu-version': VERSION, 'qemu-url': layout.url() }, { toolCache: cache })
      expectSuccess(r)
      expect([...fx.server.requests].sort()).toEqual(layout.requests().sort())
      for (const t of ['aarch64', 'arm']) {
        const e = expectRegistered(`qemu-${t}`, layout.interpreter?.(t) ?? `${cache}/`)
        // The right emulator for each target, intact.
        expect(sha256(e.interpreter)).toBe(sha256(`/usr/bin/qemu-${t}-static`))
      }
      expect(myEntry('qemu-riscv64')).toBeUndefined()
      expect(r.outputs.emulators.split(',').sort()).toEqual(['aarch64', 'arm'])
      expect(platformsOf(r.outputs.platforms)).toEqual([...NATIVE, ...NATIVE_LEVELS, 'linux/arm64', 'linux/arm/v7', 'linux/arm/v6'].sort())
      // A fresh tool cache: nothing came from a cache, downloaded, extracted from a local file or used in place alike (issue 25).
      expect(r.outputs['cache-hit']).toBe('false')
      await expectForeignUname('arm64')
      await expectForeignUname('armhf')
    })
  })
})

test("a local .deb, qemu-version left at its default (issue 25): the output says the package's version, cache-hit is false on an empty tool cache and true once it holds them, the folder is the emulators' version", async () => {
  await withKernel(async () => {
    const pkg = execFileSync('dpkg-deb', ['-f', fx.archives.deb, 'Version'], { encoding: 'utf8' }).trim()
    const cache = freshDir('toolcache')
    const cold = await runAction({ platforms: 'linux/arm64', 'qemu-url': fx.archives.deb }, { toolCache: cache })
    expectSuccess(cold)
    expect({ version: cold.outputs['qemu-version'], hit: cold.outputs['cache-hit'] }).toEqual({ version: pkg, hit: 'false' })
    const e = expectRegistered('qemu-aarch64', `${cache}/`)
    const qemu = /version (\d+\.\d+\.\d+)/.exec(execFileSync(e.interpreter, ['--version'], { encoding: 'utf8' }))?.[1]
    expect(path.relative(cache, e.interpreter).split(path.sep).slice(0, 2)).toEqual(['setup-qemu-binfmt', qemu])
    const warm = await runAction({ platforms: 'linux/arm64', 'qemu-url': fx.archives.deb }, { toolCache: cache })
    expectSuccess(warm)
    expect({ version: warm.outputs['qemu-version'], hit: warm.outputs['cache-hit'] }).toEqual({ version: pkg, hit: 'true' })
    await expectForeignUname('arm64')
  })
})

test('platforms: all registers exactly the emulators the archive holds', async () => {
  const three = buildArchives(path.join(fx.root, 'three'), ['aarch64', 'arm', 'riscv64'], '7.2.0-3')
  expect(fs.existsSync(three.tarGz)).toBe(true)
  await withKernel(async () => {
    const url = `${fx.server.url}/three/releases/download/deploy%2Fv{version}/qemu_v{qemu}_linux-{host}.tar.gz`
    const cache = freshDir('toolcache')
    const r = await runAction({ platforms: 'all', 'qemu-version': '7.2.0-3', 'qemu-url': url }, { toolCache: cache })
    expectSuccess(r)
    expect(r.outputs.emulators.split(',').sort()).toEqual(['aarch64', 'arm', 'riscv64'])
    for (const t of ['aarch64', 'arm', 'riscv64']) expectRegistered(`qemu-${t}`, `${cache}/`)
    expect(myEntry('qemu-mips64el')).toBeUndefined()
    expect(platformsOf(r.outputs.platforms)).toEqual([...NATIVE, ...NATIVE_LEVELS, 'linux/arm64', 'linux/arm/v7', 'linux/arm/v6', 'linux/riscv64'].sort())
    await expectForeignUname('arm64')
  })
})

test('a 500 and a truncated transfer are retried, then the emulators are used', async () => {
  // One file per target, downloaded in parallel: each retried after a few seconds.
  await withKernel(async () => {
    fx.server.reset()
    fx.server.failNext('/main/per-target/qemu-aarch64-static', 500, 1)
    fx.server.truncate('/main/per-target/qemu-arm-static', 100000, 1)
    const cache = freshDir('toolcache')
    const r = await runAction(
      { platforms: 'linux/arm64,linux/arm/v7', 'qemu-version': VERSION, 'qemu-url': `${fx.server.url}/main/per-target/qemu-{target}-static` },
      { toolCache: cache },
    )
    expectSuccess(r)
    expect(fx.server.requests.filter(p => p === '/main/per-target/qemu-aarch64-static')).toHaveLength(2)
    expect(fx.server.requests.filter(p => p === '/main/per-target/qemu-arm-static')).toHaveLength(2)
    for (const t of ['aarch64', 'arm']) {
      const e = expectRegistered(`qemu-${t}`, `${cache}/`)
      expect(sha256(e.interpreter)).toBe(sha256(`/usr/bin/qemu-${t}-static`))
    }
    expect(r.outputs['cache-hit']).toBe('false')
    await expectForeignUname('armhf')
  })
}, 180000)

test('without the Actions cache service (a local run), cache: true says so at debug level and goes on', async () => {
  await withKernel(async () => {
    fx.server.reset()
    const cache = freshDir('toolcache')
    const r = await runAction({ platforms: 'linux/arm64', 'qemu-version': VERSION, 'qemu-url': fx.tarGzUrl, cache: 'true' }, { toolCache: cache, debug: true })
    expectSuccess(r)
    expect(r.stdout).toMatch(/^::debug::The Actions cache service is not available here \(local run\?\); using the runner tool cache only$/m)
    // Saving is the post step's job (as actions/setup-node does), off the main step's clock.
    expect(r.stdout).not.toMatch(/not saving/)
    const post = await runAction({ cache: 'true' }, { phase: 'post', state: r.stateFile, toolCache: cache, debug: true })
    expect(post.code).toBe(0)
    expect(post.stdout).toMatch(/^::debug::The Actions cache service is not available here \(local run\?\); not saving$/m)
    expect(r.outputs['cache-hit']).toBe('false')
    expectRegistered('qemu-aarch64', `${cache}/`)
  })
}, 180000)

describe('redirects', () => {
  test.each([
    ['an absolute Location, as GitHub release assets answer', true],
    // Valid HTTP (RFC 9110), sent by S3/CloudFront mirrors (@actions/http-client cannot follow it, actions/http-client#62).
    ['a relative Location', false],
  ])(
    '%s is followed',
    async (_name, absolute) => {
      await withKernel(async () => {
        fx.server.reset()
        const from = `/gh/${VERSION}/${absolute ? 'abs' : 'rel'}/qemu.tar.gz`
        const to = `/main/${fx.archives.tarGzUrlPath}`
        fx.server.redirect(from, absolute ? `${fx.server.url}${to}` : to)
        const cache = freshDir('toolcache')
        const r = await runAction(
          { platforms: 'linux/arm64', 'qemu-version': VERSION, 'qemu-url': `${fx.server.url}/gh/{version}/${absolute ? 'abs' : 'rel'}/qemu.tar.gz` },
          { toolCache: cache },
        )
        expectSuccess(r)
        // The download follows either kind itself; no HEAD pre-flight.
        expect(fx.server.requests).toEqual([from, to])
        expect(fx.server.log.filter(l => l.method === 'HEAD')).toEqual([])
        expectRegistered('qemu-aarch64', `${cache}/`)
        await expectForeignUname('arm64')
      })
    },
    180000,
  )
})

test('a tool cache holding some of the emulators: only a run that needs more downloads again', async () => {
  await withKernel(async () => {
    fx.server.reset()
    const cache = freshDir('toolcache')
    const run = (platforms: string): Promise<RunActionResult> =>
      runAction({ platforms, 'qemu-version': VERSION, 'qemu-url': fx.tarGzUrl }, { toolCache: cache })
    const download = `/main/${fx.archives.tarGzUrlPath}`

    const one = await run('linux/arm64')
    expectSuccess(one)
    expect(one.outputs['cache-hit']).toBe('false')
    expect(fx.server.requests).toEqual([download])

    const two = await run('linux/arm64,linux/riscv64')
    expectSuccess(two)
    expect(two.outputs['cache-hit']).toBe('false')
    expect(fx.server.requests).toEqual([download, download])
    expect(two.stdout).toMatch(/^qemu-aarch64: already registered .* kept$/m)
    expectRegistered('qemu-riscv64', `${cache}/`)

    const three = await run('linux/riscv64,linux/arm64')
    expectSuccess(three)
    expect(three.outputs['cache-hit']).toBe('true')
    expect(fx.server.requests).toEqual([download, download])
  })
})

test('only native platforms asked for: nothing to download or register', async () => {
  await withKernel(async () => {
    fx.server.reset()
    const before = myRaw()
    // linux/386 only where this kernel runs it (no-ia32.test.ts: where it does not).
    const r = await runAction({ platforms: NATIVE.join(','), 'qemu-version': VERSION, 'qemu-url': fx.tarGzUrl }, { toolCache: freshDir('toolcache') })
    expectSuccess(r)
    expect(r.outputs.emulators).toBe('')
    expect(platformsOf(r.outputs.platforms)).toEqual([...NATIVE, ...NATIVE_LEVELS].sort())
    expect(myRaw()).toEqual(before)
    // An emulator archive is of no use here: fetching it costs time and fails offline.
    expect(fx.server.requests).toEqual([])
  })
})
