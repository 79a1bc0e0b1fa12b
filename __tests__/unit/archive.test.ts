import { execFileSync } from 'child_process'
import * as fs from 'fs'
import * as os from 'os'
import * as path from 'path'
import { ArchiveFormat, EmulatorArchive, detectFormat } from '../../src/archive'
import { checkHostExecutable } from '../../src/elf'
import { ActionError } from '../../src/errors'
import { ChildProcessRunner, ProcessRunner } from '../../src/process'
import { findTarget } from '../../src/targets'

// Real archives built from Debian's qemu-user-static (installed: /usr/bin/qemu-<T>-static)
// and the real .deb; tar, xz and zstd are the system's.

const DEB_CACHE = '/tmp/setup-qemu-binfmt-test-debs'
const runner = new ChildProcessRunner()
const usrBin = (t: string): string => `/usr/bin/qemu-${t}-static`

let work: string
const fx: Record<string, string> = {}

function sh(cmd: string, args: string[], cwd?: string): void {
  execFileSync(cmd, args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] })
}

function debianPackage(): string {
  fs.mkdirSync(DEB_CACHE, { recursive: true })
  const arch = execFileSync('dpkg', ['--print-architecture']).toString().trim()
  const find = (): string | undefined =>
    fs.readdirSync(DEB_CACHE).find(f => f.startsWith('qemu-user-static_') && f.endsWith(`_${arch}.deb`))
  if (!find()) sh('apt-get', ['download', 'qemu-user-static'], DEB_CACHE)
  return path.join(DEB_CACHE, find() as string)
}

/** Makes dir/<name> a copy of the installed emulator for `target`. */
function put(dir: string, name: string, target: string): void {
  fs.mkdirSync(path.dirname(path.join(dir, name)), { recursive: true })
  fs.copyFileSync(usrBin(target), path.join(dir, name))
}

beforeAll(() => {
  work = fs.mkdtempSync(path.join(os.tmpdir(), 'archive-test-'))
  const tree = (name: string): string => {
    const d = path.join(work, 'tree-' + name)
    fs.mkdirSync(d, { recursive: true })
    return d
  }

  // tonistiigi/binfmt layout: qemu-<T> at the root
  const flat = tree('flat')
  put(flat, 'qemu-aarch64', 'aarch64')
  put(flat, 'qemu-arm', 'arm')
  fx.tgz = path.join(work, 'binfmt.tgz.download') // the name says nothing: format comes from the bytes
  sh('tar', ['-czf', fx.tgz, '-C', flat, 'qemu-aarch64', 'qemu-arm'])

  // nested usr/bin/qemu-<T>-static, with decoys named like emulators
  const nested = tree('nested')
  put(nested, 'usr/bin/qemu-aarch64-static', 'aarch64')
  put(nested, 'usr/bin/qemu-riscv64', 'riscv64')
  fs.mkdirSync(path.join(nested, 'usr/share/binfmts'), { recursive: true })
  fs.writeFileSync(path.join(nested, 'usr/share/binfmts/qemu-aarch64'), 'package qemu-user-static\n')
  fs.writeFileSync(path.join(nested, 'usr/share/binfmts/qemu-mips'), 'package qemu-user-static\n')
  fs.writeFileSync(path.join(nested, 'usr/bin/qemu-img'), '#!/bin/sh\n')
  fx.txz = path.join(work, 'nested.tar.xz')
  sh('tar', ['-c', '-I', 'xz -0 -T2', '-f', fx.txz, '-C', nested, '.'])

  fx.tzst = path.join(work, 'nested.tar.zst')
  sh('tar', ['--zstd', '-cf', fx.tzst, '-C', nested, 'usr'])

  const plain = tree('plain')
  put(plain, 'bin/qemu-s390x-static', 's390x')
  fx.tar = path.join(work, 'plain.tar')
  sh('tar', ['-cf', fx.tar, '-C', plain, 'bin'])

  // links: qemu-riscv64-static -> qemu-riscv64 (symlink); qemu-arm-static: hard link to qemu-arm (listed
  // after it, so tar stores it as a link); qemu-armeb-static: absolute symlink to that hard link;
  // qemu-sh4-static: symlink through a symlinked directory; and links that lead nowhere or out of the archive
  const links = tree('links')
  const lbin = path.join(links, 'opt/qemu/bin')
  put(links, 'opt/qemu/bin/qemu-riscv64', 'riscv64')
  fs.symlinkSync('qemu-riscv64', path.join(lbin, 'qemu-riscv64-static'))
  put(links, 'opt/qemu/bin/qemu-arm', 'arm')
  fs.linkSync(path.join(lbin, 'qemu-arm'), path.join(lbin, 'qemu-arm-static'))
  fs.symlinkSync('/opt/qemu/bin/qemu-arm-static', path.join(lbin, 'qemu-armeb-static'))
  fs.symlinkSync('opt/qemu/bin', path.join(links, 'current'))
  fs.symlinkSync('current/qemu-riscv64', path.join(links, 'qemu-sh4-static'))
  fs.symlinkSync('../../../../etc/passwd', path.join(lbin, 'qemu-ppc64le-static'))
  fs.symlinkSync('qemu-nothere', path.join(lbin, 'qemu-s390x-static'))
  fx.links = path.join(work, 'links.tar.gz')
  const order = ['qemu-riscv64', 'qemu-riscv64-static', 'qemu-arm', 'qemu-arm-static', 'qemu-armeb-static']
  const rest = ['qemu-ppc64le-static', 'qemu-s390x-static']
  sh('tar', ['-czf', fx.links, '-C', links, ...[...order, ...rest].map(f => `opt/qemu/bin/${f}`), 'current', 'qemu-sh4-static'])
  expect(execFileSync('tar', ['-tvzf', fx.links]).toString()).toMatch(/^h.* opt\/qemu\/bin\/qemu-arm-static link to opt\/qemu\/bin\/qemu-arm$/m)

  fx.gzElf = path.join(work, 'qemu-aarch64.gz')
  fs.writeFileSync(fx.gzElf, execFileSync('gzip', ['-1', '-c', usrBin('aarch64')], { maxBuffer: 1 << 26 }))

  fx.elf = path.join(work, 'qemu-aarch64-download')
  fs.copyFileSync(usrBin('aarch64'), fx.elf)

  fx.deb = debianPackage()

  fx.html = path.join(work, 'notfound.tar.gz')
  fs.writeFileSync(fx.html, '<html><head><title>404 Not Found</title></head></html>\n')

  const whole = fs.readFileSync(fx.tgz)
  fx.truncated = path.join(work, 'truncated.tar.gz')
  fs.writeFileSync(fx.truncated, whole.subarray(0, whole.length >> 1))
})

