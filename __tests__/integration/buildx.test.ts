// The builder step against the real Docker engine and the real buildx plugin (Debian
// trixie's docker-buildx 0.13.1, installed by .ci/buildx.sh; dockerd 20.10 with its
// embedded BuildKit v0.8). Docker Hub is not reachable here, so the docker-container
// driver's default image (moby/buildkit) cannot be pulled: that is the "builder cannot be had"
// case. The same driver against a real BuildKit (built by .ci/buildkit.sh): buildkit.test.ts.
import { spawnSync } from 'child_process'
import * as fs from 'fs'
import * as os from 'os'
import * as path from 'path'
import { ACTION_NODE, actionScript, runAction } from '../support/action'
import { Snapshot, entryExists, readEntry, restore, snapshot } from '../support/binfmt'
import { rootfs, runInChroot } from '../support/fixtures'
import { whenPrinted } from './stand-ins'

const MINE = ['qemu-aarch64', 'qemu-s390x']
const ARM64_IMAGE = 'local/busybox-arm64:test'
const BUILDER = 'qemu-binfmt-itest'
const PROOF_IMAGE = 'local/qemu-buildx-proof:test'

const docker = (...args: string[]) => spawnSync('docker', args, { encoding: 'utf8', timeout: 300000 })

/** No builder by that name and no BuildKit container of it. */
function noBuilderLeft(name: string): void {
  expect(docker('buildx', 'inspect', '--', name).status).not.toBe(0)
  expect(docker('ps', '-a', '--filter', `name=buildx_buildkit_${name}`, '--format', '{{.Names}}').stdout.trim()).toBe('')
}

/** A real `docker buildx build --platform linux/arm64`: FROM scratch, a static arm64 busybox, RUN uname -m. */
async function buildxBuildArm64(): Promise<{ status: number | null; output: string }> {
  const ctx = fs.mkdtempSync(path.join(os.tmpdir(), 'buildx-ctx-'))
  try {
    fs.copyFileSync(path.join(await rootfs('arm64'), 'bin', 'busybox'), path.join(ctx, 'busybox'))
    fs.writeFileSync(path.join(ctx, 'Dockerfile'), 'FROM scratch\nCOPY busybox /bin/busybox\nRUN ["/bin/busybox", "uname", "-m"]\n')
    const r = spawnSync(
      'docker',
      ['buildx', 'build', '--builder', 'default', '--no-cache', '--progress', 'plain', '--platform', 'linux/arm64', '-t', PROOF_IMAGE, ctx],
      { encoding: 'utf8', timeout: 300000 },
    )
    return { status: r.status, output: `${r.stdout}${r.stderr}` }
  } finally {
    fs.rmSync(ctx, { recursive: true, force: true })
    docker('image', 'rm', '-f', PROOF_IMAGE)
  }
}

/**
 * Hides the buildx plugin from the action with an empty tmpfs over the plugin directory, in a
 * mount namespace of its own. No shell in between: sh drops INPUT_QEMU-URL and other names with '-'.
 */
function withoutPluginScript(dir: string): string {
  const inner = path.join(dir, 'no-buildx-inner.js')
  const outer = path.join(dir, 'no-buildx.js')
  fs.writeFileSync(
    inner,
    `require('child_process').execFileSync('mount', ['-t', 'tmpfs', 'none', '/usr/libexec/docker/cli-plugins'])
require(${JSON.stringify(actionScript('main'))})
`,
  )
  fs.writeFileSync(
    outer,
    `const r = require('child_process').spawnSync('unshare', ['--mount', '--propagation', 'private', process.execPath, ${JSON.stringify(inner)}], { stdio: 'inherit' })
process.exit(r.status === null ? 1 : r.status)
`,
  )
  return outer
}

// buildx given explicitly: runAction skips the builder otherwise.
const base = { platforms: 'linux/arm64', 'qemu-url': '/usr/bin', cache: 'false', buildx: 'auto' }
let snap: Snapshot
let scratch: string

beforeAll(() => {
  expect(docker('info').status).toBe(0) // .ci/docker.sh starts dockerd
  const v = docker('buildx', 'version')
  if (v.status !== 0) throw new Error(`the docker buildx plugin is missing: run .ci/docker.sh (it runs .ci/buildx.sh): ${v.stderr}`)
  expect(v.stdout).toMatch(/^github\.com\/docker\/buildx 0\.13\.1/)
  // .ci/buildx.sh fetched it with an apt configuration of its own: the machine's sources stay bookworm
  const sources = ['/etc/apt/sources.list', ...fs.readdirSync('/etc/apt/sources.list.d').map(f => path.join('/etc/apt/sources.list.d', f))]
  for (const f of sources.filter(f => fs.existsSync(f))) expect({ f, trixie: /trixie/.test(fs.readFileSync(f, 'utf8')) }).toEqual({ f, trixie: false })
  expect(docker('image', 'inspect', ARM64_IMAGE).status).toBe(0)
  scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'buildx-itest-'))
})
afterAll(() => fs.rmSync(scratch, { recursive: true, force: true }))
beforeEach(() => {
  snap = snapshot()
  // The proofs need a kernel that cannot run these programs yet; an entry someone else made is not ours to remove.
  for (const n of MINE) if (entryExists(n)) throw new Error(`${n} is registered by someone else; remove it to run these tests`)
})
afterEach(() => {
  restore(snap, n => MINE.includes(n))
  docker('buildx', 'rm', '--', BUILDER)
})

