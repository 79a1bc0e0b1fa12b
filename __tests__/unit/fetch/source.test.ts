import * as fs from 'fs'
import * as os from 'os'
import * as path from 'path'
import { resolveSource, scanDirectory } from '../../../src/fetch/source'
import { DEFAULT_QEMU_URL } from '../../../src/inputs'
import { amd64Levels, detectHost, nativePlatforms } from '../../../src/host'
import { getTarget } from '../../../src/targets'

describe('qemu-url templates', () => {
  test('the default is the tonistiigi/binfmt release asset for the version and host', () => {
    const s = resolveSource(DEFAULT_QEMU_URL, '10.2.3-68', 'arm64')
    expect(s.perTarget).toBe(false)
    expect(s.local).toBe(false)
    expect(s.locate()).toBe('https://github.com/tonistiigi/binfmt/releases/download/deploy%2Fv10.2.3-68/qemu_v10.2.3_linux-arm64.tar.gz')
  })

  test('{target} makes one download per emulator', () => {
    const s = resolveSource('http://127.0.0.1:8080/{version}/qemu-{target}-static', '7.2.0-1', 'amd64')
    expect(s.perTarget).toBe(true)
    expect(s.locate('aarch64')).toBe('http://127.0.0.1:8080/7.2.0-1/qemu-aarch64-static')
    expect(s.id).toBe('http://127.0.0.1:8080/7.2.0-1/qemu-{target}-static')
  })

  test('file:// URLs and plain paths are local', () => {
    expect(resolveSource('file:///usr/bin', 'x', 'amd64')).toMatchObject({ local: true, perTarget: false })
    expect(resolveSource('file:///usr/bin', 'x', 'amd64').locate()).toBe('/usr/bin')
    expect(resolveSource('/srv/qemu/qemu-{target}-static', 'x', 'amd64').locate('arm')).toBe('/srv/qemu/qemu-arm-static')
    expect(resolveSource('relative/dir', 'x', 'amd64').locate()).toBe(path.resolve('relative/dir'))
  })

  test.each([
    ['https://x/{arch}.tar.gz', /^qemu-url: unknown placeholder \{arch\}; use \{version\}, \{qemu\}, \{host\}, \{target\}$/],
    ['ftp://x/q.tar.gz', /^qemu-url: unsupported scheme 'ftp:'/],
    ['https://exa mple.com:99999/q', /^qemu-url: 'https:\/\/exa mple.com:99999\/q' is not a valid URL/],
  ])('%j fails clearly', (template, message) => {
    expect(() => resolveSource(template, '1.0.0', 'amd64')).toThrow(message)
  })

  test.each([['htps://user:TOKEN@example.com/q.tar.gz'], ['https://user:TOKEN@exa mple.com/q'], ['ftps://user:TOKEN@example.com/q']])(
    'a bad qemu-url with a credential (%j) fails without showing it',
    template => {
      expect(() => resolveSource(template, '1.0.0', 'amd64')).toThrow(/^qemu-url: .*\*\*\*@/)
      expect(() => resolveSource(template, '1.0.0', 'amd64')).not.toThrow(/TOKEN/)
    },
  )
})

describe('local directory of emulators', () => {
  test('qemu-T-static is preferred over qemu-T; other files ignored', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'scan-'))
    for (const f of ['qemu-aarch64', 'qemu-aarch64-static', 'qemu-arm', 'qemu-img', 'ls']) fs.writeFileSync(path.join(dir, f), '')
    const found = scanDirectory(dir)
    expect(found.get('aarch64')).toBe(path.join(dir, 'qemu-aarch64-static'))
    expect(found.get('arm')).toBe(path.join(dir, 'qemu-arm'))
    fs.rmSync(dir, { recursive: true })
  })
})

describe('host', () => {
  test('x64 and arm64 runners; anything else fails clearly', () => {
    expect(detectHost('x64')).toMatchObject({ arch: 'amd64', target: getTarget('x86_64') })
    expect(detectHost('arm64').nativeCandidates.map(t => t.name)).toEqual(['arm'])
    expect(() => detectHost('riscv64')).toThrow(/runner's architecture \(riscv64\) is not supported; use an x86_64 \(amd64\) or arm64 runner/)
  })

  test('amd64 levels: v2 up to the level the CPU reported; none when it is unknown', () => {
    expect(amd64Levels(undefined)).toEqual([])
    expect(amd64Levels(1)).toEqual([])
    expect(amd64Levels(2)).toEqual(['linux/amd64/v2'])
    expect(amd64Levels(4)).toEqual(['linux/amd64/v2', 'linux/amd64/v3', 'linux/amd64/v4'])
  })

  test('native platforms: the host, its levels, and what ran natively', () => {
    expect(nativePlatforms(detectHost('x64'), [getTarget('i386')], 2)).toEqual(['linux/amd64', 'linux/amd64/v2', 'linux/386'])
    // A kernel without 32-bit x86 (i386 did not run natively), a CPU of level 3.
    expect(nativePlatforms(detectHost('x64'), [], 3)).toEqual(['linux/amd64', 'linux/amd64/v2', 'linux/amd64/v3'])
    // Levels belong to amd64 hosts only.
    expect(nativePlatforms(detectHost('arm64'), [], 4)).toEqual(['linux/arm64'])
    expect(nativePlatforms(detectHost('arm64'), [])).toEqual(['linux/arm64'])
    expect(nativePlatforms(detectHost('arm64'), [getTarget('arm')])).toEqual(['linux/arm64', 'linux/arm/v7', 'linux/arm/v6'])
  })
})
