// The builder step against a real BuildKit: v0.13.2 compiled from Debian trixie's sources by
// .ci/buildkit.sh (local/buildkit:test), served by .ci/registry.sh's local registry as
// 127.0.0.1:5000/buildkit:test, with the real buildx 0.13.1 and dockerd 20.10. Covers the default
// docker-container driver end to end (its image pulled from the registry, as a hosted runner pulls
// moby/buildkit), a Docker context as endpoint, the remote driver (endpoint) with a live appended
// node and with one that is down, and cancellation while the builder is being made; and the builder
// started before the emulators are registered (startBuilder / finishBuilder / abandonBuilder).
// The remote buildkitd daemons are started here (and only removed here): the post step must never stop them.
import { spawnSync } from 'child_process'
import * as fs from 'fs'
import * as http from 'http'
import * as net from 'net'
import * as os from 'os'
import * as path from 'path'
import { BuilderStartOptions, abandonBuilder, finishBuilder, startBuilder } from '../../src/buildx/builder'
import { ChildProcessRunner } from '../../src/process'
import { runAction } from '../support/action'
import { Snapshot, entryExists, listEntries, readEntry, registerRaw, removeEntry, restore, snapshot } from '../support/binfmt'
import { debDir, rootfs } from '../support/fixtures'

const MINE = ['qemu-aarch64']
const IMAGE = 'local/buildkit:test'
const PULLED = '127.0.0.1:5000/buildkit:test'
const BUILDKIT_VERSION = /^v0\.13\.2\+debian/
const TAG = `qbf-bk-${process.pid}`
const BUILDER = `${TAG}-b`
const CONTEXT = `${TAG}-ctx`
const DAEMONS = [`${TAG}-bkd-a`, `${TAG}-bkd-b`]

const docker = (...args: string[]) => spawnSync('docker', args, { encoding: 'utf8', timeout: 300000 })
const base = { platforms: 'linux/arm64', 'qemu-url': '/usr/bin', cache: 'false' }
const IMAGE_OPTS = `image=${IMAGE}\nnetwork=host`

interface Node {
  name: string
  endpoint: string
  status: string
  buildkit: string
  platforms: string[]
  remote: boolean
}

let snap: Snapshot
let ctx: string
let ports: number[] = []
let downPort = 0

/** A TCP port nothing listens on now. */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer()
    s.once('error', reject)
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port
      s.close(() => resolve(port))
    })
  })
}

function sleep(ms: number): Promise<void> {
  return new Promise(resolve => setTimeout(resolve, ms))
}

/** A buildkitd answering on tcp://127.0.0.1:port (asked with its own buildctl, through docker exec). */
function answers(container: string, port: number): boolean {
  return docker('exec', container, 'buildctl', '--addr', `tcp://127.0.0.1:${port}`, 'debug', 'workers').status === 0
}

/** No builder by that name, no BuildKit container and no state volume of its first node. */
function nothingLeft(name: string): void {
  expect(docker('buildx', 'inspect', '--', name).status).not.toBe(0)
  expect(docker('ps', '-a', '--filter', `name=^buildx_buildkit_${name}0$`, '--format', '{{.Names}}').stdout.trim()).toBe('')
  expect(docker('volume', 'ls', '--filter', `name=^buildx_buildkit_${name}0_state$`, '--format', '{{.Name}}').stdout.trim()).toBe('')
}

function nodesOf(outputs: Record<string, string>): Node[] {
  return JSON.parse(outputs.nodes) as Node[]
}

/** `docker buildx build` through a builder: FROM scratch, a static busybox per platform, RUN uname -m. */
function build(builder: string, platforms: string): { status: number | null; output: string } {
  const r = spawnSync('docker', ['buildx', 'build', '--builder', builder, '--no-cache', '--progress', 'plain', '--platform', platforms, ctx], {
    encoding: 'utf8',
    timeout: 300000,
  })
  return { status: r.status, output: `${r.stdout}${r.stderr}` }
}

