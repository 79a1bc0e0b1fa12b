import { execFileSync } from 'child_process'
import * as fs from 'fs'
import * as os from 'os'
import * as path from 'path'
import { createHash } from 'crypto'
import { ArchiveFormat, Extracted, detectFormat, extractEmulators } from '../../src/fetch/archive'
import { passFile } from '../../src/fetch/emulator-file'
import { ActionError } from '../../src/errors'
import { DEFAULT_LIMITS, SizeLimits } from '../../src/fetch/limits'
import { findTarget } from '../../src/targets'

// Real archives built from Debian's qemu-user-static (installed: /usr/bin/qemu-<T>-static)
// and the real .deb; tar, xz and zstd are the system's.

const DEB_CACHE = '/tmp/setup-qemu-binfmt-test-debs'
const usrBin = (t: string): string => `/usr/bin/qemu-${t}-static`

let work: string
const fx: Record<string, string> = {}

function sh(cmd: string, args: string[], cwd?: string): void {
  execFileSync(cmd, args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] })
}

function debianPackage(): string {
  fs.mkdirSync(DEB_CACHE, { recursive: true })
  const arch = execFileSync('dpkg', ['--print-architecture']).toString().trim()
  const find = (): string | undefined => fs.readdirSync(DEB_CACHE).find(f => f.startsWith('qemu-user-static_') && f.endsWith(`_${arch}.deb`))
  if (!find()) sh('apt-get', ['download', 'qemu-user-static'], DEB_CACHE)
  return path.join(DEB_CACHE, find() as string)
}

