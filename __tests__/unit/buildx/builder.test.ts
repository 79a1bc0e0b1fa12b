import * as fs from 'fs'
import * as os from 'os'
import * as path from 'path'
import { ActionError } from '../../../src/errors'
import { ProcessRunner, RunOptions, RunResult } from '../../../src/process'
import { BuilderOptions, cleanupBuilder, meaningfulError, setupBuilder } from '../../../src/buildx/builder'

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
const BOOT_OK = { stdout: transcript('inspect-container-running.txt'), stderr: transcript('bootstrap-ok.stderr.txt') }
const MISSING = { code: 1, stderr: transcript('buildx-missing.stderr.txt') }

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
    driverOpts: [],
    buildkitdFlags: '',
    configInline: '',
    use: true,
    append: [],
    platforms: ['linux/arm64', 'linux/riscv64', 'linux/arm/v7'],
    tempDir,
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

  test('creates, appends, boots and reads state with ls --format json', async () => {
    let config = ''
    const runner = new FakeRunner()
      .on('buildx version', VERSION)
      .on('buildx inspect qemu-builder', NOT_FOUND)
      .on(`buildx create --name qemu-builder --driver docker-container --driver-opt network=host --buildkitd-flags --allow-insecure-entitlement=network.host --config ${tempDir}/buildkitd-qemu-builder.toml --use`, () => {
        config = fs.readFileSync(path.join(tempDir, 'buildkitd-qemu-builder.toml'), 'utf8')
        return { stdout: 'qemu-builder\n' }
      })
      .on('buildx create --append --name qemu-builder --node arm64-node --platform linux/arm64,linux/arm/v7 --driver-opt env.BUILDKIT_STEP_LOG_MAX_SIZE=10485760 tcp://10.0.0.5:1234', { stdout: 'qemu-builder\n' })
      .on('buildx inspect --bootstrap --builder qemu-builder', BOOT_OK)
      .on('buildx ls --format json', { stdout: transcript('ls-json-multi.json').replace(/"cross"/, '"qemu-builder"') })
    const log = new Log()
    const out = await setupBuilder(
      options({
        driverOpts: ['network=host'],
        buildkitdFlags: '--allow-insecure-entitlement=network.host',
        configInline: '[worker.oci]\n  max-parallelism = 4\n',
        append: [{ name: 'arm64-node', endpoint: 'tcp://10.0.0.5:1234', platforms: ['linux/arm64', 'linux/arm/v7'], driverOpts: ['env.BUILDKIT_STEP_LOG_MAX_SIZE=10485760'] }],
        platforms: ['linux/arm64', 'linux/arm/v7'],
      }),
      runner,
      log.sink,
    )
    expect(runner.commands()).toEqual([
      'buildx version',
      'buildx inspect qemu-builder',
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
    expect(out.result!.nodes.map(n => n.name)).toEqual(['cross0', 'arm64-node', 'riscv-node'])
    expect(out.result!.platforms).toEqual([
      'linux/amd64', 'linux/amd64/v2', 'linux/amd64/v3', 'linux/386', 'linux/arm64', 'linux/arm/v7', 'linux/arm/v6',
    ])
    // the inactive appended node is worth a notice
    expect(log.notice).toEqual([expect.stringMatching(/node riscv-node is inactive/)])
    expect(log.info).toContain('Using buildx v0.20.1 de8a72bc53bd1a4b8b8e0e0d7fd4ff1b6a7e8d2c')
    // bootstrap is given a long timeout; the quick reads a short one
    expect(runner.options[4]?.timeoutMs).toBeGreaterThan(runner.options[5]!.timeoutMs!)
  })

  test('minimal create: no config file, no --use; ls json gives the platforms', async () => {
    const runner = new FakeRunner()
      .on('buildx version', VERSION)
      .on('buildx inspect gen-1234', NOT_FOUND)
      .on('buildx create --name gen-1234 --driver docker-container', { stdout: 'gen-1234\n' })
      .on('buildx inspect --bootstrap --builder gen-1234', BOOT_OK)
      .on('buildx ls --format json', { stdout: transcript('ls-json-single.json').replace(/qemu-builder/g, 'gen-1234') })
    const log = new Log()
    const out = await setupBuilder(options({ name: 'gen-1234', nameGiven: false, use: false }), runner, log.sink)
    expect(out.result!.platforms).toHaveLength(13)
    expect(out.result!.nodes[0].buildkit).toBe('v0.20.1')
    expect(log.notice).toEqual([])
  })

  test('ls --format json unknown to this buildx: falls back to inspect NAME', async () => {
    const runner = new FakeRunner()
      .on('buildx version', { stdout: 'github.com/docker/buildx v0.11.2 9872040b6626fb7d87ef7296fd5b832e8cc2ad17\n' })
      .on('buildx inspect qemu-builder', NOT_FOUND, { stdout: transcript('inspect-old-keys.txt') })
      .on('buildx create --name qemu-builder --driver docker-container --use', { stdout: 'qemu-builder\n' })
      .on('buildx inspect --bootstrap --builder qemu-builder', { stdout: transcript('inspect-old-keys.txt') })
      .on('buildx ls --format json', { code: 1, stderr: transcript('ls-unknown-flag.stderr.txt') })
    const log = new Log()
    const out = await setupBuilder(options(), runner, log.sink)
    expect(runner.commands().slice(-2)).toEqual(['buildx ls --format json', 'buildx inspect qemu-builder'])
    expect(out.result!.nodes[0].buildkit).toBe('v0.11.6')
    expect(out.result!.platforms).toContain('linux/riscv64')
    expect(log.debug.join('\n')).toMatch(/unknown flag: --format/)
  })

  test('ls json without our builder and inspect failing: uses what the bootstrap printed', async () => {
    const runner = new FakeRunner()
      .on('buildx version', VERSION)
      .on('buildx inspect qemu-builder', NOT_FOUND, NOT_FOUND)
      .on('buildx create --name qemu-builder --driver docker-container --use', {})
      .on('buildx inspect --bootstrap --builder qemu-builder', { stdout: transcript('inspect-buildkit-key.txt') })
      .on('buildx ls --format json', { stdout: transcript('ls-json-single.json').replace(/qemu-builder/g, 'other') })
    const out = await setupBuilder(options({ platforms: [] }), runner, new Log().sink)
    expect(out.result!.nodes[0].name).toBe('elated_tesla0')
    expect(out.result!.platforms).toEqual(['linux/arm64', 'linux/arm/v7', 'linux/arm/v6'])
  })

  test('user-set (*) platforms from the bootstrap text are kept when ls json has the same node', async () => {
    const runner = new FakeRunner()
      .on('buildx version', VERSION)
      .on('buildx inspect cross', NOT_FOUND)
      .on('buildx create --name cross --driver docker-container --use', {})
      .on('buildx create --append --name cross --node arm64-node tcp://10.0.0.5:2376', {})
      .on('buildx inspect --bootstrap --builder cross', { stdout: transcript('inspect-multi-node.txt') })
      .on('buildx ls --format json', { stdout: transcript('ls-json-multi.json') })
    const out = await setupBuilder(
      options({ name: 'cross', append: [{ name: 'arm64-node', endpoint: 'tcp://10.0.0.5:2376', platforms: [], driverOpts: [] }] }),
      runner,
      new Log().sink,
    )
    expect(out.result!.nodes[1].preferred).toEqual(['linux/arm64', 'linux/arm/v7'])
    expect(out.result!.platforms.slice(0, 3)).toEqual(['linux/arm64', 'linux/arm/v7', 'linux/amd64'])
  })

  test('an existing builder is reused as it is: no create, re-bootstrapped, created=false', async () => {
    const runner = new FakeRunner()
      .on('buildx version', VERSION)
      .on('buildx inspect qemu-builder', { stdout: transcript('inspect-container-inactive.txt') })
      .on('buildx inspect --bootstrap --builder qemu-builder', BOOT_OK)
      .on('buildx use qemu-builder', {})
      .on('buildx ls --format json', { stdout: transcript('ls-json-single.json') })
    const log = new Log()
    const out = await setupBuilder(options({ driverOpts: ['image=mirror/moby/buildkit:buildx-stable-1'], append: [{ endpoint: 'x', platforms: [], driverOpts: [] }] }), runner, log.sink)
    expect(runner.commands()).toEqual([
      'buildx version',
      'buildx inspect qemu-builder',
      'buildx inspect --bootstrap --builder qemu-builder',
      'buildx use qemu-builder',
      'buildx ls --format json',
    ])
    expect(out.state).toEqual({ name: 'qemu-builder', created: false, driver: 'docker-container' })
    expect(out.result!.created).toBe(false)
    expect(log.notice).toEqual([
      'builder-name: builder qemu-builder already exists, so driver-opts, append are not applied to it; choose another builder-name to get a builder with these settings',
    ])
  })

  test('a reused builder that misses emulated platforms gets a notice to restart it', async () => {
    const runner = new FakeRunner()
      .on('buildx version', VERSION)
      .on('buildx inspect qemu-builder', { stdout: transcript('inspect-buildkit-key.txt') })
      .on('buildx inspect --bootstrap --builder qemu-builder', { stdout: transcript('inspect-buildkit-key.txt') })
      .on('buildx ls --format json', { code: 1, stderr: 'unknown flag: --format' })
    const log = new Log()
    await setupBuilder(options({ use: false, driver: 'kubernetes', platforms: ['linux/arm64', 'linux/s390x', 'linux/arm64/v8'] }), runner, log.sink)
    expect(log.notice).toEqual([
      'builder-name: builder qemu-builder already exists, so driver (kubernetes) is not applied to it; choose another builder-name to get a builder with these settings',
      expect.stringMatching(/^Builder qemu-builder does not list linux\/s390x, which the registered emulators provide; it was probably started before they were registered: restart it \(docker buildx stop qemu-builder\)/),
    ])
  })

  test("driver 'docker': creates nothing, reports the current builder", async () => {
    const runner = new FakeRunner()
      .on('buildx version', VERSION)
      .on('buildx inspect', { stdout: transcript('inspect-docker-default.txt') })
    const log = new Log()
    const out = await setupBuilder(options({ driver: 'docker', driverOpts: ['network=host'] }), runner, log.sink)
    expect(runner.commands()).toEqual(['buildx version', 'buildx inspect'])
    expect(out.state).toEqual({ name: 'default', created: false, driver: 'docker' })
    expect(out.result).toMatchObject({ name: 'default', driver: 'docker', created: false })
    expect(out.result!.platforms).toContain('linux/riscv64')
    expect(log.notice).toEqual(["driver: docker uses the Docker daemon's own builder, so driver-opts is not applied"])
  })

  test("driver 'docker' when inspect fails is an ActionError naming driver", async () => {
    const runner = new FakeRunner()
      .on('buildx version', VERSION)
      .on('buildx inspect', { code: 1, stderr: 'ERROR: Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?\n' })
    const e = await rejection(setupBuilder(options({ driver: 'docker' }), runner, new Log().sink))
    expect(e).toBeInstanceOf(ActionError)
    expect(e.message).toMatch(/^driver: cannot inspect the current docker builder \(Cannot connect to the Docker daemon/)
  })

  test("mode 'auto' without the plugin: notice, no throw, nothing else run", async () => {
    const runner = new FakeRunner().on('buildx version', MISSING)
    const log = new Log()
    expect(await setupBuilder(options({ mode: 'auto' }), runner, log.sink)).toEqual({})
    expect(runner.commands()).toEqual(['buildx version'])
    expect(log.notice).toEqual([
      "docker buildx is not available (docker: 'buildx' is not a docker command.); skipping the builder. Set buildx: false to silence this",
    ])
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
      "buildx: docker buildx is not available (docker: 'buildx' is not a docker command.); install the Docker buildx plugin on the runner, or set buildx: auto to skip the builder where it is missing (or buildx: false)",
    )
    expect(e.message).not.toContain('\n')
  })

  test('bootstrap failure of a created builder: removed, then ActionError with the error line and the mirror hint', async () => {
    const runner = new FakeRunner()
      .on('buildx version', VERSION)
      .on('buildx inspect qemu-builder', NOT_FOUND)
      .on('buildx create --name qemu-builder --driver docker-container --use', {})
      .on('buildx inspect --bootstrap --builder qemu-builder', { code: 1, stderr: transcript('bootstrap-rate-limit.stderr.txt') })
      .on('buildx rm qemu-builder', {})
    const e = await rejection(setupBuilder(options(), runner, new Log().sink))
    expect(runner.commands().slice(-2)).toEqual(['buildx inspect --bootstrap --builder qemu-builder', 'buildx rm qemu-builder'])
    expect(e).toBeInstanceOf(ActionError)
    expect(e.message).toMatch(/^driver-opts: cannot start builder qemu-builder: Error response from daemon: toomanyrequests: You have reached your pull rate limit\./)
    expect(e.message).toContain('driver-opts: image=<mirror>/moby/buildkit:buildx-stable-1')
    expect(e.message).toContain('docker login')
    expect(e.message).not.toContain('\n')
  })

  test('bootstrap failure of a reused builder does not remove it', async () => {
    const runner = new FakeRunner()
      .on('buildx version', VERSION)
      .on('buildx inspect qemu-builder', { stdout: transcript('inspect-container-inactive.txt') })
      .on('buildx inspect --bootstrap --builder qemu-builder', { code: 1, stderr: transcript('bootstrap-rate-limit.stderr.txt') })
    const e = await rejection(setupBuilder(options(), runner, new Log().sink))
    expect(e).toBeInstanceOf(ActionError)
    expect(runner.commands()).not.toContain('buildx rm qemu-builder')
  })

  test('append failure removes the created builder and names append', async () => {
    const runner = new FakeRunner()
      .on('buildx version', VERSION)
      .on('buildx inspect qemu-builder', NOT_FOUND)
      .on('buildx create --name qemu-builder --driver docker-container --use', {})
      .on('buildx create --append --name qemu-builder ssh://ci@10.0.0.9', { code: 1, stderr: 'ERROR: failed to initialize builder qemu-builder (qemu-builder1): ssh: connect to host 10.0.0.9 port 22: Connection refused\n' })
      .on('buildx rm qemu-builder', {})
    const log = new Log()
    const e = await rejection(setupBuilder(options({ append: [{ endpoint: 'ssh://ci@10.0.0.9', platforms: [], driverOpts: [] }] }), runner, log.sink))
    expect(e.message).toMatch(/^append: cannot add node ssh:\/\/ci@10\.0\.0\.9 to builder qemu-builder \(failed to initialize builder .*Connection refused\)/)
    expect(runner.commands().at(-1)).toBe('buildx rm qemu-builder')
    expect(log.info).toContain('Removed the half-made builder qemu-builder')
  })

  test('create failure names the input at fault and removes nothing (buildx rolled back)', async () => {
    const runner = new FakeRunner()
      .on('buildx version', VERSION)
      .on('buildx inspect qemu-builder', NOT_FOUND)
      .on('buildx create --name qemu-builder --driver docker-container --driver-opt memory --use', { code: 1, stderr: 'ERROR: invalid value "memory", expecting k=v\n' })
    const e = await rejection(setupBuilder(options({ driverOpts: ['memory'] }), runner, new Log().sink))
    expect(e).toBeInstanceOf(ActionError)
    expect(e.message).toMatch(/^driver-opts: cannot create builder qemu-builder \(invalid value "memory", expecting k=v\); each driver-opts entry must be key=value/)
    expect(runner.commands()).not.toContain('buildx rm qemu-builder')
  })

  test("mode 'auto' with the plugin but no reachable daemon: notice, no throw", async () => {
    const down = { code: 1, stderr: 'ERROR: Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?\n' }
    const script = (): FakeRunner =>
      new FakeRunner()
        .on('buildx version', VERSION)
        .on('buildx inspect qemu-builder', NOT_FOUND)
        .on('buildx create --name qemu-builder --driver docker-container --use', down)
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
      .on('buildx inspect qemu-builder', NOT_FOUND)
      .on('buildx create --name qemu-builder --driver podman --use', { code: 1, stderr: 'ERROR: failed to find driver "podman"\n' })
    const e = await rejection(setupBuilder(options({ driver: 'podman' }), runner, new Log().sink))
    expect(e.message).toMatch(/^driver: cannot create builder qemu-builder \(failed to find driver "podman"\); check the driver/)
  })

  test('a failure to remove after a failed bootstrap is a notice; the bootstrap error still surfaces', async () => {
    const runner = new FakeRunner()
      .on('buildx version', VERSION)
      .on('buildx inspect qemu-builder', NOT_FOUND)
      .on('buildx create --name qemu-builder --driver docker-container --use', {})
      .on('buildx inspect --bootstrap --builder qemu-builder', { code: null, signal: 'SIGTERM' })
      .on('buildx rm qemu-builder', { code: 1, stderr: 'ERROR: permission denied\n' })
    const log = new Log()
    const e = await rejection(setupBuilder(options(), runner, log.sink))
    expect(e.message).toMatch(/^driver-opts: cannot start builder qemu-builder: killed by SIGTERM, probably a timeout;/)
    expect(log.notice).toEqual([expect.stringMatching(/Could not remove builder qemu-builder after the failure \(permission denied\)/)])
  })
})

