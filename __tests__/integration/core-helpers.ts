// Shared pieces of the core integration tests (core*.test.ts): the kernel
// entries these tests own, per-test directories, and the checks every test makes.
//
// The binfmt_misc table is shared with other engineers' tests running at the
// same time on this kernel: they own qemu-ppc64le and qemu-s390x. These tests
// only ever create, change or remove the entries named in MINE, and restore
// only those.
import { execFileSync } from 'child_process'
import * as fs from 'fs'
import * as os from 'os'
import * as path from 'path'
import { RunActionResult } from '../support/action'
import { BinfmtEntry, Snapshot, binfmtMounted, entryExists, readEntry, registerRaw, removeEntry, restore, snapshot } from '../support/binfmt'
import { Archives, RootfsArch, UNAME_M, buildArchives, rootfs, runInChroot } from '../support/fixtures'
import { TestServer, startServer } from '../support/server'

/** QEMU targets these tests register (never ppc64le, s390x, x86_64 or i386). */
export const MY_TARGETS = ['aarch64', 'arm', 'riscv64', 'mips64el'] as const
/** A non-QEMU entry with a magic no real file starts with. */
export const NON_QEMU = 'testnonqemu'
export const NON_QEMU_LINE = `:${NON_QEMU}:M::QEMUTESTNONQEMU::/bin/false:`
export const MINE: readonly string[] = [...MY_TARGETS.map(t => `qemu-${t}`), NON_QEMU]
const STAGING = /\.staged-\d+$/
/**
 * Staging entries already registered when the test began: another run's (a live one, or one a killed run
 * left behind, which any run of the action removes). Not the test's: never compared, removed or put back.
 */
let othersStaged: ReadonlySet<string> = new Set()
/** My names, and the staging names a run of the action gives them before they are verified (during the test). */
export const mine = (name: string): boolean =>
  MINE.includes(name) || (MINE.some(m => name.startsWith(`${m}.staged-`)) && STAGING.test(name) && !othersStaged.has(name))

/** QEMU's magic/mask for the targets above (scripts/qemu-binfmt-conf.sh), as register-line escapes. */
const MAGIC: Record<string, { magic: string; mask: string }> = {
  aarch64: { magic: '7f454c460201010000000000000000000200b700', mask: 'ffffffffffffff00fffffffffffffffffeffffff' },
  arm: { magic: '7f454c4601010100000000000000000002002800', mask: 'ffffffffffffff00fffffffffffffffffeffffff' },
  riscv64: { magic: '7f454c460201010000000000000000000200f300', mask: 'ffffffffffffff00fffffffffffffffffeffffff' },
  mips64el: { magic: '7f454c4602010100000000000000000002000800', mask: 'ffffffffffffff00fefffffffffffffffeffffff' },
}
/** Hex as register-line escapes (`\\xNN` each byte). */
export const esc = (hex: string): string => hex.replace(/(..)/g, '\\x$1')

/** The register line for qemu-<target> with Debian's interpreter, as a distro package would have it. */
export function debianLine(target: string, flags: string, interpreter = `/usr/bin/qemu-${target}-static`): string {
  const m = MAGIC[target]
  return `:qemu-${target}:M::${esc(m.magic)}:${esc(m.mask)}:${interpreter}:${flags}`
}

/** My entries as the kernel shows them right now (raw text by name; absent ones missing). */
export function myRaw(): Map<string, string> {
  const snap = snapshot()
  return new Map([...snap].filter(([n]) => mine(n)))
}

export function myEntry(name: string): BinfmtEntry | undefined {
  return entryExists(name) ? readEntry(name) : undefined
}

/**
 * Other test files register some of these names too (buildx and docker tests
 * use qemu-aarch64); when they run at the same time, an entry of theirs must
 * be neither removed nor brought back after they cleaned it up. So a test waits
 * until none of my names is registered, and fails clearly if one stays.
 */
