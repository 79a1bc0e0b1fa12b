// Test fixtures built from what .ci/prepare.sh leaves on disk: emulator archives
// in every layout the action accepts, and tiny foreign-architecture root
// filesystems (busybox only, no QEMU inside) to prove the F flag works in a chroot.
import { execFileSync, spawnSync } from 'child_process'
import { createHash } from 'crypto'
import * as fs from 'fs'
import * as path from 'path'

const CACHE = '/var/cache/setup-qemu-binfmt-test'

/** Where prepare.sh puts the downloaded (not installed) .debs. */
export function debDir(): string {
  return path.join(CACHE, 'debs')
}

function findDeb(pattern: RegExp, what: string): string[] {
  let names: string[] = []
  try {
    names = fs.readdirSync(debDir())
  } catch {
    // handled below
  }
  const hits = names.filter(n => pattern.test(n)).sort()
  if (!hits.length) throw new Error(`no ${what} .deb in ${debDir()}; run .ci/prepare.sh as root`)
  return hits.map(n => path.join(debDir(), n))
}

/** The qemu-user-static amd64 .deb (the one matching the installed version when there are several). */
export function qemuDeb(): string {
  const debs = findDeb(/^qemu-user-static_.*_amd64\.deb$/, 'qemu-user-static')
  try {
    const installed = execFileSync('dpkg-query', ['-W', '-f=${Version}', 'qemu-user-static']).toString()
    const exact = debs.find(d => path.basename(d) === `qemu-user-static_${installed.replace(':', '%3a')}_amd64.deb`)
    if (exact) return exact
  } catch {
    // not installed: any will do
  }
  return debs[debs.length - 1]
}

export function sha256(file: string): string {
  return createHash('sha256').update(fs.readFileSync(file)).digest('hex')
}

/** Paths of the archives buildArchives made; `*UrlPath` are relative to the directory, URL-encoded, for startServer(dir). */
export interface Archives {
  /** e.g. '7.2.0-1' (the tonistiigi tag is deploy/v<version>) */
  version: string
  /** version without its build suffix, e.g. '7.2.0' (as in the tonistiigi asset name) */
  qemu: string
  /** (a) tonistiigi/binfmt layout: qemu-<T> at the archive root, at <dir>/releases/download/deploy/v<version>/qemu_v<qemu>_linux-amd64.tar.gz */
  tarGz: string
  /** 'releases/download/deploy%2Fv<version>/qemu_v<qemu>_linux-amd64.tar.gz' */
  tarGzUrlPath: string
  /** (b) usr/bin/qemu-<T>-static nested, xz */
  tarXz: string
  /** (c) same layout as (b), zstd */
  tarZst: string
  /** (d) directory holding qemu-<T>-static, one per target */
  perTargetDir: string
  /** target -> <perTargetDir>/qemu-<T>-static */
  perTarget: Record<string, string>
  /** 'per-target/qemu-{target}-static': append to a server URL for a {target} template */
  perTargetUrlPath: string
  /** (e) the real Debian .deb, copied */
  deb: string
  /** sha256sum-format lines for every file above (by base name), for the qemu-sha256 input */
  sha256sums: string
}

function tar(args: string[], cwd: string): void {
  execFileSync('tar', ['--owner=0', '--group=0', '--numeric-owner', ...args], { cwd, stdio: ['ignore', 'ignore', 'pipe'] })
}

/** Where a tonistiigi/binfmt release keeps its amd64 archive, under a server's directory (the tag is deploy/v<version>). */
export function tonistiigiPath(version: string): string {
  return path.join('releases', 'download', `deploy/v${version}`, `qemu_v${version.replace(/-[^-]*$/, '')}_linux-amd64.tar.gz`)
}

/** The same, as the URL path startServer serves it ('/' in the tag as %2F). */
export function tonistiigiUrlPath(version: string): string {
  return tonistiigiPath(version).replace(`deploy/v${version}`, encodeURIComponent(`deploy/v${version}`))
}