test('integration tests run the bundle under Node 24', async () => {
  expect(spawnSync(ACTION_NODE, ['--version'], { encoding: 'utf8' }).stdout).toMatch(/^v24\./)
  const probe = path.join(scratch, 'version.js')
  fs.writeFileSync(probe, 'console.log(`node ${process.version}`)\n')
  const r = await runAction({}, { script: probe })
  expect(r.stdout).toMatch(/^node v24\./)
})

test('driver: docker: builder default lists the emulated platform; a real buildx build for linux/arm64 prints aarch64', async () => {
  const before = await buildxBuildArm64()
  expect(before.status).not.toBe(0)
  expect(before.output).toMatch(/exec format error|no match for platform|failed to start|not supported/)

  const r = await runAction({ ...base, driver: 'docker', buildx: 'true' })
  expect(r.code).toBe(0)
  expect(r.annotations.filter(a => a.kind !== 'notice')).toEqual([])
  expect(r.outputs.builder).toBe('default')
  const nodes = JSON.parse(r.outputs.nodes) as { name: string; status: string; platforms: string[]; remote: boolean }[]
  expect(nodes).toEqual([expect.objectContaining({ name: 'default', status: 'running', remote: false })])
  expect(nodes[0].platforms).toEqual(expect.arrayContaining(['linux/amd64', 'linux/arm64']))
  expect(r.outputs.platforms.split(',')).toEqual(expect.arrayContaining(['linux/amd64', 'linux/arm64']))
  // native CPU levels are not emulated platforms the builder "misses"
  expect(r.stdout).not.toMatch(/does not list linux\/amd64/)
  expect(r.summary).toContain('checked on this runner')
  expect(r.state.builder).toBe(JSON.stringify({ name: 'default', created: false, driver: 'docker' }))

  const after = await buildxBuildArm64()
  expect(after.output).toMatch(/^#\d+ [\d.]+ aarch64$/m)
  expect(after.status).toBe(0)

  // the daemon's builder is not ours: post leaves it
  const post = await runAction(base, { phase: 'post', state: r.stateFile })
  expect(post.code).toBe(0)
  expect(post.stdout).toContain('Leaving builder default in place')
  expect(docker('buildx', 'inspect', 'default').status).toBe(0)
})

test("driver: docker: platforms never lists what dockerd's BuildKit still lists from an emulator that is gone", async () => {
  // Make dockerd's BuildKit see arm64, then take the emulator away again.
  const first = await runAction({ ...base, driver: 'docker' })
  expect(first.code).toBe(0)
  restore(snap, n => MINE.includes(n))
  expect(entryExists('qemu-aarch64')).toBe(false)

  const r = await runAction({ ...base, platforms: 'linux/s390x', driver: 'docker' })
  expect(r.code).toBe(0)
  const platforms = r.outputs.platforms.split(',')
  expect(platforms).toContain('linux/s390x')
  expect(platforms).not.toContain('linux/arm64')
  const inspect = docker('buildx', 'inspect', 'default').stdout
  if (/linux\/arm64/.test(inspect)) {
    // the daemon's list is stale: the action says so and leaves it out (whether it is stale is up to the daemon)
    /* eslint-disable jest/no-conditional-expect */
    expect(r.stdout).toMatch(/node default lists .*linux\/arm64.*, which (does|do) not run on this runner/)
    expect(r.summary).toContain('listed but not running here')
    /* eslint-enable jest/no-conditional-expect */
  }
  expect(JSON.parse(r.outputs.nodes)[0].platforms).not.toContain('linux/arm64')
})

test('buildx: auto, default driver, BuildKit image cannot be pulled: a warning with the reason and mirror hint; emulators stay and run; no builder left', async () => {
  const r = await runAction({ ...base, 'builder-name': BUILDER })
  expect(r.code).toBe(0)
  const warnings = r.annotations.filter(a => a.kind === 'warning')
  expect(warnings).toHaveLength(1)
  expect(warnings[0].message).toMatch(
    new RegExp(
      `^builder ${BUILDER} could not start: the BuildKit image could not be pulled \\(.+\\); use a mirror with driver-opts: image=<mirror>/moby/buildkit:buildx-stable-1`,
    ),
  )
  expect(warnings[0].message).toMatch(/going on without a builder \(buildx: auto\)/)
  // a transient-looking failure was tried once more
  expect(r.stdout).toMatch(new RegExp(`Builder ${BUILDER} did not start \\(.*\\); trying once more`))
  expect(r.outputs.builder ?? '').toBe('')
  expect(r.outputs.nodes ?? '').toBe('')
  expect(r.outputs.platforms.split(',')).toEqual(expect.arrayContaining(['linux/amd64', 'linux/arm64']))
  expect(r.state.builder ?? '').toBe('')
  noBuilderLeft(BUILDER)

  expect(readEntry('qemu-aarch64').flags).toContain('F')
  const run = runInChroot(await rootfs('arm64'), ['/bin/uname', '-m'])
  expect(run.stdout.trim()).toBe('aarch64')
  const container = docker('run', '--rm', '--network', 'none', '--platform', 'linux/arm64', ARM64_IMAGE, 'uname', '-m')
  expect(container.stdout.trim()).toBe('aarch64')
})

test('buildx: true, BuildKit image cannot be pulled: fails with one line naming the builder; the verified emulators stay and say so; no builder left', async () => {
  const r = await runAction({ ...base, buildx: 'true', 'builder-name': BUILDER, 'driver-opts': 'image=127.0.0.1:9/moby/buildkit:unpullable' })
  expect(r.code).toBe(1)
  const errors = r.annotations.filter(a => a.kind === 'error')
  expect(errors).toHaveLength(1)
  expect(errors[0].message).toMatch(
    new RegExp(
      `^driver-opts: builder ${BUILDER} could not start: its BuildKit image 127\\.0\\.0\\.1:9/moby/buildkit:unpullable \\(driver-opts image=\\) could not be pulled \\(.+\\)`,
    ),
  )
  expect(errors[0].message).not.toContain('\n')
  // Once verified, emulators stay (another job may already use them): the error says so.
  expect(errors[0].message).toMatch(/\(the emulators were registered and verified, and stay: qemu-aarch64\)$/)
  expect(r.stdout).toContain(`Removed the half-made builder ${BUILDER}`)
  noBuilderLeft(BUILDER)
  expect(entryExists('qemu-aarch64')).toBe(true)
})

test('cancelled while the builder boots (in the pause before its retry): the half-made builder is removed within the time the step has', async () => {
  const r = await runAction(
    { ...base, buildx: 'true', 'builder-name': BUILDER },
    { onSpawn: child => void whenPrinted(child, new RegExp(`Builder ${BUILDER} did not start .*; trying once more`)).then(() => child.kill('SIGTERM')) },
  )
  noBuilderLeft(BUILDER)
  expect(r.code).toBe(1)
  expect(r.annotations.filter(a => a.kind === 'error').map(a => a.message)).toEqual(['the step was cancelled (SIGTERM)'])
  expect(r.stdout).toContain(`Removed the half-made builder ${BUILDER}`)
})

test("an append endpoint starting with '-' is an input error before anything is touched", async () => {
  const r = await runAction({ ...base, buildx: 'true', append: '- endpoint: --help\n' })
  expect(r.code).toBe(1)
  expect(r.annotations.filter(a => a.kind === 'error').map(a => a.message)).toEqual([
    "append: item 1: endpoint '--help' starts with '-'; give a docker context name or an address such as tcp://host:1234",
  ])
  expect(entryExists('qemu-aarch64')).toBe(false)
})

test('buildx: auto without the plugin: a notice, no builder, core platforms', async () => {
  const r = await runAction(base, { script: withoutPluginScript(scratch) })
  expect(r.code).toBe(0)
  expect(r.stdout).toMatch(/^::notice::docker buildx is not available \(docker: unknown command: docker buildx\); skipping the builder/m)
  expect(r.outputs.builder ?? '').toBe('')
  expect(r.outputs.platforms.split(',')).toEqual(expect.arrayContaining(['linux/amd64', 'linux/arm64']))
  expect(readEntry('qemu-aarch64').flags).toContain('F')
})

test('buildx: true without the plugin fails with one line naming the input, and leaves nothing registered', async () => {
  const r = await runAction({ ...base, buildx: 'true' }, { script: withoutPluginScript(scratch) })
  expect(r.code).toBe(1)
  const errors = r.annotations.filter(a => a.kind === 'error')
  expect(errors).toHaveLength(1)
  expect(errors[0].message).toMatch(/^buildx: docker buildx is not available \(.*\); install the Docker buildx plugin/)
  expect(entryExists('qemu-aarch64')).toBe(false)
})

test('buildx: false does not look for buildx at all', async () => {
  const r = await runAction({ ...base, buildx: 'false' }, { debug: true })
  expect(r.code).toBe(0)
  expect(r.stdout).not.toMatch(/docker buildx|Using buildx/)
  expect(r.outputs.builder ?? '').toBe('')
})