async function waitUntilFree(timeoutMs = 60000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const taken = MINE.filter(n => entryExists(n))
    if (!taken.length) return
    if (Date.now() > deadline) {
      throw new Error(
        `${taken.join(', ')} registered by someone else for ${timeoutMs / 1000} s; these tests need them free (not removed: they are not this test's)`,
      )
    }
    await new Promise(r => setTimeout(r, 500))
  }
}

/** Waits until my names are free, then snapshots the table; pair with endKernel. */
export async function beginKernel(): Promise<Snapshot> {
  await waitUntilFree()
  const snap = snapshot()
  othersStaged = new Set([...snap.keys()].filter(n => STAGING.test(n)))
  return snap
}

/** Removes whatever of mine was added since `snap` and puts back what of mine changed. */
export function endKernel(snap: Snapshot): void {
  restore(snap, mine)
}

/** Runs `fn` once none of my entries is registered, then undoes what it did to them. */
export async function withKernel<T>(fn: () => Promise<T>): Promise<T> {
  const snap = await beginKernel()
  try {
    return await fn()
  } finally {
    endKernel(snap)
  }
}

export function registerMine(line: string): void {
  const name = line.split(':')[1]
  if (!mine(name)) throw new Error(`${name} is not an entry these tests own`)
  registerRaw(line)
}

/**
 * The host a run killed with SIGKILL mid-verification leaves: `qemu-<target>.staged-<pid>` entries with F,
 * of a process that is gone, whose interpreter files are gone too (F keeps them working). Made before
 * withKernel, as the host state a test starts from; `cleanUp` removes whichever of them is still there.
 */
export function leaveAbandoned(targets: readonly (typeof MY_TARGETS)[number][]): { pid: number; names: string[]; cleanUp: () => void } {
  const pid = Number(execFileSync('sh', ['-c', 'echo $$'], { encoding: 'utf8' }).trim())
  const dir = freshDir('killed-run')
  const names: string[] = []
  try {
    for (const t of targets) {
      const name = `qemu-${t}.staged-${pid}`
      const interpreter = path.join(dir, `qemu-${t}`)
      fs.copyFileSync(`/usr/bin/qemu-${t}-static`, interpreter)
      registerRaw(debianLine(t, 'F', interpreter).replace(`:qemu-${t}:`, `:${name}:`))
      names.push(name)
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
  return { pid, names, cleanUp: () => names.forEach(n => removeEntry(n)) }
}

/** A world-traversable directory (the action may run as another user), removed in cleanupDirs(). */
const made: string[] = []
export function freshDir(label: string): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), `core-${label}-`))
  fs.chmodSync(d, 0o755)
  made.push(d)
  return d
}
export function cleanupDirs(): void {
  for (const d of made.splice(0)) fs.rmSync(d, { recursive: true, force: true })
}

/**
 * An attacker's qemu-aarch64: a static program that leaves `witness` (proof it ran, as root) and then
 * execs Debian's emulator with the arguments it got, so that it looks like an emulator to the run.
 */
export function witnessEmulator(witness: string): string {
  const dir = freshDir('forged')
  const src = path.join(dir, 'forged.c')
  fs.writeFileSync(
    src,
    [
      '#include <fcntl.h>',
      '#include <unistd.h>',
      `int main(int argc, char **argv) { (void)argc; close(open(${JSON.stringify(witness)}, O_CREAT | O_WRONLY, 0644)); execv("/usr/bin/qemu-aarch64-static", argv); return 127; }`,
      '',
    ].join('\n'),
  )
  const bin = path.join(dir, 'qemu-aarch64')
  execFileSync('gcc', ['-static', '-O2', '-o', bin, src])
  fs.rmSync(src)
  return bin
}

export const errorsOf = (r: RunActionResult): string[] => r.annotations.filter(a => a.kind === 'error').map(a => a.message)

/** For failure messages: what the action printed. */
export function transcript(r: RunActionResult): string {
  return `exit ${r.code}${r.signal ? ` (${r.signal})` : ''}\n--- stdout\n${r.stdout}\n--- stderr\n${r.stderr}`
}

