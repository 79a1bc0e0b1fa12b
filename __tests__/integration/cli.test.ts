// The setup-qemu-binfmt command (dist/cli.js) run as a process, as a person or
// another CI would: install, status --json, verify, uninstall, usage errors,
// an unprivileged user with no way in, and the Docker path for a docker-group user.
import { spawn } from 'child_process'
import * as fs from 'fs'
import * as http from 'http'
import { AddressInfo } from 'net'
import * as path from 'path'
import { ACTION_NODE, CLI } from '../support/action'
import { entryExists, readEntry, registerRaw, removeEntry } from '../support/binfmt'
import { RUNNER_PATH, Ran, collect, runuserArgs } from '../support/users'
import {
  CoreFixtures,
  NON_QEMU,
  NON_QEMU_LINE,
  VERSION,
  closeFixtures,
  debianLine,
  expectForeignUname,
  expectRegistered,
  freshDir,
  leaveAbandoned,
  myEntry,
  myRaw,
  registerMine,
  startFixtures,
  withKernel,
} from './core-helpers'
import { hangingDir, killUnder, processesUnder } from './stand-ins'

let fx: CoreFixtures
beforeAll(async () => {
  fx = await startFixtures()
}, 120000)
afterAll(() => closeFixtures(fx))

type CliResult = Ran

/** The command's environment as a job's step would have it, with a cache of its own unless `extra` names one. */
function cliEnv(extra: Record<string, string> = {}): Record<string, string> {
  return { PATH: RUNNER_PATH, HOME: process.env.HOME ?? '/root', LANG: 'C.UTF-8', ...extra, XDG_CACHE_HOME: extra.XDG_CACHE_HOME ?? freshDir('xdg') }
}

/** Runs the command (asynchronously: the download server answers from this process). */
function cli(args: string[], opts: { user?: string; cache?: string } = {}): Promise<CliResult> {
  const env = cliEnv({ ...(opts.user ? { HOME: '/tmp' } : {}), ...(opts.cache ? { XDG_CACHE_HOME: opts.cache } : {}) })
  const [command, argv] = opts.user ? ['runuser', runuserArgs(opts.user, env, [ACTION_NODE, CLI, ...args])] : [ACTION_NODE, [CLI, ...args]]
  return collect(spawn(command, argv, { env, stdio: ['ignore', 'pipe', 'pipe'], timeout: 240000 }))
}

const show = (r: CliResult): string => `exit ${r.code}\n--- stdout\n${r.stdout}\n--- stderr\n${r.stderr}`
function expectExit(r: CliResult, code: number): void {
  if (r.code !== code) throw new Error(`expected exit ${code}:\n${show(r)}`)
}

const from = (): string[] => ['--qemu-version', VERSION, '--qemu-url', fx.tarGzUrl]

test('install registers with F and a foreign chroot runs; the log is plain lines, the last one the platforms', async () => {
  await withKernel(async () => {
    const cache = freshDir('xdg')
    const r = await cli(['install', '--platforms', 'linux/arm64', ...from()], { cache })
    expectExit(r, 0)
    expect(r.stdout).not.toMatch(/^::/m)
    expect(r.stdout).toMatch(/^Registering directly as root$/m)
    expect(r.stdout.trim().split('\n').pop()).toMatch(/^platforms: linux\/amd64,.*linux\/arm64/)
    expectRegistered('qemu-aarch64', `${cache}/setup-qemu-binfmt/tool-cache/`)
    await expectForeignUname('arm64')
  })
})

test('status --json, verify and uninstall: one JSON document, every field; only the named qemu-* entry goes', async () => {
  await withKernel(async () => {
    registerMine(NON_QEMU_LINE)
    const nonQemu = myRaw().get(NON_QEMU)
    expectExit(await cli(['--platforms', 'linux/arm64,linux/arm/v7', ...from(), '--quiet']), 0)

    const status = await cli(['status', '--json'])
    expectExit(status, 0)
    const doc = JSON.parse(status.stdout) as {
      mounted: boolean
      enabled: boolean
      native: string[]
      entries: {
        name: string
        target: string
        platforms: string[]
        interpreter: string
        flags: string
        enabled: boolean
        qemuVersion: string | null
        verified: boolean
        detail: string
      }[]
    }
    expect(doc).toMatchObject({ mounted: true, enabled: true })
    expect(doc.native).toContain('linux/amd64')
    const aarch64 = doc.entries.find(e => e.name === 'qemu-aarch64')
    expect(aarch64).toEqual({
      name: 'qemu-aarch64',
      target: 'aarch64',
      platforms: ['linux/arm64'],
      interpreter: readEntry('qemu-aarch64').interpreter,
      flags: 'POCF',
      enabled: true,
      qemuVersion: expect.stringMatching(/^7\.2\./),
      verified: true,
      detail: 'ok',
      stagedBy: null,
      abandoned: false,
    })
    expect(doc.entries.map(e => e.name)).not.toContain(NON_QEMU)

    const verify = await cli(['verify'])
    expectExit(verify, 0)
    expect(verify.stdout).toMatch(/^qemu-aarch64: ok$/m)
    expect(verify.stdout).toMatch(/^qemu-arm: ok$/m)

    const un = await cli(['uninstall', 'aarch64', '--json'])
    expectExit(un, 0)
    expect(JSON.parse(un.stdout)).toEqual({ ok: true, removed: ['qemu-aarch64'], kept: [] })
    expect(myEntry('qemu-aarch64')).toBeUndefined()
    expect(myEntry('qemu-arm')).toBeDefined()
    expect(myRaw().get(NON_QEMU)).toBe(nonQemu)
  })
})