beforeAll(async () => {
  expect(docker('info').status).toBe(0)
  expect(docker('buildx', 'version').stdout).toMatch(/^github\.com\/docker\/buildx 0\.13\.1/)
  if (docker('image', 'inspect', IMAGE).status !== 0) throw new Error(`no ${IMAGE}: run .ci/docker.sh (it runs .ci/buildkit.sh) as root`)
  const reg = spawnSync('curl', ['-fsS', '-o', '/dev/null', 'http://127.0.0.1:5000/v2/buildkit/manifests/test'])
  if (reg.status !== 0) throw new Error(`the local registry does not serve ${PULLED}: run .ci/docker.sh (it runs .ci/registry.sh) as root`)

  // The build context: static busybox for amd64 (from the .deb docker.sh keeps) and arm64.
  ctx = fs.mkdtempSync(path.join(os.tmpdir(), 'buildkit-ctx-'))
  const deb = fs
    .readdirSync(debDir())
    .filter(n => /^busybox-static_.*_amd64\.deb$/.test(n))
    .sort()
    .pop()
  if (!deb) throw new Error(`no busybox-static amd64 .deb in ${debDir()}: run .ci/docker.sh`)
  const x = path.join(ctx, 'x')
  expect(spawnSync('dpkg-deb', ['-x', path.join(debDir(), deb), x]).status).toBe(0)
  fs.copyFileSync(path.join(x, 'bin', 'busybox'), path.join(ctx, 'busybox-amd64'))
  fs.rmSync(x, { recursive: true, force: true })
  fs.copyFileSync(path.join(await rootfs('arm64'), 'bin', 'busybox'), path.join(ctx, 'busybox-arm64'))
  fs.writeFileSync(path.join(ctx, 'Dockerfile'), 'FROM scratch\nARG TARGETARCH\nCOPY busybox-$TARGETARCH /bin/busybox\nRUN ["/bin/busybox", "uname", "-m"]\n')

  // Two remote buildkitd daemons on tcp loopback, as a user would run them elsewhere.
  ports = [await freePort(), await freePort()]
  downPort = await freePort()
  for (const [i, name] of DAEMONS.entries()) {
    const r = docker('run', '-d', '--name', name, '--privileged', '--network', 'host', IMAGE, '--addr', `tcp://127.0.0.1:${ports[i]}`)
    if (r.status !== 0) throw new Error(`cannot start buildkitd ${name}: ${r.stderr}`)
  }
  for (let i = 0; i < 60 && !DAEMONS.every((d, j) => answers(d, ports[j])); i++) await sleep(500)
  for (const [i, d] of DAEMONS.entries()) expect({ d, answers: answers(d, ports[i]) }).toEqual({ d, answers: true })
}, 180000)

afterAll(() => {
  for (const d of DAEMONS) docker('rm', '-f', '-v', d)
  if (ctx) fs.rmSync(ctx, { recursive: true, force: true })
})

beforeEach(() => {
  snap = snapshot()
  for (const n of MINE) if (entryExists(n)) throw new Error(`${n} is registered by someone else; remove it to run these tests`)
})

afterEach(() => {
  if (snap) restore(snap, n => MINE.includes(n))
  docker('buildx', 'rm', '--', BUILDER)
  docker('rm', '-f', '-v', `buildx_buildkit_${BUILDER}0`)
  docker('volume', 'rm', '-f', `buildx_buildkit_${BUILDER}0_state`)
  docker('context', 'rm', '-f', CONTEXT)
})