/** Files under `dir` this process still has open (removed ones too: the link then ends in " (deleted)"). */
function heldOpen(dir: string): string[] {
  return fs
    .readdirSync('/proc/self/fd')
    .map(fd => {
      try {
        return fs.readlinkSync(`/proc/self/fd/${fd}`)
      } catch {
        return ''
      }
    })
    .filter(target => target.startsWith(dir + '/'))
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

  // GNU tar's own sparse format ('S') and pax's, each with a 10 GB member in a few KB
  const sparse = tree('sparse')
  fs.writeFileSync(path.join(sparse, 'qemu-aarch64'), '')
  fs.truncateSync(path.join(sparse, 'qemu-aarch64'), 10 * 1024 ** 3)
  fs.writeFileSync(path.join(sparse, 'filler'), '')
  fs.truncateSync(path.join(sparse, 'filler'), 10 * 1024 ** 3)
  fx.sparseGnu = path.join(work, 'sparse-gnu.tar.gz')
  sh('tar', ['--format=gnu', '-cSzf', fx.sparseGnu, '-C', sparse, 'qemu-aarch64'])
  fx.sparsePax = path.join(work, 'sparse-pax.tar')
  sh('tar', ['--format=pax', '-cSf', fx.sparsePax, '-C', sparse, 'qemu-aarch64'])
  fx.sparseOther = path.join(work, 'sparse-other.tar.gz')
  put(sparse, 'qemu-arm', 'arm')
  sh('tar', ['--format=gnu', '-cSzf', fx.sparseOther, '-C', sparse, 'qemu-arm', 'filler'])

  const whole = fs.readFileSync(fx.tgz)
  fx.truncated = path.join(work, 'truncated.tar.gz')
  fs.writeFileSync(fx.truncated, whole.subarray(0, whole.length >> 1))
  fx.garbage = path.join(work, 'garbage.tar.gz')
  fs.writeFileSync(fx.garbage, Buffer.concat([whole, Buffer.from('<html>trailing junk</html>\n'.repeat(50))]))
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

const host = process.arch === 'arm64' ? 'arm64' : 'amd64'
const sha = (f: string): string => createHash('sha256').update(fs.readFileSync(f)).digest('hex')

function extract(
  file: string,
  label: string,
  names: string[],
  required = true,
  limits: SizeLimits = DEFAULT_LIMITS,
  signal?: AbortSignal,
): { dest: string; run: Promise<Extracted> } {
  const dest = fs.mkdtempSync(path.join(work, 'dest-'))
  return { dest, run: extractEmulators(file, label, { names, required }, dest, { host, limits, signal }) }
}

/** Extracts into a fresh dir and checks each file is executable, byte-identical to usr/bin's, hashed and versioned. */
async function extractAndCompare(file: string, wanted: Record<string, string>, required = true): Promise<Extracted> {
  const { dest, run } = extract(file, file, Object.keys(wanted), required)
  const result = await run
  expect([...result.emulators.keys()].sort()).toEqual(Object.keys(wanted).sort())
  for (const [t, source] of Object.entries(wanted)) {
    const e = result.emulators.get(t)!
    expect(e.path).toBe(path.join(dest, `qemu-${t}`))
    const st = fs.lstatSync(e.path)
    expect(st.isFile()).toBe(true)
    expect(st.mode & 0o777).toBe(0o755)
    expect(fs.readFileSync(e.path).equals(fs.readFileSync(usrBin(source)))).toBe(true)
    expect(e.sha256).toBe(sha(usrBin(source)))
    expect(e.size).toBe(st.size)
    // The line --version prints, read from the binary instead of running it.
    expect(e.reportedVersion).toMatch(new RegExp(`^qemu-${source} version \\d+\\.\\d+\\.\\d+`))
  }
  // nothing else is left behind
  expect(fs.readdirSync(dest).sort()).toEqual(
    Object.keys(wanted)
      .map(t => `qemu-${t}`)
      .sort(),
  )
  return result
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

  it('names the file and the accepted formats for anything else, describing it without its contents', async () => {
    const msg = await actionError(detectFormat(fx.html, 'https://example.com/qemu.tar.gz'))
    expect(msg).toMatch(/^https:\/\/example\.com\/qemu\.tar\.gz is not a supported emulator download \(it is an HTML page\)/)
    expect(msg).toContain('.tar.gz')
    expect(msg).toContain('.tar.zst')
    expect(msg).toContain('.deb')
    const empty = path.join(work, 'empty')
    fs.writeFileSync(empty, '')
    expect(await actionError(detectFormat(empty))).toMatch(/^\/.*empty is not a supported emulator download \(it is empty\)/)
    // A file like /etc/shadow: what it is, never what it says.
    const shadow = path.join(work, 'shadow')
    fs.writeFileSync(shadow, 'root:$y$j9T$secrethash:20228:0:99999:7:::\ndaemon:*:20228:0:99999:7:::\n')
    const m = await actionError(detectFormat(shadow))
    expect(m).toMatch(/\(it is text\)/)
    expect(m).not.toMatch(/root|secret|20228|daemon/)
  })
})