test("a host a killed run left behind (issue 25): status shows its staging entries and that its run is gone, uninstall removes them and keeps a running run's", async () => {
  // Two entries a SIGKILLed run staged (interpreters gone, F keeps them working), and one of a run still running:
  // a process that started before its entry was made, as a run does (one holding the lock in another network namespace).
  const killed = leaveAbandoned(['aarch64', 'arm'])
  const running = spawn('sleep', ['300'], { stdio: 'ignore' })
  const live = `qemu-riscv64.staged-${running.pid}`
  try {
    await withKernel(async () => {
      registerRaw(debianLine('riscv64', 'F').replace(':qemu-riscv64:', `:${live}:`))
      const status = await cli(['status', '--json'])
      expectExit(status, 0)
      const entries = (JSON.parse(status.stdout) as { entries: { name: string }[] }).entries
      const version = expect.stringMatching(/^\d+\.\d+/) as unknown
      const staged = (n: string, target: string, platforms: string[], pid: number, abandoned: boolean) => ({
        name: n,
        target,
        platforms,
        interpreter: readEntry(n).interpreter,
        flags: 'F',
        enabled: true,
        // its file gone, nothing tells the version
        qemuVersion: abandoned ? null : version,
        verified: true,
        detail: 'ok',
        stagedBy: pid,
        abandoned,
      })
      expect(entries.filter(e => /\.staged-/.test(e.name))).toEqual([
        staged(killed.names[0], 'aarch64', ['linux/arm64'], killed.pid, true),
        staged(killed.names[1], 'arm', ['linux/arm/v7', 'linux/arm/v6'], killed.pid, true),
        staged(live, 'riscv64', ['linux/riscv64'], running.pid as number, false),
      ])
      const text = await cli(['status'])
      expectExit(text, 0)
      expect(text.stdout).toMatch(
        new RegExp(
          `^${killed.names[0].replace('.', '\\.')}: linux/arm64; .*; left by run ${killed.pid}, which is no longer running \\(setup-qemu-binfmt uninstall removes it\\)$`,
          'm',
        ),
      )
      expect(text.stdout).toMatch(new RegExp(`^${live.replace('.', '\\.')}: .*; staged by run ${running.pid}, still running`, 'm'))

      const un = await cli(['uninstall', 'aarch64', 'arm', 'riscv64', '--json'])
      expectExit(un, 0)
      expect(JSON.parse(un.stdout)).toEqual({ ok: true, removed: killed.names, kept: [live] })
      expect([...killed.names, live].filter(n => entryExists(n))).toEqual([live])

      running.kill('SIGKILL')
      await new Promise(r => running.once('exit', r))
      const again = await cli(['uninstall', 'riscv64'])
      expectExit(again, 0)
      expect(again.stdout).toBe(`removed ${live}\n`)
      expect(entryExists(live)).toBe(false)
    })
  } finally {
    running.kill('SIGKILL')
    killed.cleanUp()
    if (entryExists(live)) removeEntry(live)
  }
})

test('verify interrupted (^C) while a test program hangs: the program and its child are ended and the temporary directory removed', async () => {
  await withKernel(async () => {
    // Its qemu-arm-static ignores SIGINT and SIGTERM and leaves a child: only a kill of its process group ends it.
    const dir = hangingDir()
    const tmp = freshDir('tmp')
    try {
      registerMine(debianLine('arm', 'F', path.join(dir, 'qemu-arm-static')))
      const env = cliEnv({ TMPDIR: tmp })
      const child = spawn(ACTION_NODE, [CLI, 'verify'], { env, stdio: ['ignore', 'pipe', 'pipe'], timeout: 60000 })
      const done = collect(child)
      for (let i = 0; i < 100 && processesUnder(dir).length < 2; i++) await new Promise(r => setTimeout(r, 100))
      expect(processesUnder(dir)).toHaveLength(2)
      child.kill('SIGINT')
      await done
      for (let i = 0; i < 20 && processesUnder(dir).length; i++) await new Promise(r => setTimeout(r, 100))
      expect({ running: processesUnder(dir), left: fs.readdirSync(tmp) }).toEqual({ running: [], left: [] })
    } finally {
      killUnder(dir)
    }
  })
})

