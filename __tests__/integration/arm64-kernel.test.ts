// The action on an arm64 kernel, as on GitHub's arm64 runners. A Debian 12 arm64 system under
// qemu-system-aarch64 (.ci/arm64vm.sh; .ci/prepare.sh builds its image once per machine) runs the
// bundle's main and post steps under Node 24 for arm64, as a runner does, with Debian's
// qemu-user-static arm64 .deb as qemu-url. Two CPUs, one boot each: `max` runs 32-bit ARM programs
// itself, `a64fx` has no AArch32 (like many arm64 servers), so linux/arm/v7 is native on one and
// emulated on the other. Everything happens in the VM's kernel; this host's binfmt_misc is not touched.
import { execFileSync, spawnSync } from 'child_process'
import { createHash } from 'crypto'
import * as fs from 'fs'
import * as os from 'os'
import * as path from 'path'
import { REPO_ROOT, RunnerFiles, parseAnnotations, parseKeyValueFile, runnerEnv } from '../support/action'
import { BinfmtEntry, parseEntry } from '../support/binfmt'
import { RootfsArch, UNAME_M, debDir, rootfs } from '../support/fixtures'
import { describeUnless } from '../support/host'
import { summaryRows } from './core-helpers'

const VM_SCRIPT = path.join(REPO_ROOT, '.ci', 'arm64vm.sh')
/** Where the VM mounts the directory shared with it (arm64vm.sh). */
const SHARE = '/mnt/host'
const PLATFORMS = 'linux/amd64,linux/riscv64,linux/386,linux/arm/v7'
/** What a user of those platforms gets on an arm64 runner: its own, and each emulator's (qemu-arm serves v7 and v6). */
const EXPECTED_PLATFORMS = ['linux/arm64', 'linux/amd64', 'linux/riscv64', 'linux/386', 'linux/arm/v7', 'linux/arm/v6']
/** Foreign busybox programs run in the VM after the main step, directly and in a chroot holding no QEMU. */
const FOREIGN: readonly RootfsArch[] = ['amd64', 'i386', 'armhf']

interface Cpu {
  name: string
  /** whether this QEMU CPU model has AArch32 (runs 32-bit ARM programs): `max` has, `a64fx` has not */
  aarch32: boolean
}
const CPUS: readonly Cpu[] = [
  { name: 'max', aarch32: true },
  { name: 'a64fx', aarch32: false },
]

/** Why this host cannot boot the arm64 VM (as arm64vm.sh check says), or undefined when it can. */
function whyNoVm(): string | undefined {
  if (process.getuid?.() !== 0) return 'the arm64 VM needs root'
  const r = spawnSync('bash', [VM_SCRIPT, 'check'], { encoding: 'utf8', timeout: 30_000 })
  return r.status === 0 ? undefined : (r.stdout + r.stderr).trim().replace(/\s*\n\s*/g, '; ') || `arm64vm.sh check: exit ${r.status}`
}

const sha256 = (data: Buffer): string => createHash('sha256').update(data).digest('hex')

/** Debian's qemu-user-static arm64 .deb that .ci/prepare.sh downloads. */
function qemuArm64Deb(): string {
  const debs = fs.readdirSync(debDir()).filter(n => /^qemu-user-static_.*_arm64\.deb$/.test(n))
  if (debs.length !== 1) throw new Error(`expected one qemu-user-static arm64 .deb in ${debDir()}, found ${debs.length}; run .ci/prepare.sh`)
  return path.join(debDir(), debs[0])
}

/** sha256 of the deb's /usr/bin/qemu-<target>-static, by target. */
function debEmulatorDigests(deb: string, targets: readonly string[]): Record<string, string> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'arm64-deb-'))
  try {
    const members = targets.map(t => `./usr/bin/qemu-${t}-static`)
    execFileSync('sh', ['-c', 'deb=$1 dir=$2 && shift 2 && dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$dir" "$@"', 'sh', deb, dir, ...members])
    return Object.fromEntries(targets.map(t => [t, sha256(fs.readFileSync(path.join(dir, 'usr/bin', `qemu-${t}-static`)))]))
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
}

