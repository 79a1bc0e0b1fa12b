// Facts about the machine the tests run on, learned the way a user would check
// them and independently of the action's own code: hosts of one kind differ
// (a kernel without 32-bit x86, a hypervisor that hides CPU flags), and a test
// asserts the right outcome for the host it is on.
import { spawnSync } from 'child_process'
import * as fs from 'fs'
import * as os from 'os'
import * as path from 'path'
import { listEntries, readEntry } from './binfmt'

/** glibc's dynamic loader on x86-64: `--help` lists the x86-64 levels the CPU supports (CPUID-based, glibc >= 2.33). */
export const LDSO_X86_64 = '/lib64/ld-linux-x86-64.so.2'

// A static i386 program, written byte by byte: mov $1 (exit),%eax; mov $42,%ebx; int $0x80.
const I386_EXIT_42 = ((): Buffer => {
  const code = Buffer.from('b801000000bb2a000000cd80', 'hex')
  const buf = Buffer.alloc(52 + 32 + code.length)
  buf.write('\x7fELF', 0, 'latin1')
  buf.set([1, 1, 1], 4) // ELFCLASS32, little-endian, EV_CURRENT
  buf.writeUInt16LE(2, 16) // ET_EXEC
  buf.writeUInt16LE(3, 18) // EM_386
  buf.writeUInt32LE(1, 20)
  buf.writeUInt32LE(0x400000 + 84, 24) // e_entry
  buf.writeUInt32LE(52, 28) // e_phoff
  buf.writeUInt16LE(52, 40) // e_ehsize
  buf.writeUInt16LE(32, 42) // e_phentsize
  buf.writeUInt16LE(1, 44) // e_phnum
  // PT_LOAD of the whole file, R+X, at 0x400000.
  for (const [at, v] of [
    [52, 1],
    [56, 0],
    [60, 0x400000],
    [64, 0x400000],
    [68, buf.length],
    [72, buf.length],
    [76, 5],
    [80, 0x1000],
  ])
    buf.writeUInt32LE(v, at)
  code.copy(buf, 84)
  return buf
})()

/** Whether an enabled binfmt_misc entry's magic and mask match the start of `header`. */
function entryTakes(header: Buffer): string | undefined {
  for (const name of listEntries()) {
    const e = readEntry(name)
    if (!e.enabled || e.type !== 'M') continue
    const magic = Buffer.from(e.magic, 'hex')
    const mask = e.mask ? Buffer.from(e.mask, 'hex') : Buffer.alloc(magic.length, 0xff)
    if (e.offset + magic.length > header.length) continue
    if (magic.every((b, i) => (header[e.offset + i] & mask[i]) === (b & mask[i]))) return name
  }
  return undefined
}

/**
 * Runs the tiny i386 program: its exit status, 42 wherever it runs. (Where the
 * kernel refuses it, execvp hands the file to /bin/sh, which fails otherwise.)
 */
export function runI386Program(): number | null {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'host-fact-'))
  try {
    const file = path.join(dir, 'exit42-i386')
    fs.writeFileSync(file, I386_EXIT_42, { mode: 0o755 })
    return spawnSync(file, [], { timeout: 10_000 }).status
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
}

/** The binfmt_misc entry that would take an i386 program, if any. */
export const i386Taker = (): string | undefined => entryTakes(I386_EXIT_42)

let i386: boolean | undefined
/**
 * Whether this kernel runs 32-bit x86 programs itself, as the action would find
 * it: a tiny i386 program exits 42, and no binfmt_misc entry (which the kernel
 * would try first) takes it. Some x86_64 VMs answer "Exec format error".
 */
export function runsI386Natively(): boolean {
  if (i386 !== undefined) return i386
  return (i386 = process.arch === 'x64' && !i386Taker() && runI386Program() === 42)
}

/** The Docker platforms this host runs without QEMU besides its own (linux/386 on an x86_64 kernel that runs it). */
export const nativeExtras = (): string[] => (runsI386Natively() ? ['linux/386'] : [])

/**
 * linux/amd64/v2..v4 as glibc's loader reports them supported (`--help`), run
 * through `prefix` (e.g. an emulator with -cpu); undefined where there is no
 * such loader or it is too old to report levels.
 */
export function ldsoAmd64Levels(prefix: readonly string[] = []): string[] | undefined {
  if (!fs.existsSync(LDSO_X86_64)) return undefined
  const argv = [...prefix, LDSO_X86_64, '--help']
  const r = spawnSync(argv[0], argv.slice(1), { encoding: 'utf8', timeout: 30_000 })
  const levels = [...r.stdout.matchAll(/^\s*x86-64-(v[234])( \(supported, searched\))?$/gm)]
  if (!levels.length) return undefined
  return levels
    .filter(m => m[2])
    .map(m => `linux/amd64/${m[1]}`)
    .sort()
}

/** A test this host cannot run: reported as skipped, with the reason in its name (never a vacuous pass). */
export function skippedHere(name: string, why: string): void {
  // eslint-disable-next-line jest/no-disabled-tests, jest/expect-expect
  test.skip(`${name}: skipped, ${why}`, () => undefined)
}

/**
 * Why `user` cannot give a user namespace a binfmt_misc of its own here (what
 * install-mode userns and rootless engines need: unprivileged user namespaces,
 * Linux 6.7+), tried as that user; undefined when it can.
 */
export function usernsBinfmtRefused(user: string): string | undefined {
  const script = 'mount -t proc proc /proc && mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc && test -e /proc/sys/fs/binfmt_misc/register'
  const r = spawnSync('runuser', ['-u', user, '--', 'unshare', '--user', '--map-root-user', '--mount', '--pid', '--fork', 'sh', '-c', script], {
    encoding: 'utf8',
    timeout: 30_000,
    cwd: '/',
  })
  if (r.status === 0) return undefined
  const said = (r.stderr || r.error?.message || `exit ${r.status}`).trim().split('\n')[0]
  return `user ${user} cannot mount a binfmt_misc in a user namespace of its own on kernel ${os.release()} (${said}; needs unprivileged user namespaces and Linux 6.7+)`
}

/** describe, or describe.skip plus one skipped test whose name says why, when `why` says this host cannot run the block. */
export function describeUnless(why: string | undefined): jest.Describe {
  if (!why) return describe
  skippedHere('these tests', why)
  return describe.skip
}