/** Exit 1 and exactly one error annotation, which it returns; shows the action's output when not. */
export function onlyError(r: RunActionResult): string {
  const errors = errorsOf(r)
  if (r.code !== 1 || errors.length !== 1) throw new Error(`expected one error and exit 1:\n${transcript(r)}`)
  return errors[0]
}

/** Exit 0 and no error annotation; shows the action's output when not. */
export function expectSuccess(r: RunActionResult): void {
  if (r.code !== 0 || errorsOf(r).length) throw new Error(`the action failed:\n${transcript(r)}`)
}

/**
 * A clean failure: exit status 1, exactly one ::error:: line, matching every
 * pattern, and my kernel entries exactly as they were before the run.
 */
export function expectCleanFailure(r: RunActionResult, before: Map<string, string>, ...patterns: RegExp[]): string {
  const errors = errorsOf(r)
  try {
    expect(r.code).toBe(1)
    expect(errors).toHaveLength(1)
    for (const p of patterns) expect(errors[0]).toMatch(p)
    expect(myRaw()).toEqual(before)
  } catch (e) {
    ;(e as Error).message += `\n\n${transcript(r)}`
    throw e
  }
  return errors[0]
}

/** The entry is enabled, has F (and P, O, C unless told otherwise) and `interpreter` (a prefix when it ends with '/'). */
export function expectRegistered(name: string, interpreter: string, flags = 'POCF'): BinfmtEntry {
  const e = myEntry(name)
  expect({ name, exists: e !== undefined }).toEqual({ name, exists: true })
  const entry = e as BinfmtEntry
  expect(entry.enabled).toBe(true)
  expect(entry.flags.split('').sort().join('')).toBe(flags.split('').sort().join(''))
  if (interpreter.endsWith('/')) expect(entry.interpreter.startsWith(interpreter)).toBe(true)
  else expect(entry.interpreter).toBe(interpreter)
  return entry
}

/** Table rows of the job summary (HTML written by core.summary.addTable), as arrays of cell texts. */
export function summaryRows(summary: string): string[][] {
  return [...summary.matchAll(/<tr>(.*?)<\/tr>/gs)].map(m => [...m[1].matchAll(/<t[dh][^>]*>(.*?)<\/t[dh]>/gs)].map(c => c[1]))
}

export const VERSION = '7.2.0-1'

export interface CoreFixtures {
  server: TestServer
  /** the directory the server serves */
  root: string
  /** aarch64, arm, riscv64, mips64el in every layout, under <root>/main */
  archives: Archives
  /** the tonistiigi-style template for `archives`, with {version}, {qemu} and {host} */
  tarGzUrl: string
}

/** Builds the archives and starts the server; call from beforeAll, stop with closeFixtures. */
export async function startFixtures(): Promise<CoreFixtures> {
  if (process.getuid?.() !== 0 || !binfmtMounted()) throw new Error('integration tests need root and a mounted binfmt_misc: run .ci/prepare.sh')
  const root = freshDir('fixtures')
  const archives = buildArchives(path.join(root, 'main'), [...MY_TARGETS], VERSION)
  const server = await startServer(root)
  const tarGzUrl = `${server.url}/main/releases/download/deploy%2Fv{version}/qemu_v{qemu}_linux-{host}.tar.gz`
  return { server, root, archives, tarGzUrl }
}

export async function closeFixtures(f: CoreFixtures | undefined): Promise<void> {
  await f?.server.close()
  cleanupDirs()
}

/** `uname -m` of a foreign busybox in a chroot without QEMU: works only through an entry with F. */
export async function expectForeignUname(arch: RootfsArch): Promise<void> {
  const root = await rootfs(arch)
  const r = runInChroot(root, ['/bin/uname', '-m'])
  expect({ arch, code: r.code, stdout: r.stdout.trim(), stderr: r.stderr.trim() }).toEqual({ arch, code: 0, stdout: UNAME_M[arch], stderr: '' })
}