// Runs in the VM as root, in the shared directory. Each step's output goes to out/<name>.out, its exit
// status to out/<name>.rc; the kernel's entries to out/entries-<when> (`== name` then the entry file).
// The steps get exactly the environment in <phase>.env (NUL-separated NAME=value, built by runnerEnv);
// post also gets main's saved state as STATE_<name>, as a runner hands it over.
const CMD_SH = `#!/bin/bash
set -u
out=${SHARE}/out
B=/proc/sys/fs/binfmt_misc
mkdir -p "$out" /tmp/runner/workspace /tmp/runner/toolcache /tmp/runner/temp
try() { local name=$1; shift; "$@" >"$out/$name.out" 2>&1 </dev/null; echo $? >"$out/$name.rc"; }
entries() {
  local f
  for f in "$B"/*; do
    case \${f##*/} in register | status) continue ;; esac
    echo "== \${f##*/}"; cat "$f"
  done
}
# GITHUB_STATE as @actions/core writes it (name<<DELIMITER, value lines, DELIMITER) as STATE_name=value records.
state_env() {
  local line name delim value
  while IFS= read -r line; do
    if [[ $line == *'<<'* ]]; then
      name=\${line%%<<*} delim=\${line#*<<} value=
      while IFS= read -r line && [ "$line" != "$delim" ]; do value+=$line$'\\n'; done
      printf 'STATE_%s=%s\\0' "$name" "\${value%$'\\n'}"
    elif [[ $line == *=* ]]; then
      printf 'STATE_%s\\0' "$line"
    fi
  done <"$1"
}
# A step runs in a subshell: its cd stays there.
step() (
  phase=$1 vars=()
  mapfile -d '' -t vars <"$phase.env"
  [ "$phase" = post ] && mapfile -d '' -t -O \${#vars[@]} vars < <(state_env main/github_state)
  cd /tmp/runner/workspace && env -i "\${vars[@]}" /usr/local/bin/node ${SHARE}/dist/index.js
)

uname -m >"$out/uname-m"
cat "$B/status" >"$out/binfmt-status"
entries >"$out/entries-before"
try armhf-before rootfs/armhf/bin/busybox uname -m
try main step main
entries >"$out/entries-main"
while read -r name; do sha256sum "$(sed -n 's/^interpreter //p' "$B/$name")"; done < <(sed -n 's/^== //p' "$out/entries-main") >"$out/interpreters"
for arch in ${FOREIGN.join(' ')}; do
  try "$arch-direct" "rootfs/$arch/bin/busybox" uname -m
  try "$arch-chroot" chroot "rootfs/$arch" /bin/uname -m
done
try post step post
entries >"$out/entries-post"
try amd64-after-post rootfs/amd64/bin/busybox uname -m
exit 0
`

interface VmRun {
  /** arm64vm.sh's exit status */
  status: number | null
  /** arm64vm.sh's output and the end of the VM's console, for failure messages */
  log: string
  /** a file the run left in the shared directory ('' when missing): out/..., main/github_output, ... */
  read(rel: string): string
}

/** Files of one phase's runner, under `dir` on the host and `at` in the VM. */
function runnerFiles(dir: string, at: string): RunnerFiles {
  const files: RunnerFiles = { output: 'github_output', state: 'github_state', summary: 'step_summary', env: 'github_env', path: 'github_path' }
  fs.mkdirSync(dir, { recursive: true })
  for (const f of Object.values(files)) fs.writeFileSync(path.join(dir, f), '')
  return Object.fromEntries(Object.entries(files).map(([k, f]) => [k, `${at}/${f}`])) as unknown as RunnerFiles
}

/** Every file under `dir`, by path relative to it. */
function readTree(dir: string, rel = ''): Map<string, string> {
  const found = new Map<string, string>()
  for (const e of fs.readdirSync(path.join(dir, rel), { withFileTypes: true })) {
    const p = path.join(rel, e.name)
    if (e.isDirectory()) for (const [k, v] of readTree(dir, p)) found.set(k, v)
    else if (e.isFile()) found.set(p, fs.readFileSync(path.join(dir, p), 'utf8'))
  }
  return found
}