test('default driver, BuildKit image pulled from a registry: a running node with its version, emulated platforms and only what runs; a real arm64 RUN; post removes builder and container', async () => {
  // What runs on this runner, as the action says without a builder.
  const alone = await runAction({ ...base, buildx: 'false' })
  expect(alone.code).toBe(0)
  const runs = alone.outputs.platforms.split(',')
  restore(snap, n => MINE.includes(n))

  // The image is pulled, as a hosted runner pulls moby/buildkit (the daemon has only its other tag).
  docker('image', 'rm', PULLED)
  expect(docker('image', 'inspect', PULLED).status).not.toBe(0)

  const r = await runAction({ ...base, buildx: 'true', 'builder-name': BUILDER, 'driver-opts': `image=${PULLED}\nnetwork=host` }, { debug: true })
  expect(r.annotations.filter(a => a.kind !== 'notice')).toEqual([])
  expect(r.code).toBe(0)
  // The builder's commands ran the very buildx plugin docker runs (as docker's own plugin list names it), directly.
  const plugins = JSON.parse(docker('info', '--format', '{{json .ClientInfo.Plugins}}').stdout) as { Name: string; Path: string }[]
  const buildxPath = plugins.find(p => p.Name === 'buildx')?.Path
  expect(buildxPath).toBeTruthy()
  expect(r.stdout).toContain(`::debug::running the buildx plugin ${buildxPath} directly for the builder's commands`)
  expect(docker('image', 'inspect', PULLED).status).toBe(0)
  expect(r.outputs.builder).toBe(BUILDER)
  const nodes = nodesOf(r.outputs)
  expect(nodes).toEqual([
    {
      name: `${BUILDER}0`,
      endpoint: 'unix:///var/run/docker.sock',
      status: 'running',
      buildkit: expect.stringMatching(BUILDKIT_VERSION),
      platforms: expect.any(Array),
      remote: false,
    },
  ])
  // BuildKit detected the emulator registered before it started; nothing listed that does not run here
  expect(nodes[0].platforms).toEqual(expect.arrayContaining(['linux/amd64', 'linux/arm64']))
  const platforms = r.outputs.platforms.split(',')
  expect(platforms).toEqual(expect.arrayContaining(['linux/amd64', 'linux/arm64']))
  expect(platforms.filter(p => !runs.includes(p))).toEqual([])
  expect(JSON.parse(r.outputs['platforms-json'])).toEqual(platforms)
  expect(docker('ps', '--filter', `name=^buildx_buildkit_${BUILDER}0$`, '--format', '{{.Image}} {{.Status}}').stdout).toMatch(
    new RegExp(`^${PULLED.replace(/[.]/g, '\\.')} Up `),
  )

  const b = build(BUILDER, 'linux/arm64')
  expect(b.output).toMatch(/^#\d+ [\d.]+ aarch64$/m)
  expect(b.status).toBe(0)

  const post = await runAction(base, { phase: 'post', state: r.stateFile })
  expect(post.code).toBe(0)
  expect(post.stdout).toContain(`Removed builder ${BUILDER}`)
  nothingLeft(BUILDER)
})

test('endpoint: a Docker context for docker-container is where the node runs; an unknown context is one line naming endpoint, the emulators stay', async () => {
  expect(docker('context', 'create', CONTEXT, '--docker', 'host=unix:///var/run/docker.sock').status).toBe(0)
  const r = await runAction({ ...base, buildx: 'true', 'builder-name': BUILDER, endpoint: CONTEXT, 'driver-opts': IMAGE_OPTS })
  expect(r.annotations.filter(a => a.kind !== 'notice')).toEqual([])
  expect(r.code).toBe(0)
  expect(nodesOf(r.outputs)).toEqual([
    {
      name: `${BUILDER}0`,
      endpoint: CONTEXT,
      status: 'running',
      buildkit: expect.stringMatching(BUILDKIT_VERSION),
      platforms: expect.arrayContaining(['linux/arm64']),
      remote: false,
    },
  ])
  const post = await runAction(base, { phase: 'post', state: r.stateFile })
  expect(post.stdout).toContain(`Removed builder ${BUILDER}`)
  nothingLeft(BUILDER)
  restore(snap, n => MINE.includes(n))

  const bad = await runAction({ ...base, buildx: 'true', 'builder-name': BUILDER, endpoint: `${CONTEXT}-missing`, 'driver-opts': IMAGE_OPTS })
  expect(bad.code).toBe(1)
  const errors = bad.annotations.filter(a => a.kind === 'error').map(a => a.message)
  expect(errors).toHaveLength(1)
  expect(errors[0]).toMatch(
    new RegExp(`^endpoint: cannot create builder ${BUILDER} \\(.*${CONTEXT}-missing.*\\); give an existing Docker context \\(docker context ls\\)`),
  )
  expect(errors[0]).toMatch(/\(the emulators were registered and verified, and stay: qemu-aarch64\)$/)
  expect(errors[0]).not.toContain('\n')
  expect(readEntry('qemu-aarch64').flags).toContain('F')
  nothingLeft(BUILDER)
})

test('driver remote at endpoint with a live appended node: both running, the appended one as declared; a two-platform build; post leaves both daemons running', async () => {
  const append = `- name: ${BUILDER}-arm\n  endpoint: tcp://127.0.0.1:${ports[1]}\n  platforms: linux/arm64,linux/riscv64\n`
  const r = await runAction({ ...base, buildx: 'true', 'builder-name': BUILDER, driver: 'remote', endpoint: `tcp://127.0.0.1:${ports[0]}`, append })
  expect(r.annotations.filter(a => a.kind !== 'notice')).toEqual([])
  expect(r.code).toBe(0)
  const nodes = nodesOf(r.outputs)
  expect(nodes.map(n => [n.name, n.endpoint, n.status, n.remote])).toEqual([
    [`${BUILDER}0`, `tcp://127.0.0.1:${ports[0]}`, 'running', true],
    [`${BUILDER}-arm`, `tcp://127.0.0.1:${ports[1]}`, 'running', true],
  ])
  for (const n of nodes) expect(n.buildkit).toMatch(BUILDKIT_VERSION)
  // declared platforms come first and are reported as declared, riscv64 too (no emulator for it here)
  expect(nodes[1].platforms.slice(0, 2)).toEqual(['linux/arm64', 'linux/riscv64'])
  expect(r.outputs.platforms.split(',').slice(0, 2)).toEqual(['linux/arm64', 'linux/riscv64'])
  expect(r.outputs.platforms.split(',')).toContain('linux/amd64')

  const b = build(BUILDER, 'linux/amd64,linux/arm64')
  expect(b.output).toMatch(/^#\d+ [\d.]+ x86_64$/m)
  expect(b.output).toMatch(/^#\d+ [\d.]+ aarch64$/m)
  expect(b.status).toBe(0)

  const post = await runAction(base, { phase: 'post', state: r.stateFile })
  expect(post.code).toBe(0)
  expect(post.stdout).toContain(`Removed builder ${BUILDER}`)
  expect(docker('buildx', 'inspect', '--', BUILDER).status).not.toBe(0)
  for (const [i, d] of DAEMONS.entries()) {
    expect(docker('inspect', '-f', '{{.State.Running}}', d).stdout.trim()).toBe('true')
    expect({ d, answers: answers(d, ports[i]) }).toEqual({ d, answers: true })
  }
})

test('an appended node that is down: a warning under buildx auto, one line naming append under true; emulators stay; the running daemon is left alone', async () => {
  const append = `- name: ${BUILDER}-down\n  endpoint: tcp://127.0.0.1:${downPort}\n  platforms: linux/s390x\n`
  const inputs = { ...base, 'builder-name': BUILDER, driver: 'remote', endpoint: `tcp://127.0.0.1:${ports[0]}`, append }
  const message = `append: node ${BUILDER}-down (tcp://127.0.0.1:${downPort}) of builder ${BUILDER} did not start (context deadline exceeded); start its BuildKit or fix its endpoint, or leave it out of append`

  const auto = await runAction({ ...inputs, buildx: 'auto' })
  expect(auto.code).toBe(0)
  expect(auto.annotations.filter(a => a.kind === 'warning').map(a => a.message)).toEqual([
    `${message}; going on without a builder (buildx: auto), set buildx: true to make this fail the step`,
  ])
  expect(auto.outputs.builder ?? '').toBe('')
  expect(auto.outputs.platforms.split(',')).toContain('linux/arm64')
  expect(readEntry('qemu-aarch64').flags).toContain('F')
  expect(docker('buildx', 'inspect', '--', BUILDER).status).not.toBe(0)
  restore(snap, n => MINE.includes(n))

  const strict = await runAction({ ...inputs, buildx: 'true' })
  expect(strict.code).toBe(1)
  expect(strict.annotations.filter(a => a.kind === 'error').map(a => a.message)).toEqual([
    `${message} (the emulators were registered and verified, and stay: qemu-aarch64)`,
  ])
  expect(readEntry('qemu-aarch64').flags).toContain('F')
  expect(docker('buildx', 'inspect', '--', BUILDER).status).not.toBe(0)
  expect({ answers: answers(DAEMONS[0], ports[0]) }).toEqual({ answers: true })
}, 180000)

test('driver remote without an endpoint is an input error before anything is touched', async () => {
  const r = await runAction({ ...base, buildx: 'true', driver: 'remote' })
  expect(r.code).toBe(1)
  expect(r.annotations.filter(a => a.kind === 'error').map(a => a.message)).toEqual([
    'endpoint: driver remote needs the address of its buildkitd; set endpoint to the address of a running buildkitd such as tcp://127.0.0.1:1234 or unix:///run/buildkit/buildkitd.sock',
  ])
  expect(entryExists('qemu-aarch64')).toBe(false)
})

test('cancelled while the BuildKit container boots: builder, container and state volume are removed', async () => {
  let seen = false
  const r = await runAction(
    { ...base, buildx: 'true', 'builder-name': BUILDER, 'driver-opts': IMAGE_OPTS },
    {
      onSpawn: child =>
        void (async () => {
          // as soon as docker has the node's container: buildkitd is starting in it
          for (let i = 0; i < 600 && child.exitCode === null; i++) {
            if (docker('ps', '-a', '--filter', `name=^buildx_buildkit_${BUILDER}0$`, '--format', '{{.Names}}').stdout.trim()) {
              seen = true
              child.kill('SIGTERM')
              return
            }
            await sleep(50)
          }
        })(),
    },
  )
  expect(seen).toBe(true)
  expect(r.code).toBe(1)
  expect(r.annotations.filter(a => a.kind === 'error').map(a => a.message)).toEqual(['the step was cancelled (SIGTERM)'])
  expect(r.stdout).toContain(`Removed the half-made builder ${BUILDER}`)
  nothingLeft(BUILDER)
})

test('cancelled while buildx creates the builder (after buildx stored it): the builder is removed by its name', async () => {
  // A docker that stores the builder, then takes its time: the step is cancelled in between. The
  // variable docker sets for a plugin it runs makes the action run buildx through docker (this shim).
  const shim = fs.mkdtempSync(path.join(os.tmpdir(), 'docker-shim-'))
  const stored = path.join(shim, 'stored')
  fs.writeFileSync(
    path.join(shim, 'docker'),
    `#!/bin/sh\nif [ "$1 $2" = "buildx create" ]; then /usr/bin/docker "$@"; rc=$?; touch ${stored}; sleep 60; exit $rc; fi\nexec /usr/bin/docker "$@"\n`,
    { mode: 0o755 },
  )
  try {
    const r = await runAction(
      { ...base, buildx: 'true', 'builder-name': BUILDER, 'driver-opts': IMAGE_OPTS },
      {
        env: { PATH: `${shim}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin`, DOCKER_CLI_PLUGIN_ORIGINAL_CLI_COMMAND: '/usr/bin/docker' },
        onSpawn: child =>
          void (async () => {
            for (let i = 0; i < 600 && child.exitCode === null; i++) {
              if (fs.existsSync(stored)) {
                child.kill('SIGTERM')
                return
              }
              await sleep(50)
            }
          })(),
      },
    )
    expect(fs.existsSync(stored)).toBe(true)
    expect(r.code).toBe(1)
    expect(r.annotations.filter(a => a.kind === 'error').map(a => a.message)).toEqual(['the step was cancelled (SIGTERM)'])
    expect(r.stdout).toContain(`Removed the half-made builder ${BUILDER}`)
    nothingLeft(BUILDER)
  } finally {
    fs.rmSync(shim, { recursive: true, force: true })
  }
})

// ---- the builder started beside the emulator steps (startBuilder / finishBuilder / abandonBuilder) ----

/** An entry of this test's own, for riscv64, from Debian's qemu-user-static (F: the builder's container needs no path). */
const RISCV = `qbf-bk-riscv64-${process.pid}`
const RISCV_MAGIC = '7f454c460201010000000000000000000200f300'
const hex = (h: string): string => h.replace(/(..)/g, '\\x$1')

function startOptions(over: Partial<BuilderStartOptions> = {}): BuilderStartOptions {
  return {
    mode: 'true',
    name: BUILDER,
    nameGiven: true,
    driver: 'docker-container',
    endpoint: '',
    driverOpts: ['image=' + IMAGE, 'network=host'],
    buildkitdFlags: '',
    configInline: '',
    use: false,
    append: [],
    tempDir: os.tmpdir(),
    ...over,
  }
}

/** The platforms `docker buildx inspect NAME` lists for the builder's (only) node. */
function inspectPlatforms(name: string): string[] {
  const r = docker('buildx', 'inspect', '--', name)
  expect(r.status).toBe(0)
  const line = r.stdout.split('\n').find(l => l.startsWith('Platforms:'))
  return (line ?? '')
    .replace(/^Platforms:\s*/, '')
    .split(/,\s*/)
    .filter(Boolean)
}

test('a builder booted before an emulator is registered lists it afterwards: BuildKit re-detects when asked for its workers (docker buildx inspect, ls), no restart', async () => {
  // Nothing on this host may give riscv64 already (the proof needs a platform BuildKit could not see at boot).
  const riscv = listEntries().filter(n => {
    try {
      return readEntry(n).magic === RISCV_MAGIC
    } catch {
      return false
    }
  })
  if (riscv.length) throw new Error(`binfmt_misc already has riscv64 entries (${riscv.join(', ')}); this test needs a host without one`)
  expect(fs.existsSync('/usr/bin/qemu-riscv64-static')).toBe(true)

  const log = { info: () => undefined, notice: jest.fn(), warning: jest.fn(), debug: () => undefined }
  const start = startBuilder(startOptions(), new ChildProcessRunner(), log)
  expect(await start.preflight).toBeUndefined()
  await start.settled
  const atBoot = inspectPlatforms(BUILDER)
  expect(atBoot).toContain('linux/amd64')
  expect(atBoot).not.toContain('linux/riscv64')

  registerRaw(`:${RISCV}:M::${hex(RISCV_MAGIC)}:${hex('ffffffffffffff00fffffffffffffffffeffffff')}:/usr/bin/qemu-riscv64-static:F`)
  try {
    expect(readEntry(RISCV).flags).toBe('F')
    // the same container, not restarted: BuildKit ran its platform checks again for inspect
    const started = docker('inspect', '-f', '{{.State.StartedAt}}', `buildx_buildkit_${BUILDER}0`).stdout.trim()
    expect(inspectPlatforms(BUILDER)).toEqual([...atBoot, 'linux/riscv64'])
    const out = await finishBuilder(start, [...atBoot, 'linux/riscv64'], ['linux/riscv64'])
    expect(out.result!.nodes).toEqual([expect.objectContaining({ name: `${BUILDER}0`, status: 'running', buildkit: expect.stringMatching(BUILDKIT_VERSION) })])
    expect(out.result!.platforms).toContain('linux/riscv64')
    expect(out.state).toEqual({ name: BUILDER, created: true, driver: 'docker-container' })
    expect(log.notice).not.toHaveBeenCalled()
    expect(log.warning).not.toHaveBeenCalled()
    expect(docker('inspect', '-f', '{{.State.StartedAt}}', `buildx_buildkit_${BUILDER}0`).stdout.trim()).toBe(started)
  } finally {
    removeEntry(RISCV)
  }
  // BuildKit only adds what it detects: a platform whose emulator went away stays listed until it restarts
  // (which is why the finish holds a local node's platforms against what runs here).
  expect(inspectPlatforms(BUILDER)).toContain('linux/riscv64')
}, 180000)

test('the action: the builder starts beside the emulator steps; when they fail (the download is refused after 0.8 s, while the builder boots), the step fails with one error, the start is stopped and what it made is removed', async () => {
  const server = http.createServer((_req, res) => {
    setTimeout(() => {
      res.writeHead(404)
      res.end()
    }, 800)
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  const url = `http://127.0.0.1:${(server.address() as net.AddressInfo).port}/qemu.tar.gz`
  try {
    const r = await runAction({ ...base, 'qemu-url': url, buildx: 'true', 'builder-name': BUILDER, 'driver-opts': IMAGE_OPTS })
    expect(r.code).toBe(1)
    const errors = r.annotations.filter(a => a.kind === 'error')
    expect(errors).toHaveLength(1)
    expect(errors[0].message).toMatch(/^qemu-url: .*404/)
    // The builder was made while the download waited, and removed when the step failed.
    expect(r.stdout).toContain(`Creating builder ${BUILDER}`)
    expect(r.stdout).toMatch(new RegExp(`Removed the half-made builder ${BUILDER}|Removing builder ${BUILDER}, which this step started`))
    nothingLeft(BUILDER)
    expect(r.state.builder ?? '').toBe('')
    expect(snapshot()).toEqual(snap)
  } finally {
    server.close()
  }
}, 180000)

test('the emulator step failed after the start: abandonBuilder removes the builder, container and state volume it made', async () => {
  const start = startBuilder(startOptions({ mode: 'auto' }), new ChildProcessRunner(), {
    info: () => undefined,
    notice: () => undefined,
    warning: () => undefined,
    debug: () => undefined,
  })
  await start.settled
  expect(docker('ps', '--filter', `name=^buildx_buildkit_${BUILDER}0$`, '--format', '{{.Names}}').stdout.trim()).toBe(`buildx_buildkit_${BUILDER}0`)
  await abandonBuilder(start)
  nothingLeft(BUILDER)
}, 180000)

test('cancelled while the started builder boots (the caller still busy): the start removes what it made; the finish rethrows the cancellation', async () => {
  const cancel = new AbortController()
  const start = startBuilder(
    startOptions({ cancel: cancel.signal }),
    new ChildProcessRunner(cancel.signal),
    { info: () => undefined, notice: () => undefined, warning: () => undefined, debug: () => undefined },
    new ChildProcessRunner(),
  )
  for (let i = 0; i < 600; i++) {
    if (docker('ps', '-a', '--filter', `name=^buildx_buildkit_${BUILDER}0$`, '--format', '{{.Names}}').stdout.trim()) break
    await sleep(50)
  }
  cancel.abort('SIGTERM')
  await start.settled
  await expect(finishBuilder(start, ['linux/amd64'], [])).rejects.toThrow(/cancel/i)
  nothingLeft(BUILDER)
}, 180000)
