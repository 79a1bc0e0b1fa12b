import * as fs from 'fs'
import * as os from 'os'
import * as path from 'path'
import { ActionError } from '../../../src/errors'
import { CancelledError, ProcessRunner, RunOptions, RunResult, errorLine } from '../../../src/process'
import { BuilderStartOptions, abandonBuilder, cleanupBuilder, finishBuilder, startBuilder } from '../../../src/buildx/builder'
import { BuilderOptions, BuilderResult, BuilderState } from '../../../src/buildx/types'

/** The builder step as the engine runs it when nothing overlaps: start, then finish at once. */
async function setupBuilder(
  opts: BuilderOptions,
  runner: ProcessRunner,
  log: Parameters<typeof startBuilder>[2],
  removal: ProcessRunner = runner,
): Promise<{ result?: BuilderResult; state?: BuilderState }> {
  const { platforms, emulated, ...startOpts } = opts
  const { result, state } = await finishBuilder(startBuilder(startOpts, runner, log, removal), platforms, emulated)
  return { ...(result ? { result } : {}), ...(state ? { state } : {}) }
}

const transcript = (name: string): string => fs.readFileSync(path.join(__dirname, 'transcripts', name), 'utf8')

type Reply = Partial<RunResult> | Error | ((options?: RunOptions) => Partial<RunResult>)

/** Answers `docker <args>` from a script keyed by the joined args; records every call; unknown commands fail the test. */
class FakeRunner implements ProcessRunner {
  readonly calls: string[][] = []
  readonly options: (RunOptions | undefined)[] = []
  private readonly script = new Map<string, Reply[]>()

  on(args: string, ...replies: Reply[]): this {
    this.script.set(args, replies)
    return this
  }

  async run(command: string, args: readonly string[], options?: RunOptions): Promise<RunResult> {
    expect(command).toBe('docker')
    this.calls.push([...args])
    this.options.push(options)
    const key = args.join(' ')
    const replies = this.script.get(key)
    if (!replies || replies.length === 0) throw new Error(`unexpected command: docker ${key}`)
    const reply = replies.length > 1 ? replies.shift()! : replies[0]
    if (reply instanceof Error) throw reply
    const r = typeof reply === 'function' ? reply(options) : reply
    return { code: 0, signal: null, stdout: '', stderr: '', ...r }
  }

  commands(): string[] {
    return this.calls.map(c => c.join(' '))
  }
}

class Log {
  readonly info: string[] = []
  readonly notice: string[] = []
  readonly debug: string[] = []
  readonly warning: string[] = []
  readonly sink = {
    info: (s: string) => this.info.push(s),
    notice: (s: string) => this.notice.push(s),
    debug: (s: string) => this.debug.push(s),
    warning: (s: string) => this.warning.push(s),
  }
}

const VERSION = { stdout: transcript('version.stdout.txt') }
const NOT_FOUND = { code: 1, stderr: transcript('inspect-not-found.stderr.txt') }
const BOOT_OK = { stdout: transcript('doc-inspect-container-running.txt'), stderr: transcript('bootstrap-container-ok.stderr.txt') }
const PULL_FAILED = { code: 1, stderr: transcript('bootstrap-pull-failed.stderr.txt') }
const MISSING = { code: 1, stderr: transcript('buildx-missing.stderr.txt') }
// buildx's answer to `inspect NAME` for a builder it has stored (one whose boot failed: create --bootstrap keeps it)
const STORED = { stdout: transcript('inspect-container-inactive.txt') }
// what this runner runs: native x86-64 (with its CPU levels) and verified arm64/arm emulators
const NATIVE = ['linux/amd64', 'linux/amd64/v2', 'linux/amd64/v3', 'linux/amd64/v4', 'linux/386']
const EMULATED = ['linux/arm64', 'linux/riscv64', 'linux/arm/v7', 'linux/arm/v6']
// a half-made builder goes, then what a cancelled docker may have left of its first node by name
const REMOVED = [
  'buildx rm -- qemu-builder',
  'rm --force --volumes -- buildx_buildkit_qemu-builder0',
  'volume rm --force -- buildx_buildkit_qemu-builder0_state',
]
const multi = (name: string): string => transcript('inspect-multi-node.txt').replace(/qemu-cap/g, name)
const multiJson = (name: string): string => transcript('ls-json-multi.json').replace(/qemu-cap/g, name)

let tempDir: string
beforeEach(() => {
  tempDir = fs.mkdtempSync(path.join(os.tmpdir(), 'buildx-test-'))
})
afterEach(() => {
  fs.rmSync(tempDir, { recursive: true, force: true })
})

function options(over: Partial<BuilderOptions> = {}): BuilderOptions {
  return {
    mode: 'auto',
    name: 'qemu-builder',
    nameGiven: true,
    driver: 'docker-container',
    endpoint: '',
    driverOpts: [],
    buildkitdFlags: '',
    configInline: '',
    use: true,
    append: [],
    platforms: [...NATIVE, ...EMULATED],
    emulated: EMULATED,
    tempDir,
    retryDelayMs: 1,
    ...over,
  }
}

async function rejection(p: Promise<unknown>): Promise<Error> {
  try {
    await p
  } catch (e) {
    return e as Error
  }
  throw new Error('expected a rejection')
}