/** Boots the VM with `cpu` once: the action's main step, the foreign programs, the post step. */
async function bootAndRun(cpu: Cpu, deb: string): Promise<VmRun> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `arm64-kernel-${cpu.name}-`))
  try {
    fs.cpSync(path.join(REPO_ROOT, 'dist'), path.join(dir, 'dist'), { recursive: true })
    fs.copyFileSync(deb, path.join(dir, 'qemu-user-static_arm64.deb'))
    for (const arch of FOREIGN) fs.cpSync(await rootfs(arch), path.join(dir, 'rootfs', arch), { recursive: true, verbatimSymlinks: true })
    const inputs = { platforms: PLATFORMS, 'qemu-url': `${SHARE}/qemu-user-static_arm64.deb`, uninstall: 'true' }
    for (const phase of ['main', 'post'] as const) {
      // The runner's environment, its paths as the VM sees them; post's STATE_* are added in the VM.
      const env = runnerEnv({
        inputs,
        phase,
        files: runnerFiles(path.join(dir, phase), `${SHARE}/${phase}`),
        workspace: '/tmp/runner/workspace',
        toolCache: '/tmp/runner/toolcache',
        temp: '/tmp/runner/temp',
        home: '/root',
        arch: 'arm64',
      })
      fs.writeFileSync(
        path.join(dir, `${phase}.env`),
        Object.entries(env)
          .map(([k, v]) => `${k}=${v}\0`)
          .join(''),
      )
    }
    fs.writeFileSync(path.join(dir, 'cmd.sh'), CMD_SH)
    const r = spawnSync('bash', [VM_SCRIPT, 'run', dir], { encoding: 'utf8', env: { ...process.env, ARM64VM_CPU: cpu.name }, timeout: 20 * 60_000 })
    const files = new Map([...['out', 'main', 'post'].flatMap(d => [...readTree(dir, d)])])
    const console = fs.existsSync(path.join(dir, 'console.log')) ? fs.readFileSync(path.join(dir, 'console.log'), 'utf8') : ''
    return {
      status: r.status,
      log: `arm64vm.sh run: ${r.error?.message ?? `exit ${r.status}`}\n${r.stdout}${r.stderr}\n--- end of the VM's console\n${console.slice(-3000)}`,
      read: rel => files.get(rel) ?? '',
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
}

/** A command cmd.sh ran in the VM: its exit status (null when it did not run) and output. */
function ran(run: VmRun, name: string): { name: string; code: number | null; out: string } {
  const rc = run.read(`out/${name}.rc`).trim()
  return { name, code: rc === '' ? null : Number(rc), out: run.read(`out/${name}.out`).trim() }
}

/** The VM kernel's binfmt_misc entries at a point of cmd.sh, by name. */
function entriesAt(run: VmRun, when: 'before' | 'main' | 'post'): Map<string, BinfmtEntry> {
  const found = new Map<string, BinfmtEntry>()
  for (const block of run.read(`out/entries-${when}`).split(/^== /m).slice(1)) {
    const name = block.slice(0, block.indexOf('\n'))
    found.set(name, parseEntry(name, block.slice(name.length + 1)))
  }
  return found
}

const sortedFlags = (flags: string): string => [...flags].sort().join('')

const why = whyNoVm()
describeUnless(why)('the action on an arm64 kernel (qemu-system-aarch64)', () => {
  const deb = why ? '' : qemuArm64Deb()

  describe.each(CPUS)('-cpu $name', cpu => {
    /** QEMU targets the step must register: every requested one but those this CPU runs natively. */
    const targets = ['x86_64', 'riscv64', 'i386', ...(cpu.aarch32 ? [] : ['arm'])]
    let run: VmRun
    let outputs: Record<string, string>

    beforeAll(async () => {
      run = await bootAndRun(cpu, deb)
      outputs = parseKeyValueFile(run.read('main/github_output'))
    }, 20 * 60_000)

    /** Fails with the run's transcript, so a failure says what happened in the VM. */
    const withLog = (check: () => void): void => {
      try {
        check()
      } catch (e) {
        ;(e as Error).message += `\n\n${run.log}\n--- main\n${ran(run, 'main').out}\n--- post\n${ran(run, 'post').out}`
        throw e
      }
    }

    test('boots an arm64 kernel with binfmt_misc mounted and nothing registered', () =>
      withLog(() => {
        expect(run.status).toBe(0)
        expect(run.read('out/uname-m').trim()).toBe('aarch64')
        expect(run.read('out/binfmt-status').trim()).toBe('enabled')
        expect([...entriesAt(run, 'before').keys()]).toEqual([])
      }))

    test(`32-bit ARM before anything is registered: ${cpu.aarch32 ? 'runs (AArch32)' : 'refused (no AArch32)'}`, () =>
      withLog(() => {
        // Natively, uname says what the arm64 kernel says (qemu-arm would say armv7l); without AArch32 exec fails.
        const r = ran(run, 'armhf-before')
        expect({ code: r.code, native: /^(aarch64|armv8l)$/.test(r.out), refused: /Exec format error/.test(r.out) }).toEqual(
          cpu.aarch32 ? { code: 0, native: true, refused: false } : { code: 126, native: false, refused: true },
        )
      }))

    test(`main step: exit 0, platforms ${EXPECTED_PLATFORMS.join(',')}, emulators ${targets.join(',')}`, () =>
      withLog(() => {
        const main = ran(run, 'main')
        expect({ code: main.code, errors: parseAnnotations(main.out).filter(a => a.kind === 'error') }).toEqual({ code: 0, errors: [] })
        expect(outputs.platforms.split(',').sort()).toEqual([...EXPECTED_PLATFORMS].sort())
        expect(JSON.parse(outputs['platforms-json'])).toEqual(outputs.platforms.split(','))
        expect(outputs.emulators.split(',').sort()).toEqual([...targets].sort())
        expect(outputs.method).toBe('direct')
      }))

    test(`the kernel holds qemu-${targets.join(', qemu-')}, enabled with flags POCF, Debian's emulators from the .deb`, () =>
      withLog(() => {
        const entries = entriesAt(run, 'main')
        expect([...entries.keys()].sort()).toEqual(targets.map(t => `qemu-${t}`).sort())
        const want = debEmulatorDigests(deb, targets)
        const digests = new Map(
          run
            .read('out/interpreters')
            .trim()
            .split('\n')
            .map(l => [l.slice(66), l.slice(0, 64)]),
        )
        for (const t of targets) {
          const e = entries.get(`qemu-${t}`) as BinfmtEntry
          expect({ t, enabled: e.enabled, flags: sortedFlags(e.flags), interpreter: digests.get(e.interpreter) }).toEqual({
            t,
            enabled: true,
            flags: sortedFlags('POCF'),
            interpreter: want[t],
          })
        }
      }))

    test.each(FOREIGN)('%s busybox runs after the step: directly, and in a chroot with no QEMU inside', arch =>
      withLog(() => {
        for (const how of ['direct', 'chroot']) {
          const name = `${arch}-${how}`
          // With AArch32, armhf still runs natively, as it did before the step (not through an emulator).
          const uname = arch === 'armhf' && cpu.aarch32 ? ran(run, 'armhf-before').out : UNAME_M[arch]
          expect(ran(run, name)).toEqual({ name, code: 0, out: uname })
        }
      }),
    )

    test(`linux/arm/v7 ${cpu.aarch32 ? 'native: listed, no qemu-arm registered' : 'emulated: qemu-arm registered and verified'}`, () =>
      withLog(() => {
        expect(outputs.platforms.split(',')).toContain('linux/arm/v7')
        expect(entriesAt(run, 'main').has('qemu-arm')).toBe(!cpu.aarch32)
        const row = summaryRows(run.read('main/step_summary')).find(cells => cells[0].split(', ').includes('linux/arm/v7'))
        expect(row?.join(' | ')).toMatch(cpu.aarch32 ? /\| native \|/ : /qemu-arm \(added\).*\| yes \|/)
      }))

    test('post step with uninstall: true removes what the step added; amd64 programs no longer run', () =>
      withLog(() => {
        const post = ran(run, 'post')
        expect({ code: post.code, errors: parseAnnotations(post.out).filter(a => a.kind === 'error') }).toEqual({ code: 0, errors: [] })
        expect([...entriesAt(run, 'post').keys()]).toEqual([])
        expect(ran(run, 'amd64-after-post')).toMatchObject({ code: 126, out: expect.stringMatching(/Exec format error/) })
      }))
  })
})