describe('cleanupBuilder', () => {
  test('removes a builder this action created', async () => {
    const runner = new FakeRunner().on('buildx rm qemu-builder', {})
    const log = new Log()
    await cleanupBuilder({ name: 'qemu-builder', created: true, driver: 'docker-container' }, runner, log.sink)
    expect(runner.commands()).toEqual(['buildx rm qemu-builder'])
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
      new FakeRunner().on('buildx rm qemu-builder', { code: 1, stderr: 'ERROR: Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?\n' }),
      log.sink,
    )
    await cleanupBuilder(
      { name: 'qemu-builder', created: true, driver: 'docker-container' },
      new FakeRunner().on('buildx rm qemu-builder', new Error('spawn docker ENOENT')),
      log.sink,
    )
    expect(log.warning).toEqual([
      'Could not remove builder qemu-builder: Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?; remove it with docker buildx rm qemu-builder',
      'Could not remove builder qemu-builder: spawn docker ENOENT',
    ])
  })

  test('an already removed builder is not a warning', async () => {
    const log = new Log()
    await cleanupBuilder({ name: 'qemu-builder', created: true, driver: 'docker-container' }, new FakeRunner().on('buildx rm qemu-builder', NOT_FOUND), log.sink)
    expect(log.warning).toEqual([])
    expect(log.info).toEqual(['Builder qemu-builder is already gone'])
  })

  test('empty or partial state does nothing', async () => {
    const runner = new FakeRunner()
    await cleanupBuilder({} as never, runner, new Log().sink)
    expect(runner.calls).toEqual([])
  })
})

describe('meaningfulError', () => {
  test('the last ERROR line of bootstrap progress output', () => {
    expect(meaningfulError(transcript('bootstrap-rate-limit.stderr.txt'))).toMatch(/^Error response from daemon: toomanyrequests: /)
  })

  test('skips --help pointers and usage', () => {
    expect(meaningfulError(transcript('buildx-missing.stderr.txt'))).toBe("docker: 'buildx' is not a docker command.")
    expect(meaningfulError("docker: unknown command: docker buildx\n\nRun 'docker --help' for more information\n")).toBe('docker: unknown command: docker buildx')
    expect(meaningfulError(transcript('ls-unknown-flag.stderr.txt'))).toBe('unknown flag: --format')
  })

  test('progress-only ERROR lines, colour codes, empty text', () => {
    expect(meaningfulError('#1 [internal] booting buildkit\n#1 ERROR: no space left on device\n------\n')).toBe('no space left on device')
    expect(meaningfulError('\x1b[31mfailed to dial\x1b[0m\n')).toBe('failed to dial')
    expect(meaningfulError('\n\n')).toBe('')
  })
})
