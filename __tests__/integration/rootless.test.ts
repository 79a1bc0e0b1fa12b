// install-mode userns and `setup-qemu-binfmt run`, as unprivileged users with no sudo, on this
// machine's kernel (6.7+ lets a user namespace mount a binfmt_misc of its own):
//  - rootless Docker (Debian 12's dockerd-rootless.sh, started by .ci/rootless.sh for user
//    qemurootless): after the step an arm64 container runs and `docker build --platform
//    linux/arm64` runs a RUN; auto picks userns; uninstall and the post step remove what it added;
//  - `run -- COMMAND`: a foreign chroot in a new namespace, the command's exit status and stdout;
//  - a namespace that forbids the mount, a process of another user, no rootless daemon: one error each.
// Throughout, the host's own binfmt_misc table does not change.
import { spawnSync } from 'child_process'
import * as fs from 'fs'
import * as path from 'path'
import { ACTION_NODE, CLI, runAction } from '../support/action'
import { snapshot } from '../support/binfmt'
import { rootfs } from '../support/fixtures'
import { RUNNER_PATH, Ran, runAs, startAs, uidOf } from '../support/users'
import { CoreFixtures, VERSION, closeFixtures, expectSuccess, freshDir, onlyError, startFixtures } from './core-helpers'
import { whenPrinted } from './stand-ins'
import { describeUnless, usernsBinfmtRefused } from '../support/host'

const USER = 'qemurootless'
/** Where the kernel gives no user namespace a binfmt_misc of its own, every test here is skipped, with the reason. */
const describeHere = describeUnless(usernsBinfmtRefused(USER))
const NATIVE_IMAGE = 'local/busybox:test'
const ARM64_IMAGE = 'local/busybox-arm64:test'

const uid = uidOf(USER)
const RUNTIME = `/run/user/${uid}`
const DOCKER_HOST = `unix://${RUNTIME}/docker.sock`
const ENGINE = { DOCKER_HOST, XDG_RUNTIME_DIR: RUNTIME }
/** Runs argv as `user` in a clean environment (asynchronously: the download server answers from this process). */
const asUser = (user: string, argv: string[], env: Record<string, string> = {}): Promise<Ran> =>
  runAs(user, argv, { HOME: user === USER ? `/home/${USER}` : '/tmp', LANG: 'C.UTF-8', ...env })

/** A fresh directory the user owns (its XDG cache). */
function userDir(label: string): string {
  const d = freshDir(label)
  fs.chownSync(d, uid, uid)
  return d
}

const docker = (args: string[]): Promise<Ran> => asUser(USER, ['docker', ...args], ENGINE)
const show = (r: Ran): string => `exit ${r.code}\n--- stdout\n${r.stdout}\n--- stderr\n${r.stderr}`

const DOCKER_PID = `${RUNTIME}/docker.pid`
const PODMAN_PID = `${RUNTIME}/libpod/tmp/pause.pid`

/** The entries in the namespace of the process a pid file names (rootless Docker's by default), read from outside. */
function namespaceEntries(pidFile = DOCKER_PID): string[] {
  if (!fs.existsSync(pidFile)) return []
  const pid = fs.readFileSync(pidFile, 'utf8').trim()
  const dir = `/proc/${pid}/root/proc/sys/fs/binfmt_misc`
  try {
    const own = fs.statSync(path.join(dir, 'register')).uid === uid
    return own
      ? fs
          .readdirSync(dir)
          .filter(n => n !== 'register' && n !== 'status')
          .sort()
      : []
  } catch {
    return []
  }
}

/** For Podman: Docker's socket is not there. */
const PODMAN_ONLY = { XDG_RUNTIME_DIR: RUNTIME, DOCKER_HOST: `unix://${RUNTIME}/no-docker.sock` }

let fx: CoreFixtures
let hostBefore: ReturnType<typeof snapshot>
beforeAll(async () => {
  const info = await docker(['info', '--format', '{{.SecurityOptions}}'])
  if (info.code !== 0 || !info.stdout.includes('rootless')) throw new Error(`rootless Docker of ${USER} is not running: run .ci/rootless.sh\n${show(info)}`)
  fx = await startFixtures()
  hostBefore = snapshot()
}, 120000)