describe('extractEmulators: one streaming pass', () => {
  it('reads the tonistiigi/binfmt layout (tar.gz, qemu-<T> at the root)', async () => {
    const r = await extractAndCompare(fx.tgz, { aarch64: 'aarch64', arm: 'arm' }, false)
    expect(r.offered).toEqual(['aarch64', 'arm'])
  })

  it('finds nested qemu-<T>-static in tar.xz and ignores usr/share and non-targets', async () => {
    const r = await extractAndCompare(fx.txz, { aarch64: 'aarch64', riscv64: 'riscv64' }, false)
    expect(r.offered).toEqual(['aarch64', 'riscv64'])
  })

  it('reads tar.zst and plain tar', async () => {
    await extractAndCompare(fx.tzst, { riscv64: 'riscv64' })
    await extractAndCompare(fx.tar, { s390x: 's390x' })
  })

  it('with `all`, takes only the wanted names the archive has', async () => {
    const { run } = extract(fx.txz, 'x', ['aarch64', 'arm', 'riscv64'], false)
    const r = await run
    expect([...r.emulators.keys()].sort()).toEqual(['aarch64', 'riscv64'])
  })

  it('reads the real Debian qemu-user-static package, stopping once the wanted members are seen', async () => {
    const installed = fs
      .readdirSync('/usr/bin')
      .map(f => /^qemu-(.+)-static$/.exec(f)?.[1])
      .filter((t): t is string => t !== undefined && findTarget(t) !== undefined)
      .sort()
    expect(installed.length).toBeGreaterThan(20)
    const one = await extractAndCompare(fx.deb, { aarch64: 'aarch64', arm: 'arm', riscv64: 'riscv64' })
    expect(one.offered).toBeUndefined()
    await passFile(one.emulators.get('aarch64')!.path, 'aarch64', undefined, host, 'deb', DEFAULT_LIMITS.emulator)
    const { run } = extract(fx.deb, 'deb', installed, false)
    const all = await run
    expect(all.offered).toEqual(installed)
    expect([...all.emulators.keys()].sort()).toEqual(installed)
  })

  it('refuses links named like emulators and says why when nothing else provides the target', async () => {
    const { dest, run } = extract(fx.links, 'links.tar.gz', ['riscv64'])
    // qemu-riscv64 (a regular file) provides riscv64; the symlink qemu-riscv64-static is not used.
    await run
    expect(fs.readFileSync(path.join(dest, 'qemu-riscv64')).equals(fs.readFileSync(usrBin('riscv64')))).toBe(true)
    for (const [t, kind] of [
      ['armeb', 'a symbolic link'],
      ['sh4', 'a symbolic link'],
      ['ppc64le', 'a symbolic link'],
    ]) {
      const bad = extract(fx.links, 'links.tar.gz', [t])
      expect(await actionError(bad.run)).toMatch(new RegExp(`^links\\.tar\\.gz: \\S*qemu-${t}-static is ${kind}, not the emulator itself; check qemu-url$`))
      expect(fs.readdirSync(bad.dest)).toEqual([])
    }
    // The hard link qemu-arm-static is refused; the regular qemu-arm is taken.
    const arm = extract(fx.links, 'links.tar.gz', ['arm'])
    expect((await arm.run).emulators.get('arm')!.sha256).toBe(sha(usrBin('arm')))
  })

  it('lists what is present when an emulator is missing', async () => {
    const { dest, run } = extract(fx.tgz, 'https://x/binfmt.tgz', ['aarch64', 'riscv64', 'ppc64le'])
    const msg = await actionError(run)
    expect(msg).toMatch(
      /^https:\/\/x\/binfmt\.tgz has no emulator for riscv64, ppc64le \(looked for qemu-riscv64\[-static\], qemu-ppc64le\[-static\]\); it holds: aarch64, arm;/,
    )
    expect(fs.readdirSync(dest)).toEqual([])
  })

  it('says a truncated download is incomplete, and keeps nothing', async () => {
    const { dest, run } = extract(fx.truncated, 'https://x/binfmt.tgz', ['aarch64', 'arm'])
    expect(await actionError(run)).toMatch(
      /^https:\/\/x\/binfmt\.tgz is corrupt or truncated \(.*\); the download may be incomplete; re-run or check qemu-url$/,
    )
    expect(fs.readdirSync(dest)).toEqual([])
    // The member cut short is closed, not left for the garbage collector.
    expect(heldOpen(dest)).toEqual([])
    const deb = fs.readFileSync(fx.deb)
    const half = path.join(work, 'half.deb')
    fs.writeFileSync(half, deb.subarray(0, deb.length >> 1))
    expect(await actionError(extract(half, 'half.deb', ['aarch64']).run)).toMatch(
      /^half\.deb is a truncated \.deb .*the download may be incomplete; re-run or check qemu-url$/,
    )
  })

  it('refuses garbage after the gzip stream as corrupt when it is read, keeping nothing', async () => {
    // As gzip -d and GNU tar do: the whole archive is wanted, so the junk is read and refused.
    const { dest, run } = extract(fx.garbage, 'junk.tgz', ['aarch64', 'arm'], false)
    expect(await actionError(run)).toMatch(/^junk\.tgz is corrupt or truncated \(incorrect header check\); the download may be incomplete/)
    expect(fs.readdirSync(dest)).toEqual([])
  })

  it('says a compressed file that is not a tar archive is not one', async () => {
    expect(await actionError(extract(fx.gzElf, 'https://x/qemu-aarch64.gz', ['aarch64']).run)).toMatch(
      /^https:\/\/x\/qemu-aarch64\.gz is gzip-compressed but not a tar archive \(.*\); expected a static ELF binary, /,
    )
  })

  it('refuses a single ELF binary as a bundle', async () => {
    expect(await actionError(extract(fx.elf, 'https://x/qemu-aarch64', ['aarch64']).run)).toMatch(
      /^qemu-url: https:\/\/x\/qemu-aarch64 is a single emulator binary; put \{target\} in qemu-url/,
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
      const { dest, run } = extract(file, 'evil.tar', ['aarch64'])
      expect(await actionError(run)).toMatch(/^evil\.tar contains the member ".*qemu-aarch64", which would be written outside the destination/)
      expect(fs.readdirSync(dest)).toEqual([])
    }
    expect(fs.existsSync(path.join(work, 'evil'))).toBe(false)
  })

  it('refuses an emulator over the size limit before writing it', async () => {
    const limits = { ...DEFAULT_LIMITS, emulator: 1024 * 1024 }
    const { dest, run } = extract(fx.tgz, 'big.tgz', ['aarch64'], true, limits)
    expect(await actionError(run)).toMatch(/^big\.tgz: qemu-aarch64 is \d+ bytes, more than any emulator \(limit 1048576\); refusing the archive/)
    expect(fs.readdirSync(dest)).toEqual([])
  })

  it('refuses sparse members, counting them at their full size', async () => {
    for (const file of [fx.sparseGnu, fx.sparsePax]) {
      const { dest, run } = extract(file, 'sparse.tar', ['aarch64'])
      const msg = await actionError(run)
      expect(msg).toMatch(/sparse\.tar: qemu-aarch64 is a sparse file, not the emulator itself|declares more than \d+ bytes/)
      expect(fs.readdirSync(dest)).toEqual([])
    }
    // An unwanted 10 GB sparse member counts against the archive's total: a bomb is refused as one.
    const { dest, run } = extract(fx.sparseOther, 'sparse.tgz', ['arm'], false)
    expect(await actionError(run)).toMatch(/^sparse\.tgz declares more than \d+ bytes of content \(a decompression bomb\?\); refusing it/)
    expect(fs.readdirSync(dest)).toEqual([])
  })

  it('asks for xz-utils when the runner has no xz', async () => {
    const saved = process.env.PATH
    process.env.PATH = path.join(work, 'nowhere')
    try {
      const { dest, run } = extract(fx.txz, 'https://x/q.tar.xz', ['aarch64'])
      expect(await actionError(run)).toMatch(/^https:\/\/x\/q\.tar\.xz is xz-compressed but this runner has no xz; install xz-utils$/)
      expect(fs.readdirSync(dest)).toEqual([])
    } finally {
      process.env.PATH = saved
    }
  })

  it('stops promptly when the signal fires, removing what it wrote', async () => {
    const ctl = new AbortController()
    const { dest, run } = extract(fx.deb, 'deb', ['aarch64', 'arm', 'riscv64', 'sparc64', 'm68k'], true, DEFAULT_LIMITS, ctl.signal)
    setTimeout(() => ctl.abort(new Error('cancelled')), 20)
    await expect(run).rejects.toThrow('cancelled')
    expect(fs.readdirSync(dest)).toEqual([])
    expect(heldOpen(dest)).toEqual([])
  })
})