/**
 * The tonistiigi/binfmt layout: bare qemu-<T> (from `from`) at the root of a .tar.gz at
 * <dir>/tonistiigiPath(version). `gzip` is the compressor command (level included).
 */
export function tonistiigiArchive(dir: string, from: string, targets: readonly string[], version: string, gzip = 'gzip -1'): string {
  const file = path.join(dir, tonistiigiPath(version))
  fs.mkdirSync(path.dirname(file), { recursive: true })
  tar(['-I', gzip, '-cf', file, ...targets.map(t => `qemu-${t}`)], from)
  return file
}

/**
 * Builds archives of Debian's /usr/bin/qemu-<T>-static for `targets` (QEMU
 * target names: aarch64, arm, ppc64le, ...) in `dir`. Fast compression levels:
 * the content is what matters, not the ratio.
 */
export function buildArchives(dir: string, targets: string[], version = '7.2.0-1'): Archives {
  const qemu = version.replace(/-[^-]*$/, '') // same rule as the action's {qemu}
  const sources = targets.map(t => {
    const src = `/usr/bin/qemu-${t}-static`
    if (!fs.existsSync(src)) throw new Error(`${src} missing; is qemu-user-static installed (.ci/prepare.sh)?`)
    return { t, src }
  })
  fs.mkdirSync(dir, { recursive: true })
  // World-readable, so an action run as an unprivileged user can use the files as a local source.
  fs.chmodSync(dir, 0o755)
  const stage = fs.mkdtempSync(path.join(dir, '.stage-'))
  try {
    // (a) tonistiigi: bare qemu-<T> names at the root.
    const flat = path.join(stage, 'flat')
    fs.mkdirSync(flat)
    for (const { t, src } of sources) fs.copyFileSync(src, path.join(flat, `qemu-${t}`))
    const tarGz = tonistiigiArchive(
      dir,
      flat,
      sources.map(s => s.t),
      version,
    )

    // (b), (c): nested usr/bin/qemu-<T>-static.
    const nested = path.join(stage, 'nested')
    fs.mkdirSync(path.join(nested, 'usr', 'bin'), { recursive: true })
    for (const { t, src } of sources) fs.copyFileSync(src, path.join(nested, 'usr', 'bin', `qemu-${t}-static`))
    const tarXz = path.join(dir, `qemu-static_${version}_amd64.tar.xz`)
    const tarZst = path.join(dir, `qemu-static_${version}_amd64.tar.zst`)
    tar(['-I', 'xz -0 -T0', '-cf', tarXz, 'usr'], nested)
    tar(['-I', 'zstd -1 -q -T0', '-cf', tarZst, 'usr'], nested)

    // (d) one file per target.
    const perTargetDir = path.join(dir, 'per-target')
    fs.mkdirSync(perTargetDir, { recursive: true })
    const perTarget: Record<string, string> = {}
    for (const { t, src } of sources) {
      perTarget[t] = path.join(perTargetDir, `qemu-${t}-static`)
      fs.copyFileSync(src, perTarget[t])
      fs.chmodSync(perTarget[t], 0o755)
    }

    // (e) the .deb itself, with a URL-safe name.
    const deb = path.join(dir, `qemu-user-static_${version}_amd64.deb`)
    fs.copyFileSync(qemuDeb(), deb)

    const files = [tarGz, tarXz, tarZst, ...Object.values(perTarget), deb]
    return {
      version,
      qemu,
      tarGz,
      tarGzUrlPath: tonistiigiUrlPath(version),
      tarXz,
      tarZst,
      perTargetDir,
      perTarget,
      perTargetUrlPath: 'per-target/qemu-{target}-static',
      deb,
      sha256sums: files.map(f => `${sha256(f)}  ${path.basename(f)}\n`).join(''),
    }
  } finally {
    fs.rmSync(stage, { recursive: true, force: true })
  }
}

/** Debian architectures with a busybox-static .deb from .ci/prepare.sh (amd64 and i386 for the arm64 kernel's tests). */
export type RootfsArch = 'arm64' | 'armhf' | 'ppc64el' | 's390x' | 'mips64el' | 'amd64' | 'i386'