afterEach(async () => {
  // Whatever a test left in the namespace goes: the namespace is these tests' own.
  if (namespaceEntries().length) await asUser(USER, [ACTION_NODE, CLI, 'uninstall', 'all'], ENGINE)
  if (namespaceEntries(PODMAN_PID).length) await asUser(USER, [ACTION_NODE, CLI, 'uninstall', 'all'], PODMAN_ONLY)
  // The host's table never changes, whatever the test did.
  expect(snapshot()).toEqual(hostBefore)
})
afterAll(() => closeFixtures(fx))

const from = { 'qemu-version': VERSION, 'qemu-url': '' }
const inputs = (extra: Record<string, string> = {}): Record<string, string> => ({
  ...from,
  'qemu-url': fx.tarGzUrl,
  platforms: 'linux/arm64,linux/arm/v7',
  'docker-image': NATIVE_IMAGE,
  ...extra,
})

describeHere('rootless Docker: install-mode userns', () => {
  test('auto picks userns for a user with no sudo and only rootless Docker; an arm64 container runs and docker build --platform linux/arm64 runs a RUN', async () => {
    const r = await runAction(inputs(), { user: USER, env: ENGINE })
    expectSuccess(r)
    expect(r.outputs.method).toBe('userns')
    expect(r.outputs.platforms.split(',')).toEqual(expect.arrayContaining(['linux/arm64', 'linux/arm/v7']))
    expect(r.stdout).toMatch(/Direct registration is not possible \(not root, and sudo -n/)
    expect(r.stdout).toMatch(/Registering through Docker is not possible \(docker: the daemon's containers run in a user namespace/)
    expect(r.stdout).toMatch(/this runner's own processes do not/)
    expect(r.summary).toMatch(
      /method: userns \(the user namespace of rootless Docker \(pid \d+, .*docker\.sock\); this runner's own processes are not covered\)/,
    )
    expect(namespaceEntries()).toEqual(['qemu-aarch64', 'qemu-arm'])

    const run = await docker(['run', '--rm', '--network', 'none', ARM64_IMAGE, 'uname', '-m'])
    expect({ code: run.code, stdout: run.stdout.trim() }).toEqual({ code: 0, stdout: 'aarch64' })

    const ctx = freshDir('build')
    fs.writeFileSync(path.join(ctx, 'Dockerfile'), `FROM ${ARM64_IMAGE}\nRUN test "$(uname -m)" = aarch64 && echo built-on-$(uname -m) > /arch\n`)
    const build = await docker(['build', '--platform', 'linux/arm64', '--network', 'none', '-t', 'local/rootless-build:test', ctx])
    if (build.code !== 0) throw new Error(`docker build failed:\n${show(build)}`)
    const built = await docker(['run', '--rm', '--network', 'none', 'local/rootless-build:test', 'cat', '/arch'])
    expect(built.stdout.trim()).toBe('built-on-aarch64')
    await docker(['rmi', '-f', 'local/rootless-build:test'])

    // The runner's own processes are not covered: on the host (whose table has no aarch64 entry) an arm64 program
    // still does not run. (The kernel refuses it; Node then hands it to /bin/sh, which fails on its binary content.)
    const host = spawnSync(path.join(await rootfs('arm64'), 'bin', 'busybox'), ['echo', 'ran'])
    expect({ hostEntry: hostBefore.has('qemu-aarch64'), ran: host.status === 0, stdout: host.stdout?.toString() }).toEqual({
      hostEntry: false,
      ran: false,
      stdout: '',
    })
  }, 300000)

  test('install-mode userns with uninstall: true: the post step removes what the step added, and containers no longer run arm64', async () => {
    const main = await runAction(inputs({ 'install-mode': 'userns', uninstall: 'true', platforms: 'linux/arm64' }), { user: USER, env: ENGINE })
    expectSuccess(main)
    expect(main.outputs.method).toBe('userns')
    expect(namespaceEntries()).toEqual(['qemu-aarch64'])
    const post = await runAction(inputs({ 'install-mode': 'userns', uninstall: 'true' }), { user: USER, env: ENGINE, phase: 'post', state: main.stateFile })
    expectSuccess(post)
    expect(post.stdout).toMatch(/uninstall: removed qemu-aarch64/)
    expect(namespaceEntries()).toEqual([])
    const run = await docker(['run', '--rm', '--network', 'none', ARM64_IMAGE, 'uname', '-m'])
    expect(run.code).not.toBe(0)
  }, 300000)

  test('a verification container that cannot run the test programs fails the step, and nothing stays in the namespace', async () => {
    // Proof in the namespace alone is not enough: the engine's own container must run the programs too.
    const r = await runAction(inputs({ 'install-mode': 'userns', platforms: 'linux/arm64', 'docker-image': ARM64_IMAGE.replace('test', 'missing') }), {
      user: USER,
      env: ENGINE,
    })
    expect(onlyError(r)).toMatch(/local\/busybox-arm64:missing/)
    expect(namespaceEntries()).toEqual([])
  }, 300000)
})

describeHere('the command on a rootless namespace (--userns)', () => {
  test("status --userns and verify --userns show and prove the namespace's entries (the host's status does not list them); uninstall --userns removes one", async () => {
    const cli = (args: string[]): Promise<Ran> => asUser(USER, [ACTION_NODE, CLI, ...args], { ...ENGINE, XDG_CACHE_HOME: userDir('xdg') })
    const installed = await cli([
      'install',
      '--platforms',
      'linux/arm64,linux/arm/v7',
      '--qemu-version',
      VERSION,
      '--qemu-url',
      fx.tarGzUrl,
      '--install-mode',
      'userns',
      '--docker-image',
      NATIVE_IMAGE,
    ])
    expect({ code: installed.code, stderr: installed.stderr }).toEqual({ code: 0, stderr: '' })

    const status = await cli(['status', '--userns', '--json'])
    expect(status.code).toBe(0)
    const entries = (JSON.parse(status.stdout) as { entries: { name: string; verified: boolean; platforms: string[] }[] }).entries
    expect(entries.map(e => [e.name, e.verified])).toEqual([
      ['qemu-aarch64', true],
      ['qemu-arm', true],
    ])
    expect(status.stderr).toMatch(/^in the user namespace of rootless Docker/)
    const host = await cli(['status', '--json'])
    expect((JSON.parse(host.stdout) as { entries: { name: string }[] }).entries.map(e => e.name)).not.toContain('qemu-aarch64')

    const verified = await cli(['verify', '--userns'])
    expect({ code: verified.code, stdout: verified.stdout }).toEqual({ code: 0, stdout: 'qemu-aarch64: ok\nqemu-arm: ok\n' })

    const removed = await cli(['uninstall', '--userns', 'arm', '--json'])
    expect(JSON.parse(removed.stdout)).toEqual({ ok: true, removed: ['qemu-arm'], kept: [] })
    expect(namespaceEntries()).toEqual(['qemu-aarch64'])
  }, 300000)
})

describeHere('rootless Podman', () => {
  const pausePid = (): string | undefined => {
    const pid = fs.existsSync(PODMAN_PID) ? fs.readFileSync(PODMAN_PID, 'utf8').trim() : ''
    return pid && fs.existsSync(`/proc/${pid}`) ? pid : undefined
  }

  /** Ends the user's pause process, which an earlier test or run may have left. */
  const stopPause = async (): Promise<void> => {
    const running = pausePid()
    if (running) process.kill(Number(running), 'SIGKILL')
    for (let i = 0; i < 300 && pausePid(); i++) await new Promise(r => setTimeout(r, 100))
    expect(pausePid()).toBeUndefined()
  }

  test("auto starts nothing of Podman's: with no pause process running, it fails naming that, and none is started", async () => {
    await stopPause()
    const r = await runAction(inputs(), { user: USER, env: PODMAN_ONLY })
    expect(onlyError(r)).toMatch(/userns: no rootless Docker daemon: .*no-docker\.sock is not a socket; no rootless Podman running \(no live pause process/)
    expect(pausePid()).toBeUndefined()
  }, 120000)

  test('no pause process, no rootless daemon where DOCKER_HOST points, and a podman that fails: one error with both reasons and what would work', async () => {
    // A live pause process would be used instead of the failing podman.
    await stopPause()
    const bin = freshDir('bin')
    fs.writeFileSync(path.join(bin, 'podman'), '#!/bin/sh\necho "Error: podman is broken here" >&2\nexit 125\n', { mode: 0o755 })
    const r = await runAction(inputs({ 'install-mode': 'userns' }), {
      user: USER,
      env: { ...ENGINE, DOCKER_HOST: `unix://${RUNTIME}/nothing.sock`, PATH: `${bin}:${RUNNER_PATH}` },
    })
    expect(onlyError(r)).toMatch(
      /^cannot register emulators \(install-mode: userns\): userns: no rootless Docker daemon: .*nothing\.sock is not a socket; no rootless Podman: podman unshare: Error: podman is broken here; run rootless Docker/,
    )
  }, 120000)

  test("install-mode userns starts Podman's pause process and registers in its namespace; a podman container runs arm64, and uninstall empties it", async () => {
    const r = await runAction(inputs({ 'install-mode': 'userns', platforms: 'linux/arm64' }), { user: USER, env: PODMAN_ONLY })
    expectSuccess(r)
    expect(r.outputs.method).toBe('userns')
    expect(r.summary).toMatch(/method: userns \(the user namespace of rootless Podman \(pause process \d+\); this runner's own processes are not covered\)/)
    expect(namespaceEntries(PODMAN_PID)).toEqual(['qemu-aarch64'])
    const run = await asUser(USER, ['podman', 'run', '--rm', '--network', 'none', ARM64_IMAGE, 'uname', '-m'], PODMAN_ONLY)
    expect({ code: run.code, stdout: run.stdout.trim() }).toEqual({ code: 0, stdout: 'aarch64' })
    // Docker's namespace is another one: it got nothing.
    expect(namespaceEntries()).toEqual([])

    const removed = await asUser(USER, [ACTION_NODE, CLI, 'uninstall', 'all', '--json'], PODMAN_ONLY)
    expect(JSON.parse(removed.stdout)).toEqual({ ok: true, removed: ['qemu-aarch64'], kept: [] })
    expect(namespaceEntries(PODMAN_PID)).toEqual([])
  }, 300000)

  test("cancelled while the verification container runs in Podman's namespace: the container is removed with podman, not left behind", async () => {
    // An image whose sh sleeps a minute first: the container is still running when the signal comes.
    const slow = 'localhost/busybox-slow:test'
    const podman = (args: string[]): Promise<Ran> => asUser(USER, ['podman', ...args], PODMAN_ONLY)
    const made = await podman([
      'run',
      '--name',
      'sqb-make-slow',
      '--network',
      'none',
      NATIVE_IMAGE,
      '/bin/busybox',
      'sh',
      '-c',
      `printf '#!/bin/busybox sh\\nsleep 60\\nexec /bin/busybox sh "$@"\\n' >/bin/slow-sh && chmod 755 /bin/slow-sh && ln -sf slow-sh /bin/sh`,
    ])
    const committed = await podman(['commit', '-q', 'sqb-make-slow', slow])
    await podman(['rm', '-f', 'sqb-make-slow'])
    expect({ made: made.code, committed: committed.code }).toEqual({ made: 0, committed: 0 })
    const left = async (): Promise<string[]> => (await podman(['ps', '-aq', '--filter', 'label=setup-qemu-binfmt'])).stdout.split('\n').filter(Boolean)
    try {
      const r = await runAction(inputs({ 'install-mode': 'userns', platforms: 'linux/arm64', 'docker-image': slow }), {
        user: USER,
        env: PODMAN_ONLY,
        debug: true,
        timeoutMs: 120000,
        onSpawn: child => void whenPrinted(child, /::debug::podman start -a /).then(() => setTimeout(() => child.kill('SIGTERM'), 500)),
      })
      expect(r.stdout).toMatch(/::debug::podman start -a /)
      expect(await left()).toEqual([])
    } finally {
      for (const id of await left()) await podman(['rm', '-f', '-t', '0', id])
      await podman(['rmi', '-f', slow])
    }
  }, 300000)
})

describeHere('a named namespace ($SETUP_QEMU_BINFMT_USERNS_PID)', () => {
  test('a namespace whose mount namespace is not its own forbids the mount: one error naming the kernel and what to use instead', async () => {
    // unshare -U alone: a user namespace that still shares the host's mount namespace, where it may not mount.
    const { pid, stop } = await startAs(USER, ['unshare', '--user', 'sleep', '120'], 'sleep')
    try {
      const r = await runAction(inputs({ 'install-mode': 'userns' }), { user: USER, env: { ...ENGINE, SETUP_QEMU_BINFMT_USERNS_PID: String(pid) } })
      expect(onlyError(r)).toMatch(
        new RegExp(
          `^cannot give the user namespace of process ${pid} a binfmt_misc of its own \\(.+\\); kernel \\d+\\.\\d+\\S* refused it in this namespace: use install-mode: direct .* or a rootful Docker daemon`,
        ),
      )
    } finally {
      stop()
    }
  }, 120000)

  test('a process of another user (pid 1) is refused before anything is entered', async () => {
    const r = await runAction(inputs({ 'install-mode': 'userns' }), { user: USER, env: { ...ENGINE, SETUP_QEMU_BINFMT_USERNS_PID: '1' } })
    expect(onlyError(r)).toMatch(/userns: SETUP_QEMU_BINFMT_USERNS_PID: process 1 does not run as this user/)
  }, 120000)

  test('a value that is not a process id is an input error', async () => {
    const r = await runAction(inputs({ 'install-mode': 'userns' }), { user: USER, env: { ...ENGINE, SETUP_QEMU_BINFMT_USERNS_PID: '1; rm -rf /' } })
    expect(onlyError(r)).toBe("SETUP_QEMU_BINFMT_USERNS_PID must be a process id, not '1; rm -rf /'")
  }, 120000)
})

describeHere('setup-qemu-binfmt run -- COMMAND (no privilege at all)', () => {
  const runArgs = (): string[] => ['run', '--platforms', 'linux/arm64', '--qemu-version', VERSION, '--qemu-url', fx.tarGzUrl]

  test("a foreign chroot runs in a new namespace; stdout is the command's alone, the log goes to stderr, the exit status is the command's", async () => {
    const root = await rootfs('arm64')
    const r = await asUser(USER, [ACTION_NODE, CLI, ...runArgs(), '--', 'chroot', root, '/bin/sh', '-c', 'uname -m; exit 7'], {
      XDG_CACHE_HOME: userDir('xdg'),
    })
    if (r.code !== 7) throw new Error(`expected exit 7:\n${show(r)}`)
    expect(r.stdout).toBe('aarch64\n')
    expect(r.stderr).toMatch(/Registering in the user namespace of process \d+: /)
    expect(r.stderr).toMatch(/aarch64: ok/)
    // The namespace went with the command: nothing of it is left running.
    expect(spawnSync('pgrep', ['-u', USER, '-f', `chroot ${root}`]).stdout.toString()).toBe('')
  }, 240000)

  test('when the emulators cannot be had, the command does not run and the status is 125', async () => {
    const marker = path.join(freshDir('marker'), 'ran')
    fs.chmodSync(path.dirname(marker), 0o777)
    const r = await asUser(
      USER,
      [ACTION_NODE, CLI, 'run', '--platforms', 'linux/arm64', '--qemu-url', `${fx.server.url}/missing/{target}`, '--', 'touch', marker],
      {
        XDG_CACHE_HOME: userDir('xdg'),
      },
    )
    if (r.code !== 125) throw new Error(`expected exit 125:\n${show(r)}`)
    expect(r.stderr).toMatch(/^error: .*404/m)
    expect(fs.existsSync(marker)).toBe(false)
  }, 240000)

  test('usage errors: no command, a command without --, --install-mode: exit 2, nothing runs', async () => {
    for (const [args, message] of [
      [['run', '--platforms', 'linux/arm64'], /run needs a command after --/],
      [['run', 'true'], /put the command after --/],
      [['run', '--install-mode', 'direct', '--', 'true'], /--install-mode does not go with run/],
    ] as const) {
      const r = await asUser(USER, [ACTION_NODE, CLI, ...args])
      expect({ args, code: r.code }).toEqual({ args, code: 2 })
      expect(r.stderr).toMatch(message)
    }
  }, 60000)
})
