// Bad input and broken downloads: exit status 1, one ::error:: line that names
// the input at fault, and no kernel entry left behind.
import * as fs from 'fs'
import * as path from 'path'
import { runAction } from '../support/action'
import { removeEntry } from '../support/binfmt'
import { buildArchives, sha256 } from '../support/fixtures'
import {
  CoreFixtures,
  VERSION,
  closeFixtures,
  expectCleanFailure,
  expectForeignUname,
  expectRegistered,
  expectSuccess,
  freshDir,
  myRaw,
  startFixtures,
  withKernel,
} from './core-helpers'

let fx: CoreFixtures
beforeAll(async () => {
  fx = await startFixtures()
}, 120000)
afterAll(() => closeFixtures(fx))

const TAR_GZ = `qemu_v7.2.0_linux-amd64.tar.gz`

/** Runs the action on a clean kernel (my entries) and checks the clean failure; returns the error line. */
async function failing(inputs: Record<string, string>, ...patterns: RegExp[]): Promise<string> {
  return withKernel(async () => {
    const before = myRaw()
    const r = await runAction({ 'qemu-version': VERSION, 'qemu-url': fx.tarGzUrl, ...inputs }, { toolCache: freshDir('toolcache') })
    return expectCleanFailure(r, before, ...patterns)
  })
}

describe('bad input fails before anything is downloaded', () => {
  test.each([
    ['unknown platform', { platforms: 'linux/arm64,linux/sparc128' }, [/^platforms: /, /'linux\/sparc128'/]],
    ['unknown placeholder in qemu-url', { platforms: 'linux/arm64', 'qemu-url': 'http://127.0.0.1:9/{arch}/qemu.tar.gz' }, [/^qemu-url: /, /\{arch\}/]],
    ['qemu-url that is not a URL', { platforms: 'linux/arm64', 'qemu-url': 'http://127.0.0.1:99999/{version}.tar.gz' }, [/^qemu-url: /, /not a valid URL/]],
    ['unsupported scheme', { platforms: 'linux/arm64', 'qemu-url': 'ftp://127.0.0.1/qemu.tar.gz' }, [/^qemu-url: /, /ftp/]],
    ['qemu-sha256 line that is not a checksum', { platforms: 'linux/arm64', 'qemu-sha256': `deadbeef  ${TAR_GZ}` }, [/^qemu-sha256: /]],
  ])('%s', async (_name, inputs, patterns) => {
    fx.server.reset()
    await failing(inputs, ...patterns)
    expect(fx.server.requests).toEqual([])
  })
})

test('HTTP 404: the error names qemu-url and the URL asked for', async () => {
  fx.server.reset()
  const url = `${fx.server.url}/main/releases/download/deploy%2Fv9.9.9-1/qemu_v9.9.9_linux-amd64.tar.gz`
  const error = await failing({ platforms: 'linux/arm64', 'qemu-version': '9.9.9-1' }, /^qemu-url: /, /404/)
  expect(error).toContain(url)
  // A 404 is final: no retry.
  expect(fx.server.requests).toEqual(['/main/releases/download/deploy%2Fv9.9.9-1/qemu_v9.9.9_linux-amd64.tar.gz'])
})

describe('broken archives', () => {
  let url: (name: string) => string
  beforeAll(() => {
    const dir = path.join(fx.root, 'broken')
    fs.mkdirSync(dir, { recursive: true })
    const whole = fs.readFileSync(fx.archives.tarGz)
    // Served complete (200, full Content-Length), but the file itself is cut short.
    fs.writeFileSync(path.join(dir, 'truncated.tar.gz'), whole.subarray(0, Math.floor(whole.length / 2)))
    fs.writeFileSync(path.join(dir, 'page.tar.gz'), '<!DOCTYPE html><html><body>Not the archive</body></html>\n')
    url = name => `${fx.server.url}/broken/${name}`
  })

  test('a truncated archive', async () => {
    // mips64el is the last member, in the half that is missing (aarch64, first, would be read intact and used).
    await failing(
      { platforms: 'linux/arm64,linux/mips64le', 'qemu-url': url('truncated.tar.gz') },
      /qemu-url/,
      /truncated\.tar\.gz/,
      /corrupt|truncated|incomplete/,
    )
  })

  test('a file that is not an archive', async () => {
    await failing({ platforms: 'linux/arm64', 'qemu-url': url('page.tar.gz') }, /qemu-url/, /page\.tar\.gz/)
  })
})

test('an archive without a requested emulator: the error names the target and qemu-url', async () => {
  buildArchives(path.join(fx.root, 'small'), ['aarch64'], '7.2.0-2')
  const url = `${fx.server.url}/small/releases/download/deploy%2Fv{version}/qemu_v{qemu}_linux-{host}.tar.gz`
  const error = await failing({ platforms: 'linux/arm64,linux/riscv64', 'qemu-version': '7.2.0-2', 'qemu-url': url }, /riscv64/, /qemu-url/)
  // It says what the archive does hold.
  expect(error).toMatch(/aarch64/)
})

describe('qemu-sha256', () => {
  const wrong = '0'.repeat(64)

  test('a wrong digest for the archive: exit 1, nothing registered', async () => {
    await failing({ platforms: 'linux/arm64,linux/arm/v7', 'qemu-sha256': `${wrong}  ${TAR_GZ}` }, /^qemu-sha256: /, /mismatch/, new RegExp(wrong))
  })

  test('a wrong digest with the archive already in the tool cache: still exit 1, nothing registered', async () => {
    await withKernel(async () => {
      const cache = freshDir('toolcache')
      // Fill the tool cache (and leave nothing registered).
      expectSuccess(await runAction({ platforms: 'linux/arm64', 'qemu-version': VERSION, 'qemu-url': fx.tarGzUrl }, { toolCache: cache }))
      // The first run registered qemu-aarch64: remove it, so that the failing run starts from nothing.
      removeEntry('qemu-aarch64')
      const before = myRaw()
      const r = await runAction(
        { platforms: 'linux/arm64', 'qemu-version': VERSION, 'qemu-url': fx.tarGzUrl, 'qemu-sha256': `${wrong}  ${TAR_GZ}` },
        { toolCache: cache },
      )
      expectCleanFailure(r, before, /^qemu-sha256: /, /mismatch/)
    })
  })

  test('a wrong digest for an emulator of a local directory', async () => {
    await failing({ platforms: 'linux/arm64', 'qemu-url': '/usr/bin', 'qemu-sha256': `${wrong}  qemu-aarch64-static` }, /^qemu-sha256: /, /mismatch/)
  })

  test('the right digests pass', async () => {
    await withKernel(async () => {
      const cache = freshDir('toolcache')
      const r = await runAction(
        { platforms: 'linux/arm64,linux/arm/v7', 'qemu-version': VERSION, 'qemu-url': fx.tarGzUrl, 'qemu-sha256': fx.archives.sha256sums },
        { toolCache: cache },
      )
      expectSuccess(r)
      for (const t of ['aarch64', 'arm']) {
        const e = expectRegistered(`qemu-${t}`, `${cache}/`)
        expect(sha256(e.interpreter)).toBe(sha256(`/usr/bin/qemu-${t}-static`))
      }
      await expectForeignUname('armhf')
    })
  })
})