/** What `uname -m` prints under emulation for each Debian architecture. */
export const UNAME_M: Readonly<Record<RootfsArch, string>> = {
  arm64: 'aarch64',
  armhf: 'armv7l',
  ppc64el: 'ppc64le',
  s390x: 's390x',
  mips64el: 'mips64',
  amd64: 'x86_64',
  i386: 'i686',
}

/** The QEMU target that runs each Debian architecture's binaries. */
export const QEMU_TARGET: Readonly<Record<RootfsArch, string>> = {
  arm64: 'aarch64',
  armhf: 'arm',
  ppc64el: 'ppc64le',
  s390x: 's390x',
  mips64el: 'mips64el',
  amd64: 'x86_64',
  i386: 'i386',
}

// Applets linked next to busybox; running `busybox --list` would need emulation already.
const APPLETS = ['sh', 'uname', 'echo', 'true', 'false', 'cat', 'ls', 'env', 'id', 'sleep', 'test', 'printf', 'pwd']

function findQemuFiles(root: string): string[] {
  const hits: string[] = []
  for (const e of fs.readdirSync(root, { withFileTypes: true })) {
    const p = path.join(root, e.name)
    if (e.name.startsWith('qemu-')) hits.push(p)
    if (e.isDirectory()) hits.push(...findQemuFiles(p))
  }
  return hits
}

/**
 * A root filesystem with only `arch`'s static busybox and applet links, cached in
 * /var/cache/setup-qemu-binfmt-test/rootfs/<arch>. Without QEMU inside, anything
 * run in it by chroot works only through an interpreter the kernel holds open (F flag).
 */
export async function rootfs(arch: RootfsArch): Promise<string> {
  const base = path.join(CACHE, 'rootfs')
  const root = path.join(base, arch)
  if (!fs.existsSync(path.join(root, 'bin', 'busybox'))) {
    const [deb] = findDeb(new RegExp(`^busybox-static_.*_${arch}\\.deb$`), `busybox-static ${arch}`)
    fs.mkdirSync(base, { recursive: true })
    // Built aside and renamed into place, so a parallel run never sees half a tree.
    const tmp = fs.mkdtempSync(path.join(base, `.${arch}-`))
    execFileSync('dpkg-deb', ['-x', deb, tmp])
    for (const a of APPLETS) fs.symlinkSync('busybox', path.join(tmp, 'bin', a))
    for (const d of ['tmp', 'proc', 'dev']) fs.mkdirSync(path.join(tmp, d), { recursive: true })
    fs.chmodSync(path.join(tmp, 'tmp'), 0o1777)
    fs.chmodSync(tmp, 0o755)
    try {
      fs.renameSync(tmp, root)
    } catch (e) {
      fs.rmSync(tmp, { recursive: true, force: true })
      const code = (e as NodeJS.ErrnoException).code
      if (code !== 'ENOTEMPTY' && code !== 'EEXIST') throw e
    }
  }
  const qemu = findQemuFiles(root)
  if (qemu.length) throw new Error(`rootfs ${root} must not contain QEMU, found: ${qemu.join(', ')}`)
  return root
}

export interface RunResult {
  /** exit status; -1 when killed (timeout or signal) or when chroot could not start */
  code: number
  stdout: string
  stderr: string
}

/** Runs `args` inside `root` with chroot (needs root). No /proc is mounted: keep commands simple. */
export function runInChroot(root: string, args: string[], timeoutMs = 60000): RunResult {
  // Absolute path: the child's PATH below is the one for inside the chroot.
  const r = spawnSync('/usr/sbin/chroot', [root, ...args], {
    encoding: 'utf8',
    timeout: timeoutMs,
    env: { PATH: '/bin:/usr/bin', HOME: '/' },
  })
  return {
    code: r.status ?? -1,
    stdout: r.stdout ?? '',
    stderr: (r.stderr ?? '') + (r.error ? `\n${r.error.message}` : '') + (r.signal ? `\nkilled by ${r.signal}` : ''),
  }
}
