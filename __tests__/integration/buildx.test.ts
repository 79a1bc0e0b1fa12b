// The builder step against the real Docker engine. The buildx plugin cannot be
// installed on these machines: the test that needs it says so and is skipped,
// while `buildx: auto`/`true`/`driver: docker` without the plugin, and the image
// build after the action, run for real.
import { spawnSync } from 'child_process'
import * as fs from 'fs'
import * as os from 'os'
import * as path from 'path'
import { runAction } from '../support/action'
import { Snapshot, entryExists, readEntry, restore, snapshot } from '../support/binfmt'

const MINE = ['qemu-aarch64']
const ARM64_IMAGE = 'local/busybox-arm64:test'

const docker = (...args: string[]) => spawnSync('docker', args, { encoding: 'utf8', timeout: 120000 })
const hasBuildx = docker('buildx', 'version').status === 0

function dockerBuildArm64(): { status: number | null; output: string } {
  const ctx = fs.mkdtempSync(path.join(os.tmpdir(), 'buildctx-'))
  fs.writeFileSync(path.join(ctx, 'Dockerfile'), `FROM ${ARM64_IMAGE}\nRUN uname -m > /arch && cat /arch\n`)
  const r = spawnSync('docker', ['build', '--no-cache', '--platform', 'linux/arm64', '-t', 'local/qemu-build-proof:test', ctx], {
    encoding: 'utf8',
    env: { ...process.env, DOCKER_BUILDKIT: '0' },
    timeout: 300000,
  })
  fs.rmSync(ctx, { recursive: true, force: true })
  return { status: r.status, output: `${r.stdout}${r.stderr}` }
}

const base = { platforms: 'linux/arm64', 'qemu-url': '/usr/bin', cache: 'false' }
let snap: Snapshot

beforeAll(() => {
  expect(docker('info').status).toBe(0) // .ci/docker.sh starts dockerd
  expect(docker('image', 'inspect', ARM64_IMAGE).status).toBe(0)
})
beforeEach(() => {
  snap = snapshot()
  // The build proof needs a kernel that cannot run arm64 programs yet; an entry
  // someone else made is not ours to remove.
  for (const n of MINE) if (entryExists(n)) throw new Error(`${n} is registered by someone else; remove it to run these tests`)
})
afterEach(() => restore(snap, n => MINE.includes(n)))

test('buildx: auto without the plugin: a notice, no builder, core platforms; then a foreign image builds', async () => {
  expect(hasBuildx).toBe(false)
  const before = dockerBuildArm64()
  expect(before.status).not.toBe(0)
  expect(before.output).toMatch(/exec format error/)

  const r = await runAction(base)
  expect(r.code).toBe(0)
  expect(r.stdout).toMatch(/^::notice::docker buildx is not available \(.*\); skipping the builder/m)
  expect(r.outputs.builder ?? '').toBe('')
  expect(r.outputs.platforms.split(',')).toEqual(expect.arrayContaining(['linux/amd64', 'linux/arm64']))
  expect(r.state.builder ?? '').toBe('')
  expect(readEntry('qemu-aarch64').flags).toContain('F')

  const after = dockerBuildArm64()
  expect(after.output).toContain('aarch64')
  expect(after.status).toBe(0)

  const post = await runAction(base, { phase: 'post', state: r.stateFile })
  expect(post.code).toBe(0)
  expect(post.annotations.filter(a => a.kind === 'warning')).toEqual([])
})

test('buildx: true without the plugin fails with one line naming the input, and leaves nothing registered', async () => {
  const r = await runAction({ ...base, buildx: 'true' })
  expect(r.code).toBe(1)
  const errors = r.annotations.filter(a => a.kind === 'error')
  expect(errors).toHaveLength(1)
  expect(errors[0].message).toMatch(/^buildx: docker buildx is not available \(.*\); install the Docker buildx plugin/)
  expect(entryExists('qemu-aarch64')).toBe(false)
})

test('driver: docker with buildx: auto and no plugin behaves as auto: registered, no builder', async () => {
  const r = await runAction({ ...base, driver: 'docker' })
  expect(r.code).toBe(0)
  expect(r.outputs.builder ?? '').toBe('')
  expect(r.outputs.method).toBe('direct')
  expect(entryExists('qemu-aarch64')).toBe(true)
})

test('buildx: false does not look for buildx at all', async () => {
  const r = await runAction({ ...base, buildx: 'false' })
  expect(r.code).toBe(0)
  expect(r.stdout).not.toMatch(/docker buildx is not available/)
  expect(r.outputs.builder ?? '').toBe('')
})

// Runs only where the plugin exists; here it is reported as skipped.
;(hasBuildx ? test : test.skip)('real buildx: builder created after registration lists linux/arm64; post removes it', async () => {
  const r = await runAction({ ...base, buildx: 'true', 'builder-name': 'qemu-binfmt-itest' })
  expect(r.code).toBe(0)
  expect(r.outputs.builder).toBe('qemu-binfmt-itest')
  expect(r.outputs.platforms.split(',')).toContain('linux/arm64')
  expect(JSON.parse(r.outputs.nodes)[0].platforms).toContain('linux/arm64')
  const post = await runAction(base, { phase: 'post', state: r.stateFile })
  expect(post.code).toBe(0)
  expect(docker('buildx', 'inspect', 'qemu-binfmt-itest').status).not.toBe(0)
})

if (!hasBuildx) {
  // eslint-disable-next-line no-console
  console.warn('SKIPPED: the real docker buildx test: the buildx plugin is not installed on this machine')
}