afterAll(() => {
  if (work) fs.rmSync(work, { recursive: true, force: true })
})

async function actionError(p: Promise<unknown>): Promise<string> {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  )
  expect(e).toBeInstanceOf(ActionError)
  const message = (e as Error).message
  expect(message).not.toContain('\n')
  return message
}

/** Extracts into a fresh dir and checks each file is executable and byte-identical to usr/bin's. */
async function extractAndCompare(
  archive: EmulatorArchive,
  wanted: Record<string, string>,
): Promise<{ dest: string; result: Map<string, string> }> {
  const dest = fs.mkdtempSync(path.join(work, 'dest-'))
  const result = await archive.extract(Object.keys(wanted), path.join(dest, 'emulators'))
  expect([...result.keys()].sort()).toEqual(Object.keys(wanted).sort())
  for (const [t, source] of Object.entries(wanted)) {
    const file = result.get(t) as string
    expect(file).toBe(path.join(dest, 'emulators', `qemu-${t}`))
    expect(path.isAbsolute(file)).toBe(true)
    const st = fs.lstatSync(file)
    expect(st.isFile()).toBe(true)
    expect(st.mode & 0o777).toBe(0o755)
    expect(fs.readFileSync(file).equals(fs.readFileSync(usrBin(source)))).toBe(true)
  }
  // nothing else is left behind: no temp dir, no usr/ tree
  expect(fs.readdirSync(path.join(dest, 'emulators')).sort()).toEqual(Object.keys(wanted).map(t => `qemu-${t}`).sort())
  return { dest, result }
}