test('install cancelled while a docker command hangs past the 3 s deadline: exit 1, and no work directory left in TMPDIR', async () => {
  // A stand-in docker that never answers and shrugs off SIGINT and SIGTERM: the preflight runs it through the runner
  // that cancellation does not stop (kernel access must finish), so only main's deadline ends the run.
  const dir = freshDir('hanging-docker')
  fs.writeFileSync(path.join(dir, 'docker'), `#!/bin/sh\ntrap '' INT TERM\nwhile :; do sleep 1; done\n`, { mode: 0o755 })
  const tmp = freshDir('tmp')
  const env = cliEnv({ PATH: `${dir}:${RUNNER_PATH}`, TMPDIR: tmp })
  const args = ['install', '--install-mode', 'docker', '--platforms', 'linux/arm64', '--qemu-url', '/usr/bin/qemu-{target}-static']
  const child = spawn(ACTION_NODE, [CLI, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'], timeout: 60000 })
  const done = collect(child)
  try {
    for (let i = 0; i < 100 && !processesUnder(dir).length; i++) await new Promise(r => setTimeout(r, 100))
    expect(processesUnder(dir).length).toBeGreaterThan(0)
    expect(fs.readdirSync(tmp)).toHaveLength(1)
    child.kill('SIGINT')
    const r = await done
    expect({ code: r.code, left: fs.readdirSync(tmp) }).toEqual({ code: 1, left: [] })
    expect(r.stderr + r.stdout).toMatch(/cancelled \(SIGINT\) and the clean-up did not finish in time/)
  } finally {
    killUnder(dir)
  }
})

test('usage errors exit 2 with one line naming what is wrong, before anything is touched', async () => {
  await withKernel(async () => {
    const before = myRaw()
    fx.server.reset()
    const bad = await cli(['install', '--platforms', 'linux/arm64,linux/foo', ...from()])
    expectExit(bad, 2)
    expect(bad.stderr.trim().split('\n')).toHaveLength(1)
    expect(bad.stderr).toMatch(/^setup-qemu-binfmt: --platforms: unknown platform 'linux\/foo'/)
    const flag = await cli(['--frobnicate'])
    expectExit(flag, 2)
    expect(flag.stderr.trim()).toBe('setup-qemu-binfmt: unknown option --frobnicate; see --help')
    const cmd = await cli(['reinstall'])
    expectExit(cmd, 2)
    expect(cmd.stderr).toMatch(/unknown command 'reinstall'/)
    const target = await cli(['uninstall', 'armv9z'])
    expectExit(target, 2)
    // What follows -- is not dropped: this used to install aarch64 only and exit 0.
    const dashes = await cli(['--platforms', 'linux/arm64', ...from(), '--', '--reset', '--platforms', 'all'])
    expectExit(dashes, 2)
    expect(dashes.stderr.trim()).toMatch(/^setup-qemu-binfmt: unexpected argument '--reset' after --: install takes none; [^\n]*$/)
    for (const command of ['status', 'verify']) {
      const r = await cli([command, '--', '--json'])
      expectExit(r, 2)
      expect(r.stderr.trim().split('\n')).toHaveLength(1)
    }
    expect(myRaw()).toEqual(before)
    expect(fx.server.requests).toEqual([])
  })
})

// Audit (issue 23): root's PATH holds a directory another local user can write, with a "docker" of theirs in it.
test('as root, a program another user planted in a PATH directory of theirs is not run; the command says which entry it ignored', async () => {
  await withKernel(async () => {
    const planted = freshDir('planted-bin')
    fs.chownSync(planted, 1001, 1001)
    const marker = path.join(freshDir('marker'), 'ran-as-root')
    fs.chmodSync(path.dirname(marker), 0o1777)
    fs.writeFileSync(path.join(planted, 'docker'), `#!/bin/sh\nid -u > ${marker}\nexit 1\n`, { mode: 0o755 })
    fs.chownSync(path.join(planted, 'docker'), 1001, 1001)
    const env = { ...cliEnv(), PATH: `${planted}:${RUNNER_PATH}` }
    const args = ['--install-mode', 'docker', '--docker-image', 'local/busybox:test', '--platforms', 'linux/arm64', ...from()]
    const r = await collect(spawn(ACTION_NODE, [CLI, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'], timeout: 240000 }))
    expect(fs.existsSync(marker)).toBe(false)
    expect(r.stderr).toContain(`setup-qemu-binfmt: warning: PATH: ignoring '${planted}': running as root`)
    expectExit(r, 0)
  })
})

test('--help and --version exit 0', async () => {
  const help = await cli(['--help'])
  expectExit(help, 0)
  expect(help.stdout).toMatch(/^usage: setup-qemu-binfmt/m)
  const version = await cli(['--version'])
  expectExit(version, 0)
  expect(version.stdout.trim()).toMatch(/^\d+\.\d+\.\d+$/)
})

test('an unprivileged user with neither sudo nor Docker: exit 1, one clear error, nothing registered', async () => {
  await withKernel(async () => {
    const before = myRaw()
    const cache = freshDir('xdg-nobody')
    fs.chmodSync(cache, 0o777)
    const r = await cli(['--platforms', 'linux/arm64', ...from()], { user: 'nobody', cache })
    expectExit(r, 1)
    const errors = r.stderr.split('\n').filter(l => l.startsWith('error: '))
    expect(errors).toHaveLength(1)
    expect(errors[0]).toMatch(
      /^error: cannot register emulators \(install-mode: auto\): direct: not root, and sudo -n: .*; docker: .*; userns: .*; run as root, allow passwordless sudo, give the runner access to a Docker daemon, or run rootless Docker or Podman on Linux 6\.7\+ \(install-mode: userns\)$/,
    )
    expect(myRaw()).toEqual(before)
  })
})

test('a user in the docker group without sudo: the Docker path registers with F, and it runs', async () => {
  await withKernel(async () => {
    const cache = freshDir('xdg-docker')
    fs.chmodSync(cache, 0o777)
    const r = await cli(
      ['--platforms', 'linux/riscv64', '--qemu-url', '/usr/bin', '--qemu-version', '7.2.0-1', '--docker-image', 'local/busybox:test', '--json'],
      {
        user: 'qemutest',
        cache,
      },
    )
    expectExit(r, 0)
    const doc = JSON.parse(r.stdout) as { ok: boolean; method: string; emulators: string[]; platforms: string[] }
    expect(doc).toMatchObject({ ok: true, method: 'docker', emulators: ['riscv64'] })
    expect(doc.platforms).toContain('linux/riscv64')
    expect(myEntry('qemu-riscv64')).toMatchObject({
      enabled: true,
      flags: 'POCF',
      interpreter: expect.stringMatching(/^\/setup-qemu-binfmt\/[0-9a-f]{16}\/qemu-riscv64-static$/),
    })
    // The log went to stderr: stdout is the one JSON document.
    expect(r.stderr).toMatch(/through a privileged container/)
  })
})

/** Serves `file` slowly (about 3 s), so that the download reports progress. */
function slowServer(file: string): Promise<{ url: string; close: () => void }> {
  const data = fs.readFileSync(file)
  return new Promise(resolve => {
    const server = http.createServer((_req, res) => {
      res.writeHead(200, { 'content-length': String(data.length) })
      const step = Math.ceil(data.length / 60)
      let at = 0
      const t = setInterval(() => {
        res.write(data.subarray(at, at + step))
        at += step
        if (at >= data.length) {
          clearInterval(t)
          res.end()
        }
      }, 50)
      res.on('close', () => clearInterval(t))
    })
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as AddressInfo
      resolve({ url: `http://127.0.0.1:${port}/slow.tar.gz`, close: () => server.close() })
    })
  })
}

test('a slow download: a progress bar drawn in place on a terminal, plain progress lines otherwise', async () => {
  const server = await slowServer(fx.archives.tarGz)
  try {
    await withKernel(async () => {
      const plain = await cli(['--platforms', 'linux/arm64', '--qemu-url', server.url])
      expectExit(plain, 0)
      expect(plain.stdout).toMatch(/^Downloading http:\/\/127\.0\.0\.1:\d+\/slow\.tar\.gz: [\d.]+ of [\d.]+ MB$/m)
      expect(plain.stdout).not.toContain('\r')
      // `script` gives the command a terminal.
      const cache = freshDir('xdg')
      const command = [ACTION_NODE, CLI, '--platforms', 'linux/arm64', '--qemu-url', server.url].map(a => `'${a}'`).join(' ')
      const tty = await collect(
        spawn('script', ['-qec', command, '/dev/null'], { env: { ...process.env, XDG_CACHE_HOME: cache }, stdio: ['ignore', 'pipe', 'pipe'] }),
      )
      expectExit(tty, 0)
      expect(tty.stdout).toMatch(/\rslow\.tar\.gz \[#*-*\] \d+% [\d.]+\/[\d.]+ MB/)
      expect(tty.stdout).not.toMatch(/^Downloading .*: [\d.]+ of/m)
    })
  } finally {
    server.close()
  }
})