describe('setupBuilder', () => {
  test("mode 'false' runs nothing", async () => {
    const runner = new FakeRunner()
    expect(await setupBuilder(options({ mode: 'false' }), runner, new Log().sink)).toEqual({})
    expect(runner.calls).toEqual([])
  })

  test('creates, appends (endpoint after --), boots and reads state with ls --format json', async () => {
    let config = ''
    const runner = new FakeRunner()
      .on('buildx version', VERSION)
      .on('buildx inspect -- qemu-builder', NOT_FOUND)
      .on(
        `buildx create --name qemu-builder --node qemu-builder0 --driver docker-container --driver-opt network=host --buildkitd-flags --allow-insecure-entitlement=network.host --config ${tempDir}/buildkitd-qemu-builder.toml --use`,
        () => {
          config = fs.readFileSync(path.join(tempDir, 'buildkitd-qemu-builder.toml'), 'utf8')
          return { stdout: 'qemu-builder\n' }
        },
      )
      .on(
        'buildx create --append --name qemu-builder --node arm64-node --platform linux/arm64,linux/arm/v7 --driver-opt env.BUILDKIT_STEP_LOG_MAX_SIZE=10485760 -- sqb-same',
        { stdout: 'qemu-builder\n' },
      )
      .on('buildx inspect --bootstrap --builder qemu-builder', { stdout: multi('qemu-builder'), stderr: transcript('bootstrap-container-ok.stderr.txt') })
      .on('buildx ls --format json', { stdout: multiJson('qemu-builder') })
    const log = new Log()
    const out = await setupBuilder(
      options({
        driverOpts: ['network=host'],
        buildkitdFlags: '--allow-insecure-entitlement=network.host',
        configInline: '[worker.oci]\n  max-parallelism = 4\n',
        append: [
          { name: 'arm64-node', endpoint: 'sqb-same', platforms: ['linux/arm64', 'linux/arm/v7'], driverOpts: ['env.BUILDKIT_STEP_LOG_MAX_SIZE=10485760'] },
        ],
        platforms: [...NATIVE, 'linux/arm64'],
        emulated: ['linux/arm64'],
      }),
      runner,
      log.sink,
    )
    expect(runner.commands()).toEqual([
      'buildx inspect -- qemu-builder',
      'buildx version',
      expect.stringMatching(/^buildx create --name qemu-builder /),
      expect.stringMatching(/^buildx create --append /),
      'buildx inspect --bootstrap --builder qemu-builder',
      'buildx ls --format json',
    ])
    expect(config).toBe('[worker.oci]\n  max-parallelism = 4\n')
    // buildx keeps its own copy of the config: ours is gone
    expect(fs.readdirSync(tempDir)).toEqual([])
    expect(out.state).toEqual({ name: 'qemu-builder', created: true, driver: 'docker-container' })
    expect(out.result!.created).toBe(true)
    expect(out.result!.nodes.map(n => [n.name, n.remote])).toEqual([
      ['qemu-builder0', false],
      ['arm64-node', true],
    ])
    // the appended node's linux/arm/v7 is not checked here: reported as it declares itself
    expect(out.result!.platforms).toEqual(['linux/amd64', 'linux/arm64', 'linux/arm/v7'])
    expect(log.notice).toEqual([expect.stringMatching(/node qemu-builder0 is inactive/), expect.stringMatching(/node arm64-node is inactive/)])
    expect(log.info).toContain('Using buildx 0.13.1+ds1 0.13.1+ds1-3')
    // bootstrap is given a long timeout; the quick reads a short one
    expect(runner.options[4]?.timeoutMs).toBeGreaterThan(runner.options[5]!.timeoutMs!)
  })

  test('minimal create: no config file, no --use, no existence check for a generated name, booted by create; ls json gives the platforms', async () => {
    const runner = new FakeRunner()
      .on('buildx version', VERSION)
      .on('buildx inspect -- gen-1234', NOT_FOUND)
      .on('buildx create --name gen-1234 --node gen-12340 --driver docker-container --bootstrap', { stdout: 'gen-1234\n' })
      .on('buildx ls --format json', { stdout: transcript('doc-ls-json-single.json').replace(/qemu-builder/g, 'gen-1234') })
    const log = new Log()
    const out = await setupBuilder(
      options({ name: 'gen-1234', nameGiven: false, use: false, platforms: [...NATIVE.slice(0, 4), ...EMULATED], emulated: EMULATED }),
      runner,
      log.sink,
    )
    // the node lists 13 platforms; linux/386 (not native here) and 5 unverified emulated ones are left out
    expect(out.result!.platforms).toEqual(['linux/amd64', 'linux/amd64/v2', 'linux/amd64/v3', 'linux/arm64', 'linux/riscv64', 'linux/arm/v7', 'linux/arm/v6'])
    expect(out.result!.nodes[0].notRunning).toEqual(['linux/ppc64le', 'linux/s390x', 'linux/386', 'linux/mips64le', 'linux/mips64', 'linux/loong64'])
    expect(out.result!.nodes[0].buildkit).toBe('v0.20.1')
    // a generated name is new: no inspect to ask whether it exists; nothing to append: create boots it
    expect(runner.commands()).toEqual([
      'buildx create --name gen-1234 --node gen-12340 --driver docker-container --bootstrap',
      'buildx version',
      'buildx ls --format json',
    ])
    expect(log.info).toContain(
      'Builder gen-1234: node gen-12340 lists linux/ppc64le, linux/s390x, linux/386, linux/mips64le, linux/mips64, linux/loong64, which do not run on this runner (no verified emulator); left out of platforms',
    )
    expect(log.notice).toEqual([])
  })

  test('ls --format json unknown to this buildx: falls back to inspect NAME', async () => {
    const runner = new FakeRunner()
      .on('buildx version', { stdout: 'github.com/docker/buildx v0.11.2 9872040b6626fb7d87ef7296fd5b832e8cc2ad17\n' })
      .on('buildx inspect -- qemu-builder', NOT_FOUND, { stdout: transcript('doc-inspect-old-keys.txt') })
      .on('buildx create --name qemu-builder --node qemu-builder0 --driver docker-container --use --bootstrap', { stdout: 'qemu-builder\n' })
      .on('buildx ls --format json', { code: 1, stderr: transcript('doc-ls-unknown-flag.stderr.txt') })
    const log = new Log()
    const out = await setupBuilder(options(), runner, log.sink)
    expect(runner.commands().slice(-2)).toEqual(['buildx ls --format json', 'buildx inspect -- qemu-builder'])
    expect(out.result!.nodes[0].buildkit).toBe('v0.11.6')
    expect(out.result!.platforms).toContain('linux/riscv64')
    expect(log.debug.join('\n')).toMatch(/unknown flag: --format/)
  })

  test('ls json without our builder and inspect failing: uses what the bootstrap printed', async () => {
    // a reused builder: booted with inspect --bootstrap, which prints it
    const runner = new FakeRunner()
      .on('buildx version', VERSION)
      .on('buildx inspect -- qemu-builder', STORED, NOT_FOUND)
      .on('buildx inspect --bootstrap --builder qemu-builder', { stdout: transcript('doc-inspect-buildkit-key.txt') })
      .on('buildx ls --format json', { stdout: transcript('ls-json-default.json') })
    const out = await setupBuilder(options({ use: false, platforms: [], emulated: [] }), runner, new Log().sink)
    expect(out.result!.nodes[0].name).toBe('elated_tesla0')
    expect(out.result!.platforms).toEqual(['linux/arm64', 'linux/arm/v7', 'linux/arm/v6'])
  })

  test('user-set (*) platforms from the bootstrap text are kept when ls json has the same node', async () => {
    const runner = new FakeRunner()
      .on('buildx version', VERSION)
      .on('buildx inspect -- qemu-cap', NOT_FOUND)
      .on('buildx create --name qemu-cap --node qemu-cap0 --driver docker-container --use', {})
      .on('buildx create --append --name qemu-cap --node arm64-node -- sqb-same', {})
      .on('buildx inspect --bootstrap --builder qemu-cap', { stdout: transcript('inspect-multi-node.txt') })
      .on('buildx ls --format json', { stdout: transcript('ls-json-multi.json') })
    const out = await setupBuilder(
      options({ name: 'qemu-cap', append: [{ name: 'arm64-node', endpoint: 'sqb-same', platforms: [], driverOpts: [] }] }),
      runner,
      new Log().sink,
    )
    expect(out.result!.nodes[1].preferred).toEqual(['linux/arm64', 'linux/arm/v7'])
    expect(out.result!.platforms).toEqual(['linux/amd64', 'linux/arm64', 'linux/arm/v7'])
  })

  test('an existing builder is reused as it is: no create, re-bootstrapped, created=false', async () => {
    const runner = new FakeRunner()
      .on('buildx version', VERSION)
      .on('buildx inspect -- qemu-builder', { stdout: transcript('inspect-container-inactive.txt') })
      .on('buildx inspect --bootstrap --builder qemu-builder', BOOT_OK)
      .on('buildx use -- qemu-builder', {})
      .on('buildx ls --format json', { stdout: transcript('doc-ls-json-single.json') })
    const log = new Log()
    const out = await setupBuilder(
      options({ driverOpts: ['image=mirror/moby/buildkit:buildx-stable-1'], append: [{ endpoint: 'x', platforms: [], driverOpts: [] }] }),
      runner,
      log.sink,
    )
    expect(runner.commands()).toEqual([
      'buildx inspect -- qemu-builder',
      'buildx version',
      'buildx inspect --bootstrap --builder qemu-builder',
      'buildx use -- qemu-builder',
      'buildx ls --format json',
    ])
    expect(out.state).toEqual({ name: 'qemu-builder', created: false, driver: 'docker-container' })
    expect(out.result!.created).toBe(false)
    expect(log.notice).toEqual([
      'builder-name: builder qemu-builder already exists, so driver-opts, append are not applied to it; choose another builder-name to get a builder with these settings',
    ])
  })

  test('a reused builder that misses emulated platforms gets a notice naming only emulated ones', async () => {
    const runner = new FakeRunner()
      .on('buildx version', VERSION)
      .on('buildx inspect -- qemu-builder', { stdout: transcript('doc-inspect-buildkit-key.txt') })
      .on('buildx inspect --bootstrap --builder qemu-builder', { stdout: transcript('doc-inspect-buildkit-key.txt') })
      .on('buildx ls --format json', { code: 1, stderr: 'unknown flag: --format' })
    const log = new Log()
    await setupBuilder(
      options({
        use: false,
        driver: 'kubernetes',
        platforms: [...NATIVE, 'linux/arm64', 'linux/s390x'],
        emulated: ['linux/arm64', 'linux/s390x', 'linux/arm64/v8'],
      }),
      runner,
      log.sink,
    )
    expect(log.notice).toEqual([
      'builder-name: builder qemu-builder already exists, so driver (kubernetes) is not applied to it; choose another builder-name to get a builder with these settings',
      expect.stringMatching(
        /^Builder qemu-builder does not list linux\/s390x, which the registered emulators provide; it was probably started before they were registered: restart it \(docker buildx stop qemu-builder\)/,
      ),
    ])
  })

  test("driver 'docker': creates nothing; native CPU levels are not 'missing'; what does not run here is left out", async () => {
    const runner = new FakeRunner().on('buildx version', VERSION).on('buildx inspect', { stdout: transcript('inspect-docker-default.txt') })
    const log = new Log()
    // dockerd's BuildKit lists linux/arm64 (an emulator registered when it started), which is not verified this run
    const out = await setupBuilder(
      options({ driver: 'docker', driverOpts: ['network=host'], platforms: [...NATIVE, 'linux/riscv64'], emulated: [] }),
      runner,
      log.sink,
    )
    expect(runner.commands()).toEqual(['buildx version', 'buildx inspect'])
    expect(out.state).toEqual({ name: 'default', created: false, driver: 'docker' })
    expect(out.result).toMatchObject({ name: 'default', driver: 'docker', created: false })
    expect(out.result!.platforms).toEqual(['linux/amd64', 'linux/386'])
    expect(out.result!.nodes[0]).toMatchObject({ remote: false, platforms: ['linux/amd64', 'linux/386'], notRunning: ['linux/arm64'] })
    // amd64/v2..v4 run natively: no notice claims the builder misses them
    expect(log.notice).toEqual(["driver: docker uses the Docker daemon's own builder, so driver-opts is not applied"])
  })

  test("driver 'docker' with a verified emulator it lists: kept, no notice", async () => {
    const runner = new FakeRunner().on('buildx version', VERSION).on('buildx inspect', { stdout: transcript('inspect-docker-default.txt') })
    const log = new Log()
    const out = await setupBuilder(options({ driver: 'docker', platforms: [...NATIVE, 'linux/arm64'], emulated: ['linux/arm64'] }), runner, log.sink)
    expect(out.result!.platforms).toEqual(['linux/amd64', 'linux/386', 'linux/arm64'])
    expect(out.result!.nodes[0].notRunning).toBeUndefined()
    expect(log.notice).toEqual([])
  })

  test("driver 'docker' when inspect fails: ActionError naming driver under true, a warning under auto", async () => {
    const down = { code: 1, stderr: 'ERROR: Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?\n' }
    const runner = (): FakeRunner => new FakeRunner().on('buildx version', VERSION).on('buildx inspect', down)
    const e = await rejection(setupBuilder(options({ mode: 'true', driver: 'docker' }), runner(), new Log().sink))
    expect(e).toBeInstanceOf(ActionError)
    expect(e.message).toMatch(/^driver: cannot inspect the current docker builder \(Cannot connect to the Docker daemon/)
    const log = new Log()
    expect(await setupBuilder(options({ driver: 'docker' }), runner(), log.sink)).toEqual({})
    expect(log.warning).toEqual([expect.stringMatching(/^driver: cannot inspect the current docker builder .*; going on without a builder \(buildx: auto\)/)])
  })

  test("mode 'auto' without the plugin: one notice about the plugin, whatever the builder's first commands (run beside the version) said", async () => {
    const runner = new FakeRunner()
      .on('buildx version', MISSING)
      .on('buildx inspect -- qemu-builder', MISSING)
      .on('buildx create --name qemu-builder --node qemu-builder0 --driver docker-container --use --bootstrap', MISSING)
    const log = new Log()
    expect(await setupBuilder(options({ mode: 'auto' }), runner, log.sink)).toEqual({})
    // buildx could not say whether the named builder exists: nothing created, nothing removed
    expect(runner.commands()).toEqual(['buildx inspect -- qemu-builder', 'buildx version'])
    expect(log.warning).toEqual([])
    expect(log.notice).toEqual([
      'docker buildx is not available (docker: unknown command: docker buildx); skipping the builder. Set buildx: false to silence this',
    ])
  })

  test("mode 'auto' without the plugin and a generated name: the create that ran beside the version says nothing", async () => {
    const runner = new FakeRunner()
      .on('buildx version', MISSING)
      .on('buildx create --name gen-1234 --node gen-12340 --driver docker-container --use --bootstrap', MISSING)
      .on('buildx inspect -- gen-1234', NOT_FOUND)
    const log = new Log()
    expect(await setupBuilder(options({ mode: 'auto', name: 'gen-1234', nameGiven: false }), runner, log.sink)).toEqual({})
    expect(runner.commands()).toContain('buildx create --name gen-1234 --node gen-12340 --driver docker-container --use --bootstrap')
    expect(log.info).toEqual([])
    expect(log.notice).toEqual([expect.stringMatching(/^docker buildx is not available \(docker: unknown command: docker buildx\); skipping the builder/)])
  })

  test("mode 'auto' without docker at all", async () => {
    const enoent = Object.assign(new Error('spawn docker ENOENT'), { code: 'ENOENT' })
    const log = new Log()
    expect(await setupBuilder(options(), new FakeRunner().on('buildx version', enoent), log.sink)).toEqual({})
    expect(log.notice[0]).toMatch(/^docker buildx is not available \(docker was not found on PATH\)/)
  })

  test("mode 'true' without the plugin: ActionError naming buildx and the fix", async () => {
    const e = await rejection(setupBuilder(options({ mode: 'true' }), new FakeRunner().on('buildx version', MISSING), new Log().sink))
    expect(e).toBeInstanceOf(ActionError)
    expect(e.message).toBe(
      'buildx: docker buildx is not available (docker: unknown command: docker buildx); install the Docker buildx plugin on the runner, or set buildx: auto to skip the builder where it is missing (or buildx: false)',
    )
    expect(e.message).not.toContain('\n')
  })

  const pullFails = (): FakeRunner =>
    new FakeRunner()
      .on('buildx version', VERSION)
      .on('buildx inspect -- qemu-builder', NOT_FOUND, STORED)
      .on('buildx create --name qemu-builder --node qemu-builder0 --driver docker-container --use --bootstrap', PULL_FAILED)
      .on('buildx inspect --bootstrap --builder qemu-builder', PULL_FAILED)
      .on('buildx rm -- qemu-builder', { stderr: 'qemu-builder removed\n' })
      .on('rm --force --volumes -- buildx_buildkit_qemu-builder0', {})
      .on('volume rm --force -- buildx_buildkit_qemu-builder0_state', {})

  test("mode 'true', BuildKit image cannot be pulled: tried twice, removed, then one line naming the builder, the reason and the mirror", async () => {
    const runner = pullFails()
    const e = await rejection(setupBuilder(options({ mode: 'true' }), runner, new Log().sink))
    // create --bootstrap failed; it had stored the builder, so the boot is what failed: tried once more
    expect(runner.commands().slice(-6)).toEqual([
      'buildx create --name qemu-builder --node qemu-builder0 --driver docker-container --use --bootstrap',
      'buildx inspect -- qemu-builder',
      'buildx inspect --bootstrap --builder qemu-builder',
      ...REMOVED,
    ])
    expect(e).toBeInstanceOf(ActionError)
    expect(e.message).toBe(
      'builder qemu-builder could not start: the BuildKit image could not be pulled (Error response from daemon: Get "https://registry-1.docker.io/v2/": ' +
        'dial tcp: lookup registry-1.docker.io on 10.255.255.53:53: no such host); ' +
        'use a mirror with driver-opts: image=<mirror>/moby/buildkit:buildx-stable-1, or run docker login before this step',
    )
    expect(e.message).not.toMatch(/^driver-opts:/)
  })

  test("mode 'auto', BuildKit image cannot be pulled: a warning with reason and mirror hint, no builder left, no result", async () => {
    const runner = pullFails()
    const log = new Log()
    expect(await setupBuilder(options(), runner, log.sink)).toEqual({})
    expect(runner.commands().slice(-3)).toEqual(REMOVED)
    expect(log.warning).toHaveLength(1)
    expect(log.warning[0]).toMatch(
      /^builder qemu-builder could not start: the BuildKit image could not be pulled \(.*no such host\); use a mirror with driver-opts: image=/,
    )
    expect(log.warning[0]).toMatch(/going on without a builder \(buildx: auto\), set buildx: true to make this fail the step$/)
    expect(log.info).toContain('Removed the half-made builder qemu-builder')
  })

  // Issue 23.7: the step cancelled while buildx create runs; buildx may have stored the builder before it was stopped.
  test('cancelled during buildx create: the builder, named up front, is removed through the runner cancellation does not stop', async () => {
    const runner = new FakeRunner()
      .on('buildx version', VERSION)
      .on('buildx inspect -- qemu-builder', NOT_FOUND)
      .on('buildx create --name qemu-builder --node qemu-builder0 --driver docker-container --use --bootstrap', new CancelledError())
    const removal = new FakeRunner()
      .on('buildx rm -- qemu-builder', {})
      .on('rm --force --volumes -- buildx_buildkit_qemu-builder0', {})
      .on('volume rm --force -- buildx_buildkit_qemu-builder0_state', {})
    const log = new Log()
    await expect(setupBuilder(options(), runner, log.sink, removal)).rejects.toBeInstanceOf(CancelledError)
    expect(removal.commands()).toEqual([
      'buildx rm -- qemu-builder',
      'rm --force --volumes -- buildx_buildkit_qemu-builder0',
      'volume rm --force -- buildx_buildkit_qemu-builder0_state',
    ])
    expect(log.info).toContain('Removed the half-made builder qemu-builder')
  })

  test('buildx create --bootstrap stopped at its time limit: the builder is removed; none stored: nothing said about it', async () => {
    const runner = new FakeRunner()
      .on('buildx version', VERSION)
      .on('buildx inspect -- qemu-builder', NOT_FOUND)
      .on('buildx create --name qemu-builder --node qemu-builder0 --driver docker-container --use --bootstrap', {
        code: null as unknown as number,
        timedOut: true,
        signal: 'SIGKILL',
      })
    const removal = new FakeRunner()
      .on('buildx rm -- qemu-builder', { code: 1, stderr: 'ERROR: no builder "qemu-builder" found' })
      .on('rm --force --volumes -- buildx_buildkit_qemu-builder0', {})
      .on('volume rm --force -- buildx_buildkit_qemu-builder0_state', {})
    const log = new Log()
    await expect(setupBuilder(options({ mode: 'true' }), runner, log.sink, removal)).rejects.toThrow(/^builder qemu-builder did not start within 15 minutes/)
    expect(removal.commands()).toEqual([
      'buildx rm -- qemu-builder',
      'rm --force --volumes -- buildx_buildkit_qemu-builder0',
      'volume rm --force -- buildx_buildkit_qemu-builder0_state',
    ])
    expect([...log.info, ...log.notice].filter(l => /half-made|Could not remove/.test(l))).toEqual([])
  })

  test('a transient failure that clears on the retry gives a builder', async () => {
    const runner = new FakeRunner()
      .on('buildx version', VERSION)
      .on('buildx inspect -- qemu-builder', NOT_FOUND, STORED)
      .on('buildx create --name qemu-builder --node qemu-builder0 --driver docker-container --use --bootstrap', {
        code: 1,
        stderr: transcript('doc-bootstrap-rate-limit.stderr.txt'),
      })
      .on('buildx inspect --bootstrap --builder qemu-builder', BOOT_OK)
      .on('buildx ls --format json', { stdout: transcript('doc-ls-json-single.json') })
    const log = new Log()
    const out = await setupBuilder(options(), runner, log.sink)
    expect(out.result!.name).toBe('qemu-builder')
    expect(log.info).toContainEqual(
      expect.stringMatching(/^Builder qemu-builder did not start \(Error response from daemon: toomanyrequests: .*\); trying once more in 0 s$/),
    )
    expect(log.warning).toEqual([])
  })

  test('permanent pull failures and timeouts are not retried; a mirror from driver-opts is what is blamed', async () => {
    const runner = new FakeRunner()
      .on('buildx version', VERSION)
      .on('buildx inspect -- qemu-builder', NOT_FOUND, STORED)
      .on('buildx create --name qemu-builder --node qemu-builder0 --driver docker-container --driver-opt image=mirror.example/buildkit:v0 --use --bootstrap', {
        code: 1,
        stderr: 'ERROR: Error response from daemon: manifest for mirror.example/buildkit:v0 not found: manifest unknown\n',
      })
      .on('buildx rm -- qemu-builder', {})
      .on('rm --force --volumes -- buildx_buildkit_qemu-builder0', {})
      .on('volume rm --force -- buildx_buildkit_qemu-builder0_state', {})
    const e = await rejection(setupBuilder(options({ mode: 'true', driverOpts: ['image=mirror.example/buildkit:v0'] }), runner, new Log().sink))
    expect(runner.commands().filter(c => c.startsWith('buildx inspect --bootstrap'))).toHaveLength(0)
    expect(e.message).toMatch(
      /^driver-opts: builder qemu-builder could not start: its BuildKit image mirror\.example\/buildkit:v0 \(driver-opts image=\) could not be pulled \(.*manifest unknown\); check that image/,
    )

    const slow = new FakeRunner()
      .on('buildx version', VERSION)
      .on('buildx inspect -- qemu-builder', NOT_FOUND)
      .on('buildx create --name qemu-builder --node qemu-builder0 --driver docker-container --use --bootstrap', {
        code: null,
        signal: 'SIGKILL',
        timedOut: true,
      })
      .on('buildx rm -- qemu-builder', { code: 1, stderr: 'ERROR: permission denied\n' })
      .on('rm --force --volumes -- buildx_buildkit_qemu-builder0', {})
      .on('volume rm --force -- buildx_buildkit_qemu-builder0_state', {})
    const log = new Log()
    const t = await rejection(setupBuilder(options({ mode: 'true' }), slow, log.sink))
    expect(slow.commands().filter(c => c.startsWith('buildx inspect --bootstrap'))).toHaveLength(0)
    expect(t.message).toMatch(/^builder qemu-builder did not start within 15 minutes \(did not finish within 900 s and was stopped\)/)
    // a failure to remove is a notice; the bootstrap error still surfaces
    expect(log.notice).toEqual([expect.stringMatching(/Could not remove builder qemu-builder after the failure \(permission denied\)/)])
  })

  test('a start failure that is not a pull names the inputs that shape the builder, not driver-opts alone', async () => {
    const runner = new FakeRunner()
      .on('buildx version', VERSION)
      .on('buildx inspect -- qemu-builder', NOT_FOUND, STORED)
      .on(
        'buildx create --name qemu-builder --node qemu-builder0 --driver docker-container --buildkitd-flags --oci-worker-snapshotter=bogus --use --bootstrap',
        {
          code: 1,
          stderr: 'ERROR: buildkitd: snapshotter "bogus" is not supported\n',
        },
      )
      .on('buildx rm -- qemu-builder', {})
      .on('rm --force --volumes -- buildx_buildkit_qemu-builder0', {})
      .on('volume rm --force -- buildx_buildkit_qemu-builder0_state', {})
    const e = await rejection(setupBuilder(options({ mode: 'true', buildkitdFlags: '--oci-worker-snapshotter=bogus' }), runner, new Log().sink))
    expect(e.message).toBe('builder qemu-builder could not start (buildkitd: snapshotter "bogus" is not supported); check buildkitd-flags')
  })

  test('bootstrap failure of a reused builder does not remove it', async () => {
    const runner = new FakeRunner()
      .on('buildx version', VERSION)
      .on('buildx inspect -- qemu-builder', { stdout: transcript('inspect-container-inactive.txt') })
      .on('buildx inspect --bootstrap --builder qemu-builder', PULL_FAILED)
    const e = await rejection(setupBuilder(options({ mode: 'true' }), runner, new Log().sink))
    expect(e).toBeInstanceOf(ActionError)
    expect(runner.commands()).not.toContain('buildx rm -- qemu-builder')
    const log = new Log()
    expect(await setupBuilder(options(), runner, log.sink)).toEqual({})
    expect(runner.commands()).not.toContain('buildx rm -- qemu-builder')
    expect(log.warning).toHaveLength(1)
  })

  test('append failure removes the created builder and names append', async () => {
    const runner = new FakeRunner()
      .on('buildx version', VERSION)
      .on('buildx inspect -- qemu-builder', NOT_FOUND)
      .on('buildx create --name qemu-builder --node qemu-builder0 --driver docker-container --use', {})
      .on('buildx create --append --name qemu-builder --node remote-node --platform linux/arm64,linux/arm/v7 -- tcp://127.0.0.1:1', {
        code: 1,
        stderr: transcript('append-unreachable.stderr.txt').replace(/qemu-cap/g, 'qemu-builder'),
      })
      .on('buildx rm -- qemu-builder', {})
      .on('rm --force --volumes -- buildx_buildkit_qemu-builder0', {})
      .on('volume rm --force -- buildx_buildkit_qemu-builder0_state', {})
    const node = { name: 'remote-node', endpoint: 'tcp://127.0.0.1:1', platforms: ['linux/arm64', 'linux/arm/v7'], driverOpts: [] }
    const log = new Log()
    const e = await rejection(setupBuilder(options({ mode: 'true', append: [node] }), runner, log.sink))
    expect(e.message).toBe(
      'append: cannot add node remote-node (tcp://127.0.0.1:1) to builder qemu-builder (failed to initialize builder qemu-builder (remote-node): ' +
        'Cannot connect to the Docker daemon at tcp://127.0.0.1:1. Is the docker daemon running?); check its endpoint, platforms and driver-opts',
    )
    expect(runner.commands().slice(-3)).toEqual(REMOVED)
    expect(log.info).toContain('Removed the half-made builder qemu-builder')
  })

  test('cancelled while buildx creates the builder: what it may have stored is removed by name (on the removal runner), then the cancellation goes on', async () => {
    const runner = new FakeRunner()
      .on('buildx version', VERSION)
      .on('buildx inspect -- qemu-builder', NOT_FOUND)
      .on('buildx create --name qemu-builder --node qemu-builder0 --driver docker-container --use --bootstrap', new CancelledError())
    const removal = new FakeRunner()
      .on('buildx rm -- qemu-builder', {})
      .on('rm --force --volumes -- buildx_buildkit_qemu-builder0', {})
      .on('volume rm --force -- buildx_buildkit_qemu-builder0_state', {})
    const log = new Log()
    const e = await rejection(setupBuilder(options({ mode: 'true' }), runner, log.sink, removal))
    expect(e).toBeInstanceOf(CancelledError)
    expect(removal.commands()).toEqual(REMOVED)
    expect(log.info).toContain('Removed the half-made builder qemu-builder')
  })

  test('a create killed when its time ran out is removed too (buildx could not roll back); a builder not stored yet is no notice', async () => {
    // with a node to append, create does not boot: its own time limit and message
    const runner = new FakeRunner()
      .on('buildx version', VERSION)
      .on('buildx inspect -- qemu-builder', NOT_FOUND)
      .on('buildx create --name qemu-builder --node qemu-builder0 --driver docker-container --use', { code: null, signal: 'SIGKILL', timedOut: true })
      .on('buildx rm -- qemu-builder', { code: 1, stderr: transcript('rm-not-found.stderr.txt').replace(/qemu-cap/g, 'qemu-builder') })
      .on('rm --force --volumes -- buildx_buildkit_qemu-builder0', {})
      .on('volume rm --force -- buildx_buildkit_qemu-builder0_state', {})
    const log = new Log()
    const node = { name: 'n2', endpoint: 'tcp://127.0.0.1:1', platforms: [], driverOpts: [] }
    const e = await rejection(setupBuilder(options({ mode: 'true', append: [node] }), runner, log.sink))
    expect(e.message).toMatch(/^driver: cannot create builder qemu-builder \(did not finish within 300 s and was stopped\)/)
    expect(runner.commands().slice(-3)).toEqual(REMOVED)
    expect(log.notice).toEqual([])
  })

  test('a remote driver at an endpoint: the first node gets --node and the endpoint after --; nothing is removed by container name', async () => {
    const runner = new FakeRunner()
      .on('buildx version', VERSION)
      .on('buildx inspect -- qemu-builder', NOT_FOUND, STORED)
      .on('buildx create --name qemu-builder --node qemu-builder0 --driver remote --use --bootstrap -- tcp://127.0.0.1:1', {
        code: 1,
        stderr: 'ERROR: connection error\n',
      })
      .on('buildx rm -- qemu-builder', {})
    const e = await rejection(setupBuilder(options({ mode: 'true', driver: 'remote', endpoint: 'tcp://127.0.0.1:1' }), runner, new Log().sink))
    expect(e).toBeInstanceOf(ActionError)
    expect(runner.commands().at(-1)).toBe('buildx rm -- qemu-builder')
  })

  // The next ones answer with what buildx 0.13.1 printed against a real BuildKit v0.13.2 (.ci/buildkit.sh).
  const remoteRunner = (): FakeRunner =>
    new FakeRunner()
      .on('buildx version', VERSION)
      .on('buildx inspect -- qbf-rem', NOT_FOUND)
      .on('buildx create --name qbf-rem --node qbf-rem0 --driver remote --use -- tcp://127.0.0.1:23401', { stdout: 'qbf-rem\n' })
      .on('buildx create --append --name qbf-rem --node qbf-rem-b --platform linux/arm64 -- tcp://127.0.0.1:23402', { stdout: 'qbf-rem\n' })
  const appended = { name: 'qbf-rem-b', endpoint: 'tcp://127.0.0.1:23402', platforms: ['linux/arm64'], driverOpts: [] }
  const down = { name: 'qbf-rem-down', endpoint: 'tcp://127.0.0.1:1', platforms: ['linux/s390x'], driverOpts: [] }
  const remote = (over: Partial<BuilderOptions> = {}): BuilderOptions =>
    options({ name: 'qbf-rem', driver: 'remote', endpoint: 'tcp://127.0.0.1:23401', append: [appended], ...over })

  test('driver remote at a tcp endpoint with an appended node (real transcripts): both nodes remote, platforms as they declare them', async () => {
    const runner = remoteRunner()
      .on('buildx inspect --bootstrap --builder qbf-rem', { stdout: transcript('inspect-remote-appended.txt') })
      .on('buildx ls --format json', { stdout: transcript('ls-json-remote-appended.json') })
    const log = new Log()
    const out = await setupBuilder(remote({ platforms: NATIVE.slice(0, 1), emulated: [] }), runner, log.sink)
    expect(out.state).toEqual({ name: 'qbf-rem', created: true, driver: 'remote' })
    expect(out.result!.nodes.map(n => [n.name, n.status, n.buildkit, n.remote])).toEqual([
      ['qbf-rem0', 'running', 'v0.13.2+debian26.1.5-9+deb13u1', true],
      ['qbf-rem-b', 'running', 'v0.13.2+debian26.1.5-9+deb13u1', true],
    ])
    // not held against this runner (which ran only linux/amd64 here); the user-set platform first
    expect(out.result!.nodes[1].preferred).toEqual(['linux/arm64'])
    expect(out.result!.platforms).toEqual(['linux/arm64', 'linux/amd64', 'linux/amd64/v2', 'linux/amd64/v3', 'linux/amd64/v4', 'linux/386'])
    expect(log.notice).toEqual([])
  })

  test("driver remote at a unix socket is this runner's BuildKit: its platforms are held against what runs here", async () => {
    const local = transcript('inspect-remote-appended.txt').replace('tcp://127.0.0.1:23401', 'unix:///run/buildkit/buildkitd.sock')
    const runner = new FakeRunner()
      .on('buildx version', VERSION)
      .on('buildx create --name qbf-rem --node qbf-rem0 --driver remote --use -- unix:///run/buildkit/buildkitd.sock', {})
      .on('buildx create --append --name qbf-rem --node qbf-rem-b --platform linux/arm64 -- tcp://127.0.0.1:23402', {})
      .on('buildx inspect --bootstrap --builder qbf-rem', { stdout: local })
      .on('buildx ls --format json', { code: 1 })
      .on('buildx inspect -- qbf-rem', NOT_FOUND, { stdout: local })
    const out = await setupBuilder(
      remote({ endpoint: 'unix:///run/buildkit/buildkitd.sock', platforms: ['linux/amd64'], emulated: [] }),
      runner,
      new Log().sink,
    )
    expect(out.result!.nodes.map(n => [n.name, n.remote, n.platforms])).toEqual([
      ['qbf-rem0', false, ['linux/amd64']],
      ['qbf-rem-b', true, ['linux/arm64', 'linux/amd64', 'linux/amd64/v2', 'linux/amd64/v3', 'linux/amd64/v4', 'linux/386']],
    ])
  })

  test('an appended node that is down (real transcripts): one line naming append and the node; removed; a warning under auto', async () => {
    const script = (): FakeRunner =>
      remoteRunner()
        .on('buildx create --append --name qbf-rem --node qbf-rem-down --platform linux/s390x -- tcp://127.0.0.1:1', { stdout: 'qbf-rem\n' })
        .on('buildx inspect --bootstrap --builder qbf-rem', { code: 1, stderr: transcript('bootstrap-remote-node-down.stderr.txt') })
        .on('buildx inspect -- qbf-rem', NOT_FOUND, { stdout: transcript('inspect-remote-node-down.txt') })
        .on('buildx rm -- qbf-rem', { stdout: 'qbf-rem removed\n' })
    const runner = script()
    const e = await rejection(setupBuilder(remote({ mode: 'true', append: [appended, down] }), runner, new Log().sink))
    expect(e).toBeInstanceOf(ActionError)
    expect(e.message).toBe(
      'append: node qbf-rem-down (tcp://127.0.0.1:1) of builder qbf-rem did not start (context deadline exceeded); start its BuildKit or fix its endpoint, or leave it out of append',
    )
    // a remote builder has no container of its own to remove by name
    expect(runner.commands().at(-1)).toBe('buildx rm -- qbf-rem')
    const log = new Log()
    expect(await setupBuilder(remote({ append: [appended, down] }), script(), log.sink)).toEqual({})
    expect(log.warning).toEqual([
      expect.stringMatching(
        /^append: node qbf-rem-down \(tcp:\/\/127\.0\.0\.1:1\) of builder qbf-rem did not start .*going on without a builder \(buildx: auto\)/,
      ),
    ])
  })

  test('driver remote whose endpoint does not answer (real transcripts): one line naming endpoint', async () => {
    const runner = new FakeRunner()
      .on('buildx version', VERSION)
      .on('buildx inspect -- qbf-rem2', NOT_FOUND, { stdout: transcript('inspect-remote-down.txt') })
      .on('buildx create --name qbf-rem2 --node qbf-rem20 --driver remote --use --bootstrap -- tcp://127.0.0.1:1', {
        code: 1,
        stderr: transcript('bootstrap-remote-node-down.stderr.txt'),
      })
      .on('buildx rm -- qbf-rem2', {})
    const e = await rejection(
      setupBuilder(options({ mode: 'true', name: 'qbf-rem2', driver: 'remote', endpoint: 'tcp://127.0.0.1:1' }), runner, new Log().sink),
    )
    expect(e.message).toBe(
      'endpoint: builder qbf-rem2 could not start: no BuildKit answered at tcp://127.0.0.1:1 (context deadline exceeded); start buildkitd there or fix endpoint',
    )
  })

  test('an endpoint that is no Docker context (real transcript): create fails naming endpoint, under auto too (not "no daemon")', async () => {
    const script = (): FakeRunner =>
      new FakeRunner()
        .on('buildx version', VERSION)
        .on('buildx inspect -- qbf-ctx', NOT_FOUND)
        .on('buildx create --name qbf-ctx --node qbf-ctx0 --driver docker-container --use --bootstrap -- qbf-no-such-context', {
          code: 1,
          stderr: transcript('create-context-missing.stderr.txt'),
        })
    const opts = options({ name: 'qbf-ctx', endpoint: 'qbf-no-such-context' })
    const e = await rejection(setupBuilder({ ...opts, mode: 'true' }, script(), new Log().sink))
    expect(e.message).toMatch(
      /^endpoint: cannot create builder qbf-ctx \(failed to initialize builder qbf-ctx \(qbf-ctx0\): error during connect: .*no such host\); give an existing Docker context \(docker context ls\)/,
    )
    const log = new Log()
    expect(await setupBuilder(opts, script(), log.sink)).toEqual({})
    expect(log.notice).toEqual([])
    expect(log.warning).toEqual([expect.stringMatching(/^endpoint: cannot create builder qbf-ctx /)])
  })

  test('create failure names the input at fault and removes nothing (buildx rolled back); auto makes it a warning', async () => {
    const runner = new FakeRunner()
      .on('buildx version', VERSION)
      .on('buildx inspect -- qemu-builder', NOT_FOUND)
      .on('buildx create --name qemu-builder --node qemu-builder0 --driver docker-container --driver-opt foo --use --bootstrap', {
        code: 1,
        stderr: transcript('create-bad-driver-opt.stderr.txt'),
      })
    const e = await rejection(setupBuilder(options({ mode: 'true', driverOpts: ['foo'] }), runner, new Log().sink))
    expect(e).toBeInstanceOf(ActionError)
    expect(e.message).toMatch(
      /^driver-opts: cannot create builder qemu-builder \(invalid value "foo", expecting k=v\); each driver-opts entry must be key=value/,
    )
    expect(runner.commands()).not.toContain('buildx rm -- qemu-builder')
    const log = new Log()
    expect(await setupBuilder(options({ driverOpts: ['foo'] }), runner, log.sink)).toEqual({})
    expect(log.warning).toEqual([expect.stringMatching(/^driver-opts: cannot create builder qemu-builder \(invalid value "foo", expecting k=v\)/)])
  })

  test("mode 'auto' with the plugin but no reachable daemon: notice, no throw", async () => {
    const down = { code: 1, stderr: 'ERROR: Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?\n' }
    const script = (): FakeRunner =>
      new FakeRunner()
        .on('buildx version', VERSION)
        .on('buildx inspect -- qemu-builder', NOT_FOUND)
        .on('buildx create --name qemu-builder --node qemu-builder0 --driver docker-container --use --bootstrap', down)
    const log = new Log()
    expect(await setupBuilder(options({ mode: 'auto' }), script(), log.sink)).toEqual({})
    expect(log.notice).toEqual([expect.stringMatching(/^the Docker daemon is not reachable \(Cannot connect to the Docker daemon/)])
    const e = await rejection(setupBuilder(options({ mode: 'true' }), script(), new Log().sink))
    expect(e).toBeInstanceOf(ActionError)
    expect(e.message).toMatch(/^driver: cannot create builder qemu-builder \(Cannot connect/)
  })

  test('an unknown driver is blamed on driver', async () => {
    const runner = new FakeRunner()
      .on('buildx version', VERSION)
      .on('buildx inspect -- qemu-builder', NOT_FOUND)
      .on('buildx create --name qemu-builder --node qemu-builder0 --driver podman --use --bootstrap', {
        code: 1,
        stderr: 'ERROR: failed to find driver "podman"\n',
      })
    const e = await rejection(setupBuilder(options({ mode: 'true', driver: 'podman' }), runner, new Log().sink))
    expect(e.message).toMatch(/^driver: cannot create builder qemu-builder \(failed to find driver "podman"\); check the driver/)
  })
})

/** A runner that holds one command until released: the start still running while the caller works. */
class Held implements ProcessRunner {
  release: () => void = () => undefined
  private readonly gate = new Promise<void>(resolve => (this.release = resolve))
  constructor(
    readonly inner: FakeRunner,
    private readonly key: string,
  ) {}
  async run(command: string, args: readonly string[], options?: RunOptions): Promise<RunResult> {
    if (args.join(' ') === this.key) await this.gate
    return this.inner.run(command, args, options)
  }
}

function startOptions(over: Partial<BuilderStartOptions> = {}): BuilderStartOptions {
  const o: Partial<BuilderOptions> = options()
  delete o.platforms
  delete o.emulated
  return { ...(o as BuilderStartOptions), ...over }
}

describe('startBuilder, finishBuilder, abandonBuilder (the builder beside the emulator steps)', () => {
  // nothing to append: create boots the builder itself
  const CREATE = 'buildx create --name qemu-builder --node qemu-builder0 --driver docker-container --use --bootstrap'
  const BOOT = 'buildx inspect --bootstrap --builder qemu-builder'
  const creates = (): FakeRunner =>
    new FakeRunner()
      .on('buildx version', VERSION)
      .on('buildx inspect -- qemu-builder', NOT_FOUND)
      .on(CREATE, { stdout: 'qemu-builder\n' })
      .on('buildx ls --format json', { stdout: transcript('doc-ls-json-single.json') })
  // no plugin: buildx's first commands, run beside the version, fail as the version does
  const noPlugin = (): FakeRunner => new FakeRunner().on('buildx version', MISSING).on('buildx inspect -- qemu-builder', MISSING).on(CREATE, MISSING)

  test('the start creates and boots without the platforms; its lines wait for the finish, which reads the platforms only then', async () => {
    const runner = creates()
    const log = new Log()
    const created: unknown[] = []
    const start = startBuilder(startOptions({ onCreated: s => created.push(s) }), runner, log.sink)
    expect(await start.preflight).toBeUndefined()
    await start.settled
    // booted, not read: the emulators are not registered yet
    expect(runner.commands()).toEqual(['buildx inspect -- qemu-builder', 'buildx version', CREATE])
    expect(created).toEqual([{ name: 'qemu-builder', created: true, driver: 'docker-container' }])
    expect([...log.info, ...log.notice, ...log.warning, ...log.debug]).toEqual([])

    const out = await finishBuilder(start, [...NATIVE, ...EMULATED], EMULATED)
    expect(runner.commands().slice(3)).toEqual(['buildx ls --format json'])
    expect(out.state).toEqual({ name: 'qemu-builder', created: true, driver: 'docker-container' })
    expect(out.result!.platforms).toEqual(expect.arrayContaining(['linux/amd64', 'linux/arm64']))
    expect(out.timings!.builderStart).toBeGreaterThanOrEqual(0)
    expect(out.timings!.builderWait).toBeGreaterThanOrEqual(0)
    // the start's lines first, in their order (the version's answer, which came in beside the create, leads), then the finish's
    expect(log.info.slice(0, 3)).toEqual([
      'Using buildx 0.13.1+ds1 0.13.1+ds1-3',
      'Creating builder qemu-builder (driver docker-container)',
      `[command]docker ${CREATE}`,
    ])
    expect(log.info[log.info.length - 1]).toMatch(/^Builder qemu-builder \(docker-container\) platforms: /)
  })

  test('the finish waits for a start still booting, showing its lines as they come from then on', async () => {
    const runner = new Held(creates(), CREATE)
    const log = new Log()
    const start = startBuilder(startOptions(), runner, log.sink)
    await new Promise(resolve => setTimeout(resolve, 20))
    expect(log.info).toEqual([])
    let finished = false
    const finishing = finishBuilder(start, [...NATIVE, ...EMULATED], EMULATED).then(r => ((finished = true), r))
    await new Promise(resolve => setTimeout(resolve, 20))
    expect(finished).toBe(false)
    expect(log.info[log.info.length - 1]).toBe(`[command]docker ${CREATE}`)
    runner.release()
    expect((await finishing).result!.name).toBe('qemu-builder')
    expect(runner.inner.commands().slice(-2)).toEqual([CREATE, 'buildx ls --format json'])
  })

  test('a start that fails while the caller is busy is no unhandled rejection; the finish reports it: an error under true, a warning under auto', async () => {
    const unhandled: unknown[] = []
    const onUnhandled = (e: unknown): number => unhandled.push(e)
    process.on('unhandledRejection', onUnhandled)
    try {
      const pullFails = (): FakeRunner =>
        creates()
          .on('buildx inspect -- qemu-builder', NOT_FOUND, STORED)
          .on(CREATE, PULL_FAILED)
          .on(BOOT, PULL_FAILED)
          .on('buildx rm -- qemu-builder', {})
          .on('rm --force --volumes -- buildx_buildkit_qemu-builder0', {})
          .on('volume rm --force -- buildx_buildkit_qemu-builder0_state', {})
      const strict = startBuilder(startOptions({ mode: 'true' }), pullFails(), new Log().sink)
      const autoLog = new Log()
      const autoStart = startBuilder(startOptions(), pullFails(), autoLog.sink)
      await Promise.all([strict.settled, autoStart.settled])
      await new Promise(resolve => setTimeout(resolve, 10))
      expect(unhandled).toEqual([])

      const e = await rejection(finishBuilder(strict, NATIVE, []))
      expect(e).toBeInstanceOf(ActionError)
      expect(e.message).toMatch(/^builder qemu-builder could not start: the BuildKit image could not be pulled/)
      expect(await finishBuilder(autoStart, NATIVE, [])).toEqual({ timings: expect.any(Object) })
      expect(autoLog.warning).toHaveLength(1)
      expect(autoLog.warning[0]).toMatch(/could not be pulled .*going on without a builder \(buildx: auto\)/)
      expect(autoLog.info).toContain('Removed the half-made builder qemu-builder')
    } finally {
      process.off('unhandledRejection', onUnhandled)
    }
  })

  test('preflight: buildx: true without the plugin is known before the emulator steps; the finish throws it too', async () => {
    const runner = noPlugin()
    const start = startBuilder(startOptions({ mode: 'true' }), runner, new Log().sink)
    const e = await start.preflight
    expect(e).toBeInstanceOf(ActionError)
    expect(e!.message).toMatch(/^buildx: docker buildx is not available/)
    expect(await rejection(finishBuilder(start, NATIVE, []))).toBe(e)
    expect(runner.commands()).toEqual(['buildx inspect -- qemu-builder', 'buildx version'])
  })

  test("preflight under auto, and mode 'false': nothing to fail; no result", async () => {
    const auto = startBuilder(startOptions(), new FakeRunner().on('buildx version', MISSING), new Log().sink)
    expect(await auto.preflight).toBeUndefined()
    expect((await finishBuilder(auto, NATIVE, [])).result).toBeUndefined()
    const runner = new FakeRunner()
    const off = startBuilder(startOptions({ mode: 'false' }), runner, new Log().sink)
    expect(await off.preflight).toBeUndefined()
    expect(await finishBuilder(off, NATIVE, [])).toEqual({ timings: expect.any(Object) })
    expect(runner.calls).toEqual([])
  })

  test('the emulator step failed: abandon waits for the start, then removes the builder it created through the removal runner', async () => {
    const runner = new Held(creates(), CREATE)
    const removal = new FakeRunner()
      .on('buildx rm -- qemu-builder', {})
      .on('rm --force --volumes -- buildx_buildkit_qemu-builder0', {})
      .on('volume rm --force -- buildx_buildkit_qemu-builder0_state', {})
    const log = new Log()
    const start = startBuilder(startOptions(), runner, log.sink, removal)
    const abandoning = abandonBuilder(start)
    await new Promise(resolve => setTimeout(resolve, 10))
    expect(removal.calls).toEqual([])
    runner.release()
    await abandoning
    expect(removal.commands()).toEqual(REMOVED)
    expect(runner.inner.commands()).not.toContain('buildx ls --format json')
    expect(log.info).toContain('Removing builder qemu-builder, which this step started: the step did not get as far as using it')
    expect(log.info).toContain('Removed the half-made builder qemu-builder')
  })

  test('abandon leaves a reused builder (not made current) and a start that made nothing alone', async () => {
    const reused = new FakeRunner()
      .on('buildx version', VERSION)
      .on('buildx inspect -- qemu-builder', { stdout: transcript('inspect-container-inactive.txt') })
      .on(BOOT, BOOT_OK)
      .on('buildx use -- qemu-builder', {})
    const removal = new FakeRunner()
    await abandonBuilder(startBuilder(startOptions(), reused, new Log().sink, removal))
    await abandonBuilder(startBuilder(startOptions(), new FakeRunner().on('buildx version', MISSING), new Log().sink, removal))
    expect(removal.calls).toEqual([])
    // Nor is it made the current builder: that waits for the finish.
    expect(reused.commands()).not.toContain('buildx use -- qemu-builder')
  })

  test('cancelled while the start creates: the start removes what it made; abandon adds nothing; the finish rethrows the cancellation', async () => {
    const runner = new FakeRunner().on('buildx version', VERSION).on('buildx inspect -- qemu-builder', NOT_FOUND).on(CREATE, new CancelledError())
    const removal = new FakeRunner()
      .on('buildx rm -- qemu-builder', {})
      .on('rm --force --volumes -- buildx_buildkit_qemu-builder0', {})
      .on('volume rm --force -- buildx_buildkit_qemu-builder0_state', {})
    const log = new Log()
    const start = startBuilder(startOptions(), runner, log.sink, removal)
    await abandonBuilder(start)
    expect(removal.commands()).toEqual(REMOVED)
    expect(log.info).toContain('Removed the half-made builder qemu-builder')
    expect(await rejection(finishBuilder(start, NATIVE, []))).toBeInstanceOf(CancelledError)
    expect(removal.commands()).toEqual(REMOVED)
  })
})

describe('create --bootstrap: whose builder, and what failed', () => {
  const CREATE = 'buildx create --name qemu-builder --node qemu-builder0 --driver docker-container --use --bootstrap'
  const EXISTING = { code: 1, stderr: transcript('create-existing.stderr.txt') }

  test('a builder of that name made by someone else meanwhile: told as create failing, nothing asked, nothing removed', async () => {
    const runner = new FakeRunner().on('buildx version', VERSION).on('buildx inspect -- qemu-builder', NOT_FOUND).on(CREATE, EXISTING)
    const e = await rejection(setupBuilder(options({ mode: 'true' }), runner, new Log().sink))
    expect(e.message).toMatch(/^builder-name: cannot create builder qemu-builder \(existing instance for "qemu-builder"/)
    expect(runner.commands().filter(c => /^(buildx rm|rm|volume rm)/.test(c))).toEqual([])
    expect(runner.commands().filter(c => c === 'buildx inspect -- qemu-builder')).toHaveLength(1)
  })

  test('a name buildx cannot say is free is not created (nor handed to the post step as ours)', async () => {
    const created: unknown[] = []
    const runner = new FakeRunner()
      .on('buildx version', VERSION)
      .on('buildx inspect -- qemu-builder', { code: null as unknown as number, timedOut: true, signal: 'SIGKILL' })
    const e = await rejection(
      setupBuilder({ ...options({ mode: 'true' }), onCreated: (st: unknown) => created.push(st) } as BuilderOptions, runner, new Log().sink),
    )
    expect(e.message).toMatch(/^builder-name: cannot tell whether builder qemu-builder exists \(.*\); check docker buildx inspect qemu-builder$/)
    expect(runner.commands()).not.toContain(CREATE)
    expect(created).toEqual([])
  })

  test('no clear answer whether the failed create stored the builder: what may be there is removed, the create failure is told', async () => {
    const runner = new FakeRunner()
      .on('buildx version', VERSION)
      .on('buildx inspect -- qemu-builder', NOT_FOUND, { code: 1, stderr: 'ERROR: context deadline exceeded\n' })
      .on(CREATE, { code: 1, stderr: 'ERROR: context deadline exceeded\n' })
      .on('buildx rm -- qemu-builder', NOT_FOUND)
      .on('rm --force --volumes -- buildx_buildkit_qemu-builder0', {})
      .on('volume rm --force -- buildx_buildkit_qemu-builder0_state', {})
    const e = await rejection(setupBuilder(options({ mode: 'true' }), runner, new Log().sink))
    expect(e.message).toMatch(/^driver: cannot create builder qemu-builder \(context deadline exceeded\)/)
    expect(runner.commands().slice(-3)).toEqual(REMOVED)
  })

  test("the post step is handed the builder before create runs; with a plugin found, the builder's commands run it and the version goes through docker", async () => {
    const events: string[] = []
    const PLUGIN = '/usr/libexec/docker/cli-plugins/docker-buildx'
    const runner: ProcessRunner = {
      run: async (command, args) => {
        events.push([command, ...args].join(' '))
        const key = [command, ...args].join(' ')
        if (key === 'docker buildx version') return { code: 0, signal: null, stdout: transcript('version.stdout.txt'), stderr: '' }
        if (key === `${PLUGIN} inspect -- qemu-builder`) return { code: 1, signal: null, stdout: '', stderr: transcript('inspect-not-found.stderr.txt') }
        if (key.startsWith(`${PLUGIN} create `)) return { code: 0, signal: null, stdout: 'qemu-builder\n', stderr: '' }
        if (key === `${PLUGIN} ls --format json`) return { code: 0, signal: null, stdout: transcript('doc-ls-json-single.json'), stderr: '' }
        throw new Error(`unexpected: ${key}`)
      },
    }
    const { platforms, emulated, ...start } = options()
    const s = startBuilder({ ...start, buildxPlugin: { path: PLUGIN }, onCreated: () => events.push('handed over') }, runner, new Log().sink)
    const out = await finishBuilder(s, platforms, emulated)
    expect(out.result!.name).toBe('qemu-builder')
    expect(events).toEqual([
      `${PLUGIN} inspect -- qemu-builder`,
      'docker buildx version',
      'handed over',
      `${PLUGIN} create --name qemu-builder --node qemu-builder0 --driver docker-container --use --bootstrap`,
      `${PLUGIN} ls --format json`,
    ])
  })
})

describe('cleanupBuilder', () => {
  test('removes a builder this action created', async () => {
    const runner = new FakeRunner().on('buildx rm -- qemu-builder', {})
    const log = new Log()
    await cleanupBuilder({ name: 'qemu-builder', created: true, driver: 'docker-container' }, runner, log.sink)
    expect(runner.commands()).toEqual(['buildx rm -- qemu-builder'])
    expect(log.info).toEqual(['Removed builder qemu-builder'])
  })

  test('leaves reused builders and the docker driver alone', async () => {
    const runner = new FakeRunner()
    const log = new Log()
    await cleanupBuilder({ name: 'qemu-builder', created: false, driver: 'docker-container' }, runner, log.sink)
    await cleanupBuilder({ name: 'default', created: true, driver: 'docker' }, runner, log.sink)
    expect(runner.calls).toEqual([])
    expect(log.warning).toEqual([])
  })

  test('failures are warnings, never thrown', async () => {
    const log = new Log()
    await cleanupBuilder(
      { name: 'qemu-builder', created: true, driver: 'docker-container' },
      new FakeRunner().on('buildx rm -- qemu-builder', {
        code: 1,
        stderr: 'ERROR: Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?\n',
      }),
      log.sink,
    )
    await cleanupBuilder(
      { name: 'qemu-builder', created: true, driver: 'docker-container' },
      new FakeRunner().on('buildx rm -- qemu-builder', new Error('spawn docker ENOENT')),
      log.sink,
    )
    expect(log.warning).toEqual([
      'Could not remove builder qemu-builder: Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?; remove it with docker buildx rm qemu-builder',
      'Could not remove builder qemu-builder: spawn docker ENOENT',
    ])
  })

  test('an already removed builder is not a warning', async () => {
    const log = new Log()
    await cleanupBuilder(
      { name: 'qemu-builder', created: true, driver: 'docker-container' },
      new FakeRunner().on('buildx rm -- qemu-builder', NOT_FOUND),
      log.sink,
    )
    expect(log.warning).toEqual([])
    expect(log.info).toEqual(['Builder qemu-builder is already gone'])
  })

  test('empty or partial state does nothing', async () => {
    const runner = new FakeRunner()
    await cleanupBuilder({} as never, runner, new Log().sink)
    expect(runner.calls).toEqual([])
  })
})

describe('errorLine', () => {
  test('the last ERROR line of bootstrap progress output', () => {
    expect(errorLine(transcript('bootstrap-pull-failed.stderr.txt'))).toMatch(
      /^Error response from daemon: Get "https:\/\/registry-1\.docker\.io\/v2\/": dial tcp: .*no such host$/,
    )
    expect(errorLine(transcript('doc-bootstrap-rate-limit.stderr.txt'))).toMatch(/^Error response from daemon: toomanyrequests: /)
    expect(errorLine(transcript('create-reserved.stderr.txt'))).toBe('default is a reserved name and cannot be used to identify builder instance')
  })

  test('skips --help pointers and usage', () => {
    expect(errorLine(transcript('buildx-missing.stderr.txt'))).toBe('docker: unknown command: docker buildx')
    expect(errorLine("docker: 'buildx' is not a docker command.\nSee 'docker --help'\n")).toBe("docker: 'buildx' is not a docker command.")
    expect(errorLine(transcript('doc-ls-unknown-flag.stderr.txt'))).toBe('unknown flag: --format')
  })

  test('progress-only ERROR lines, colour codes, empty text', () => {
    expect(errorLine('#1 [internal] booting buildkit\n#1 ERROR: no space left on device\n------\n')).toBe('no space left on device')
    expect(errorLine('\x1b[31mfailed to dial\x1b[0m\n')).toBe('failed to dial')
    expect(errorLine('\n\n')).toBe('')
  })
})