describe('detectFormat', () => {
  it.each<[string, ArchiveFormat]>([
    ['tgz', 'tar.gz'],
    ['txz', 'tar.xz'],
    ['tzst', 'tar.zst'],
    ['tar', 'tar'],
    ['links', 'tar.gz'],
    ['elf', 'elf'],
    ['deb', 'deb'],
  ])('%s is %s', async (key, format) => {
    await expect(detectFormat(fx[key])).resolves.toBe(format)
  })

  it('names the file and the accepted formats for anything else', async () => {
    const msg = await actionError(detectFormat(fx.html, 'https://example.com/qemu.tar.gz'))
    expect(msg).toMatch(/^https:\/\/example\.com\/qemu\.tar\.gz is not a supported emulator download \(starts with "<html><head>/)
    expect(msg).toContain('.tar.gz')
    expect(msg).toContain('.tar.zst')
    expect(msg).toContain('.deb')
    const empty = path.join(work, 'empty')
    fs.writeFileSync(empty, '')
    expect(await actionError(detectFormat(empty))).toMatch(/^\/.*empty is not a supported emulator download \(it is empty\)/)
  })
})

describe('EmulatorArchive', () => {
  it('reads the tonistiigi/binfmt layout (tar.gz, qemu-<T> at the root)', async () => {
    const a = await EmulatorArchive.open(fx.tgz, 'https://x/binfmt.tgz', runner)
    expect(a.format).toBe('tar.gz')
    expect(a.targets()).toEqual(['aarch64', 'arm'])
    await extractAndCompare(a, { aarch64: 'aarch64', arm: 'arm' })
  })

  it('finds nested qemu-<T>-static in tar.xz and ignores usr/share and non-targets', async () => {
    const a = await EmulatorArchive.open(fx.txz, fx.txz, runner)
    expect(a.format).toBe('tar.xz')
    expect(a.targets()).toEqual(['aarch64', 'riscv64'])
    await extractAndCompare(a, { aarch64: 'aarch64', riscv64: 'riscv64' })
  })

  it('reads tar.zst and plain tar', async () => {
    const z = await EmulatorArchive.open(fx.tzst, fx.tzst, runner)
    expect(z.format).toBe('tar.zst')
    expect(z.targets()).toEqual(['aarch64', 'riscv64'])
    await extractAndCompare(z, { riscv64: 'riscv64' })
    const t = await EmulatorArchive.open(fx.tar, fx.tar, runner)
    expect(t.format).toBe('tar')
    expect(t.targets()).toEqual(['s390x'])
    await extractAndCompare(t, { s390x: 's390x' })
  })

  it('follows symlinks and hard links inside the archive', async () => {
    const a = await EmulatorArchive.open(fx.links, 'links.tar.gz', runner)
    expect(a.targets()).toEqual(['arm', 'armeb', 'riscv64', 'sh4'])
    await extractAndCompare(a, { riscv64: 'riscv64', arm: 'arm', armeb: 'arm', sh4: 'riscv64' })
  })

  it('reports links that lead nowhere or out of the archive', async () => {
    const a = await EmulatorArchive.open(fx.links, 'links.tar.gz', runner)
    const dest = path.join(work, 'dest-badlinks')
    expect(await actionError(a.extract(['ppc64le'], dest))).toMatch(
      /^links\.tar\.gz: opt\/qemu\/bin\/qemu-ppc64le-static links to \.\.\/\.\.\/\.\.\/\.\.\/etc\/passwd, which points outside the archive; check qemu-url$/,
    )
    expect(await actionError(a.extract(['s390x'], dest))).toMatch(
      /^links\.tar\.gz: opt\/qemu\/bin\/qemu-s390x-static links to opt\/qemu\/bin\/qemu-nothere, which is not in the archive/,
    )
    expect(fs.existsSync(dest)).toBe(false)
  })

  it('reads the real Debian qemu-user-static package', async () => {
    const a = await EmulatorArchive.open(fx.deb, 'qemu-user-static.deb', runner)
    expect(a.format).toBe('deb')
    const installed = fs
      .readdirSync('/usr/bin')
      .map(f => /^qemu-(.+)-static$/.exec(f)?.[1])
      .filter((t): t is string => t !== undefined && findTarget(t) !== undefined)
      .sort()
    expect(installed.length).toBeGreaterThan(20)
    expect(a.targets()).toEqual(installed)
    expect(a.targets()).not.toContain('debootstrap')
    const { result } = await extractAndCompare(a, { aarch64: 'aarch64', arm: 'arm', riscv64: 'riscv64' })
    await checkHostExecutable(result.get('aarch64') as string, process.arch === 'arm64' ? 'arm64' : 'amd64', 'deb')
  })

  it('handles a single ELF binary', async () => {
    const a = await EmulatorArchive.open(fx.elf, 'https://x/qemu-aarch64', runner)
    expect(a.format).toBe('elf')
    expect(a.targets()).toEqual([])
    await extractAndCompare(a, { aarch64: 'aarch64' })
    expect(await actionError(a.extract(['aarch64', 'arm'], path.join(work, 'dest-elf2')))).toMatch(
      /^https:\/\/x\/qemu-aarch64 is a single emulator binary/,
    )
  })

  it('lists what is present when an emulator is missing', async () => {
    const a = await EmulatorArchive.open(fx.tgz, 'https://x/binfmt.tgz', runner)
    const dest = path.join(work, 'dest-missing')
    const msg = await actionError(a.extract(['aarch64', 'riscv64', 'ppc64le'], dest))
    expect(msg).toMatch(/^https:\/\/x\/binfmt\.tgz has no emulator for riscv64, ppc64le \(looked for qemu-riscv64\[-static\], qemu-ppc64le\[-static\]\); it holds: aarch64, arm;/)
    expect(fs.existsSync(dest)).toBe(false)
  })

  it('says a truncated download is incomplete', async () => {
    const msg = await actionError(EmulatorArchive.open(fx.truncated, 'https://x/binfmt.tgz', runner))
    expect(msg).toMatch(
      /^https:\/\/x\/binfmt\.tgz is corrupt or truncated \(.*(unexpected end of file|Unexpected EOF).*\); the download may be incomplete; re-run or check qemu-url$/,
    )
    const deb = fs.readFileSync(fx.deb)
    const half = path.join(work, 'half.deb')
    fs.writeFileSync(half, deb.subarray(0, deb.length >> 1))
    expect(await actionError(EmulatorArchive.open(half, 'half.deb', runner))).toMatch(
      /^half\.deb is a truncated \.deb .*the download may be incomplete; re-run or check qemu-url$/,
    )
  })

  it('says a compressed file that is not a tar archive is not one', async () => {
    expect(await actionError(EmulatorArchive.open(fx.gzElf, 'https://x/qemu-aarch64.gz', runner))).toMatch(
      /^https:\/\/x\/qemu-aarch64\.gz is gzip-compressed but not a tar archive; expected a static ELF binary, /,
    )
  })

  it('refuses target names that are not names', async () => {
    const a = await EmulatorArchive.open(fx.elf, 'x', runner)
    expect(await actionError(a.extract(['../../etc/x'], path.join(work, 'dest-badname')))).toMatch(/is not a QEMU target name/)
  })

  it('rejects an HTML error page', async () => {
    expect(await actionError(EmulatorArchive.open(fx.html, 'https://x/y.tar.gz', runner))).toMatch(
      /^https:\/\/x\/y\.tar\.gz is not a supported emulator download \(starts with "<html>/,
    )
  })

  it('rejects members that would land outside the destination and writes nothing', async () => {
    const src = path.join(work, 'evil-src')
    fs.mkdirSync(src)
    fs.copyFileSync(usrBin('aarch64'), path.join(src, 'qemu-aarch64'))
    const dotdot = path.join(work, 'dotdot.tar')
    sh('tar', ['-cf', dotdot, '--transform', 's,^qemu-aarch64$,../evil/qemu-aarch64,', 'qemu-aarch64'], src)
    const absolute = path.join(work, 'absolute.tar.gz')
    sh('tar', ['-czPf', absolute, path.join(src, 'qemu-aarch64')])
    for (const file of [dotdot, absolute]) {
      const root = fs.mkdtempSync(path.join(work, 'evil-dest-'))
      const dest = path.join(root, 'a', 'b')
      const msg = await actionError(
        EmulatorArchive.open(file, 'evil.tar', runner).then(a => a.extract(['aarch64'], dest)),
      )
      expect(msg).toMatch(/^evil\.tar contains the member ".*qemu-aarch64", which would be written outside the destination/)
      expect(fs.readdirSync(root)).toEqual([])
    }
    expect(fs.existsSync(path.join(work, 'evil'))).toBe(false)
  })

  it('asks for zstd when the runner cannot decompress .tar.zst', async () => {
    const bin = path.join(work, 'only-tar')
    fs.mkdirSync(bin)
    fs.symlinkSync(execFileSync('sh', ['-c', 'command -v tar']).toString().trim(), path.join(bin, 'tar'))
    const noZstd: ProcessRunner = {
      run: (cmd, args, options = {}) => runner.run(cmd, args, { ...options, env: { ...(options.env ?? process.env), PATH: bin } }),
    }
    expect(await actionError(EmulatorArchive.open(fx.tzst, 'https://x/q.tar.zst', noZstd))).toMatch(
      /^https:\/\/x\/q\.tar\.zst is zstd-compressed but this runner cannot decompress it \(.*zstd.*\); install zstd$/,
    )
    const noTar: ProcessRunner = {
      run: (cmd, args, options = {}) => runner.run(cmd, args, { ...options, env: { ...process.env, PATH: path.join(work, 'nowhere') } }),
    }
    expect(await actionError(EmulatorArchive.open(fx.tgz, 'x.tgz', noTar))).toMatch(/^cannot run tar to unpack x\.tgz .*install tar$/)
  })
})
