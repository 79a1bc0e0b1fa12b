// Creates (or reuses) and bootstraps the `docker buildx` builder once emulators are
// registered, so BuildKit starts after them and lists the emulated platforms.
// Every docker command goes through the Docker wrapper over a ProcessRunner, so it
// is unit-tested over recorded command lines.

import * as fs from 'fs'
import * as path from 'path'
import { Docker, commandLine } from '../docker/command'
import { ActionError, errorMessage } from '../errors'
import { ProcessRunner, RunResult, failureReason } from '../process'
import { BUILDX_MS, pause } from '../timeouts'
import {
  appendArgs,
  bootstrapArgs,
  containerRmArgs,
  createArgs,
  firstNodeName,
  inspectArgs,
  lsJsonArgs,
  rmArgs,
  useArgs,
  versionArgs,
  volumeRmArgs,
} from './commands'
import { ParsedBuilder, parseInspect, parseLsJson, unionPlatforms } from './inspect'
import { AppendNode, BuilderNode, BuilderOptions, BuilderResult, BuilderState } from './types'

interface BuilderLog {
  info(s: string): void
  notice(s: string): void
  warning(s: string): void
  debug(s: string): void
}

interface CleanupLog {
  info(s: string): void
  warning(s: string): void
  debug(s: string): void
}

const SECOND = 1000

const DAEMON_DOWN = /Cannot connect to the Docker daemon|Is the docker daemon running|docker\.sock: connect: (no such file|permission denied)/i

const DEFAULT_IMAGE = 'moby/buildkit:buildx-stable-1'
const MIRROR_HINT = `use a mirror with driver-opts: image=<mirror>/${DEFAULT_IMAGE}, or run docker login before this step`
// What a failed image pull looks like in buildx/dockerd output.
const PULL_FAILED = /pull|registry|manifest|toomanyrequests|rate limit|unauthorized|denied|no such host|dial tcp|TLS handshake|x509|i\/o timeout/i
// Failures worth one more try: the network or the registry, not the request.
const TRANSIENT =
  /toomanyrequests|rate limit|timeout|timed out|temporar|connection (reset|refused)|\bEOF\b|no such host|i\/o|TLS handshake|\b50[0234]\b|service unavailable|bad gateway|internal server error|dial tcp/i
const PERMANENT = /manifest unknown|not found|pull access denied|invalid reference|repository does not exist|unauthorized/i
const RETRY_DELAY = 5 * SECOND

/** A builder that cannot be had; under `buildx: auto` it is a warning, under `true` the step fails. */
class BuilderFailure extends ActionError {}

export async function setupBuilder(
  opts: BuilderOptions,
  runner: ProcessRunner,
  log: BuilderLog,
  /** removes a half-made builder: one that cancellation does not stop, so that a cancelled step still removes it */
  removal: ProcessRunner = runner,
): Promise<{ result?: BuilderResult; state?: BuilderState }> {
  if (opts.mode === 'false') return {}
  const docker = new Docker(runner, log)

  const buildx = await buildxVersion(docker)
  if (!buildx.ok) {
    if (opts.mode === 'auto') {
      log.notice(`docker buildx is not available (${buildx.reason}); skipping the builder. Set buildx: false to silence this`)
      return {}
    }
    throw missingBuildx(buildx.reason)
  }
  log.info(`Using ${buildx.version}`)

  try {
    if (opts.driver === 'docker') return await currentBuilder(opts, docker, log)

    const existing = await docker.run(inspectArgs(opts.name), { timeoutMs: BUILDX_MS.quick })
    if (existing.code === 0) return await reuseBuilder(opts, parseInspect(existing.stdout), docker, log)
    log.debug(`no builder named ${opts.name} yet (${failureReason(existing, BUILDX_MS.quick)})`)
    return await createBuilder(opts, docker, log, new Docker(removal, log))
  } catch (e) {
    // `auto` means "a builder if possible": the emulators are there and work without one.
    if (opts.mode === 'auto' && e instanceof BuilderFailure) {
      log.warning(`${e.message}; going on without a builder (buildx: auto), set buildx: true to make this fail the step`)
      return {}
    }
    throw e
  }
}

function missingBuildx(reason: string): ActionError {
  return new ActionError(
    `buildx: docker buildx is not available (${reason}); install the Docker buildx plugin on the runner, ` +
      'or set buildx: auto to skip the builder where it is missing (or buildx: false)',
  )
}

/** With buildx: true, a missing plugin is known before anything is downloaded or registered: fail then. */
export async function requireBuildx(mode: BuilderOptions['mode'], runner: ProcessRunner): Promise<void> {
  if (mode !== 'true') return
  const buildx = await buildxVersion(new Docker(runner, { info: () => undefined, debug: () => undefined }))
  if (!buildx.ok) throw missingBuildx(buildx.reason)
}

/** Removes the builder the main step created; never throws (a post step must not fail the job). */
export async function cleanupBuilder(state: BuilderState, runner: ProcessRunner, log: CleanupLog): Promise<void> {
  if (!state || !state.name) return
  if (!state.created || state.driver === 'docker') {
    log.info(`Leaving builder ${state.name} in place: this action did not create it`)
    return
  }
  try {
    const r = await new Docker(runner, log).run(rmArgs(state.name), { timeoutMs: BUILDX_MS.create })
    if (r.code === 0) {
      log.info(`Removed builder ${state.name}`)
    } else if (/no builder .* found/i.test(r.stderr)) {
      log.info(`Builder ${state.name} is already gone`)
    } else {
      log.warning(`Could not remove builder ${state.name}: ${failureReason(r, BUILDX_MS.create)}; remove it with docker buildx rm ${state.name}`)
    }
  } catch (e) {
    log.warning(`Could not remove builder ${state.name}: ${errorMessage(e)}`)
  }
}

async function buildxVersion(docker: Docker): Promise<{ ok: true; version: string } | { ok: false; reason: string }> {
  let r: RunResult
  try {
    r = await docker.run(versionArgs(), { timeoutMs: BUILDX_MS.quick })
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code
    return { ok: false, reason: code === 'ENOENT' ? 'docker was not found on PATH' : errorMessage(e) }
  }
  if (r.code !== 0) return { ok: false, reason: failureReason(r, BUILDX_MS.quick) }
  const version = r.stdout.trim().split('\n')[0]
  return { ok: true, version: version ? `buildx ${version.replace(/^github\.com\/docker\/buildx\s+/, '')}` : 'docker buildx' }
}

/** driver: docker: the context's own builder (inside dockerd) cannot be created or removed; just report it. */
async function currentBuilder(opts: BuilderOptions, docker: Docker, log: BuilderLog): Promise<{ result: BuilderResult; state: BuilderState }> {
  const ignored = ignoredSettings(opts)
  if (ignored.length) {
    log.notice(`driver: docker uses the Docker daemon's own builder, so ${ignored.join(', ')} ${ignored.length > 1 ? 'are' : 'is'} not applied`)
  }
  const r = await docker.run(inspectArgs(), { timeoutMs: BUILDX_MS.quick })
  if (r.code !== 0) {
    throw new BuilderFailure(
      `driver: cannot inspect the current docker builder (${failureReason(r, BUILDX_MS.quick)}); check that the Docker daemon is running, or use driver: docker-container`,
    )
  }
  const parsed = parseInspect(r.stdout)
  const name = parsed.name || 'default'
  if (parsed.driver && parsed.driver !== 'docker') {
    log.info(`The current builder ${name} uses the ${parsed.driver} driver (set earlier with docker buildx use); reporting it as it is`)
  }
  const state: BuilderState = { name, created: false, driver: 'docker' }
  return { result: finish(opts, parsed, name, false, log), state }
}

async function reuseBuilder(
  opts: BuilderOptions,
  existing: ParsedBuilder,
  docker: Docker,
  log: BuilderLog,
): Promise<{ result: BuilderResult; state: BuilderState }> {
  const driver = existing.driver || opts.driver
  log.info(`Builder ${opts.name} already exists (driver ${driver}); reusing it as it is`)
  // Never clobber a builder someone else set up: its own settings win.
  const ignored = ignoredSettings(opts)
  if (existing.driver && existing.driver !== opts.driver) ignored.unshift(`driver (${opts.driver})`)
  if (ignored.length) {
    log.notice(
      `builder-name: builder ${opts.name} already exists, so ${ignored.join(', ')} ${ignored.length > 1 ? 'are' : 'is'} not applied to it; ` +
        'choose another builder-name to get a builder with these settings',
    )
  }
  const boot = await bootstrap(opts, opts.name, docker, log)
  if (opts.use) {
    const r = await docker.run(useArgs(opts.name), { timeoutMs: BUILDX_MS.quick })
    if (r.code !== 0)
      throw new BuilderFailure(`use: cannot make ${opts.name} the current builder (${failureReason(r, BUILDX_MS.quick)}); set use: false or check the builder`)
  }
  const parsed = await readBuilder(opts.name, boot, docker, log)
  const state: BuilderState = { name: opts.name, created: false, driver: parsed.driver || driver }
  return { result: finish(opts, parsed, opts.name, false, log), state }
}

async function createBuilder(
  opts: BuilderOptions,
  docker: Docker,
  log: BuilderLog,
  removal: Docker,
): Promise<{ result?: BuilderResult; state?: BuilderState }> {
  let configFile: string | undefined
  if (opts.configInline.trim()) {
    configFile = path.join(opts.tempDir, `buildkitd-${opts.name.replace(/[^A-Za-z0-9._-]/g, '_')}.toml`)
    await fs.promises.mkdir(opts.tempDir, { recursive: true })
    await fs.promises.writeFile(configFile, opts.configInline)
  }

  log.info(`Creating builder ${opts.name} (driver ${opts.driver}${opts.endpoint ? `, endpoint ${opts.endpoint}` : ''})`)
  let created: RunResult
  try {
    created = await docker.run(createArgs(opts, configFile), { timeoutMs: BUILDX_MS.create, loud: true })
  } catch (e) {
    // Cancelled halfway: buildx may have stored the builder already; the name is ours (no builder had it).
    await removeAfterFailure(opts, removal, log)
    throw e
  } finally {
    // buildx copies the config into its own store at create, so the file is done with.
    if (configFile) await fs.promises.rm(configFile, { force: true })
  }
  if (created.code === null) {
    // Killed (its time ran out): buildx had no chance to roll back.
    await removeAfterFailure(opts, removal, log)
  }
  if (created.code !== 0) {
    // buildx rolls a failed create back itself: there is nothing to remove.
    const reason = failureReason(created, BUILDX_MS.create)
    // The plugin works without a daemon; `auto` also means "skip where Docker cannot run containers".
    if (opts.mode === 'auto' && !opts.endpoint && DAEMON_DOWN.test(reason)) {
      log.notice(`the Docker daemon is not reachable (${reason}); skipping the builder. Set buildx: false to silence this`)
      return {}
    }
    const input = createInputAtFault(reason, opts)
    throw new BuilderFailure(`${input}: cannot create builder ${opts.name} (${reason}); ${createFix(input)}`)
  }

  // From here on the builder exists because of us: any failure removes it again.
  try {
    for (const node of opts.append) await appendNode(opts.name, node, docker, log)
    const boot = await bootstrap(opts, opts.name, docker, log)
    const parsed = await readBuilder(opts.name, boot, docker, log)
    const state: BuilderState = { name: opts.name, created: true, driver: parsed.driver || opts.driver }
    return { result: finish(opts, parsed, opts.name, true, log), state }
  } catch (e) {
    await removeAfterFailure(opts, removal, log)
    throw e
  }
}

async function appendNode(name: string, node: AppendNode, docker: Docker, log: BuilderLog): Promise<void> {
  const label = node.name ? `${node.name} (${node.endpoint})` : node.endpoint
  log.info(`Adding node ${label} to builder ${name}`)
  const r = await docker.run(appendArgs(name, node), { timeoutMs: BUILDX_MS.create, loud: true })
  if (r.code !== 0) {
    throw new BuilderFailure(
      `append: cannot add node ${label} to builder ${name} (${failureReason(r, BUILDX_MS.create)}); check its endpoint, platforms and driver-opts`,
    )
  }
}

/**
 * Starts the builder's nodes; returns inspect's output (it prints the builder once booted)
 * for use if nothing better is available. A transient failure (registry or network) is
 * tried once more; the error says what failed: the image pull, a timeout, or the start.
 */
async function bootstrap(opts: BuilderOptions, name: string, docker: Docker, log: BuilderLog): Promise<string> {
  log.info(`Booting builder ${name}`)
  let r = await docker.run(bootstrapArgs(name), { timeoutMs: BUILDX_MS.bootstrap, loud: true })
  if (r.code !== 0 && r.code !== null) {
    const reason = failureReason(r, BUILDX_MS.bootstrap)
    if (TRANSIENT.test(reason) && !PERMANENT.test(reason)) {
      const delay = opts.retryDelayMs ?? RETRY_DELAY
      log.info(`Builder ${name} did not start (${reason}); trying once more in ${Math.round(delay / SECOND)} s`)
      // Cut short by cancellation: the step has seconds left, and the builder is still to be removed.
      await pause(delay, opts.cancel)
      r = await docker.run(bootstrapArgs(name), { timeoutMs: BUILDX_MS.bootstrap, loud: true })
    }
  }
  if (r.code !== 0) throw new BuilderFailure((await nodeDownError(opts, name, r, docker, log)) ?? bootstrapError(opts, name, r))
  return r.stdout
}

/**
 * A builder with nodes at other addresses (driver remote, or append) that does not start: buildx
 * says only why ("context deadline exceeded"), not which node. inspect tells: the first node not
 * running is blamed, on endpoint (the first node) or append (an appended one).
 */
async function nodeDownError(opts: BuilderOptions, name: string, r: RunResult, docker: Docker, log: BuilderLog): Promise<string | undefined> {
  if (r.code === null || (opts.driver !== 'remote' && !opts.append.length)) return undefined
  const reason = failureReason(r, BUILDX_MS.bootstrap)
  const inspect = await tryRun(docker, inspectArgs(name), log)
  if (!inspect || inspect.code !== 0) return undefined
  const nodes = parseInspect(inspect.stdout).nodes
  const down = nodes.findIndex(n => n.status !== 'running')
  if (down < 0) return undefined
  const node = nodes[down]
  if (down === 0) {
    if (opts.driver !== 'remote') return undefined
    return `endpoint: builder ${name} could not start: no BuildKit answered at ${node.endpoint || opts.endpoint} (${reason}); start buildkitd there or fix endpoint`
  }
  return (
    `append: node ${node.name} (${node.endpoint}) of builder ${name} did not start (${reason}); ` +
    'start its BuildKit or fix its endpoint, or leave it out of append'
  )
}

function bootstrapError(opts: BuilderOptions, name: string, r: RunResult): string {
  const reason = failureReason(r, BUILDX_MS.bootstrap)
  if (r.code === null) {
    return `builder ${name} did not start within ${BUILDX_MS.bootstrap / 60 / SECOND} minutes (${reason}); check the Docker daemon and the network to the registry`
  }
  if (PULL_FAILED.test(reason)) {
    const image = opts.driverOpts.map(o => /^image=(.+)$/.exec(o)?.[1]).find(Boolean)
    if (image) {
      return `driver-opts: builder ${name} could not start: its BuildKit image ${image} (driver-opts image=) could not be pulled (${reason}); check that image and its registry, or run docker login before this step`
    }
    return `builder ${name} could not start: the BuildKit image could not be pulled (${reason}); ${MIRROR_HINT}`
  }
  const shaping = ['buildkitd-flags', 'buildkitd-config-inline', 'driver-opts'].filter(
    k =>
      (k === 'buildkitd-flags' && opts.buildkitdFlags) ||
      (k === 'buildkitd-config-inline' && opts.configInline.trim()) ||
      (k === 'driver-opts' && opts.driverOpts.length),
  )
  const check = shaping.length ? `check ${shaping.join(', ')}` : 'check the Docker daemon (docker info) and the driver'
  return `builder ${name} could not start (${reason}); ${check}`
}

/**
 * The builder as buildx reports it after booting: `ls --format json` where this buildx
 * has it, else `inspect NAME`, else what the bootstrap printed. JSON carries no '*'
 * for user-set platforms, so those are taken from the text when it names the same node.
 */
async function readBuilder(name: string, bootOutput: string, docker: Docker, log: BuilderLog): Promise<ParsedBuilder> {
  const fromBoot = parseInspect(bootOutput)
  const ls = await tryRun(docker, lsJsonArgs(), log)
  const json = ls && ls.code === 0 ? parseLsJson(ls.stdout, name) : undefined
  if (json && json.nodes.length) {
    for (const node of json.nodes) {
      const text = fromBoot.nodes.find(n => n.name === node.name)
      if (text?.preferred && !node.preferred) node.preferred = text.preferred.filter(p => node.platforms.includes(p))
    }
    return json
  }
  log.debug(`docker buildx ls --format json gave nothing usable${ls ? ` (${failureReason(ls, BUILDX_MS.quick)})` : ''}; reading docker buildx inspect ${name}`)
  const inspect = await tryRun(docker, inspectArgs(name), log)
  if (inspect && inspect.code === 0) {
    const parsed = parseInspect(inspect.stdout)
    if (parsed.nodes.length) return parsed
  }
  return fromBoot
}

function finish(opts: BuilderOptions, parsed: ParsedBuilder, name: string, created: boolean, log: BuilderLog): BuilderResult {
  const nodes = parsed.nodes.map((n, i) => placeNode(opts, n, i, parsed.nodes))
  const result: BuilderResult = {
    name,
    driver: parsed.driver || opts.driver,
    created,
    nodes,
    platforms: unionPlatforms(nodes),
  }
  for (const n of result.nodes) {
    if (n.error || (n.status && n.status !== 'running')) {
      log.notice(`Builder ${result.name}: node ${n.name} is ${n.status || 'not running'}${n.error ? ` (${n.error})` : ''}; builds for its platforms may fail`)
    }
    if (n.notRunning?.length) {
      log.info(
        `Builder ${result.name}: node ${n.name} lists ${n.notRunning.join(', ')}, which ${n.notRunning.length > 1 ? 'do' : 'does'} not run on this runner ` +
          '(no verified emulator); left out of platforms',
      )
    }
  }
  warnMissingPlatforms(opts, parsed.nodes, result, log)
  log.info(`Builder ${result.name} (${result.driver}) platforms: ${result.platforms.join(', ') || 'none reported'}`)
  return result
}

/**
 * A node on this runner (the builder's first node, unless it is a `remote` driver's BuildKit
 * at a network address; or another at the same or a local socket endpoint) has its platforms
 * held against what runs here: a BuildKit keeps listing platforms of emulators registered
 * when it started (dockerd's embedded one does), even when they are gone or never worked. A
 * node elsewhere (an appended one, or a remote primary at tcp://...) is reported as it
 * declares itself: this runner cannot check it.
 */
function placeNode(opts: BuilderOptions, node: BuilderNode, index: number, all: readonly BuilderNode[]): BuilderNode {
  const firstLocal = opts.driver !== 'remote' || all[0].endpoint.startsWith('unix://')
  const local = (firstLocal && (index === 0 || node.endpoint === all[0].endpoint)) || node.endpoint.startsWith('unix://')
  if (!local) return { ...node, remote: true }
  if (!opts.platforms.length) return { ...node, remote: false }
  const here = new Set(opts.platforms.map(normalizePlatform))
  const runs = (p: string): boolean => here.has(normalizePlatform(p))
  const out: BuilderNode = { ...node, remote: false, platforms: node.platforms.filter(runs) }
  if (node.preferred) {
    const preferred = node.preferred.filter(runs)
    if (preferred.length) out.preferred = preferred
    else delete out.preferred
  }
  const dropped = node.platforms.filter(p => !runs(p))
  if (dropped.length) out.notRunning = dropped
  return out
}

/**
 * BuildKit detects emulated platforms when it starts, so a builder started before the
 * emulators were registered (typically a reused one) does not list them. Only emulated
 * platforms are compared: native ones (linux/amd64/v2.. are CPU levels) need no emulator.
 */
function warnMissingPlatforms(opts: BuilderOptions, listed: readonly BuilderNode[], result: BuilderResult, log: BuilderLog): void {
  if (!opts.emulated.length || !listed.some(n => n.platforms.length)) return
  const have = new Set(listed.flatMap(n => n.platforms).map(normalizePlatform))
  const missing = opts.emulated.filter(p => !have.has(normalizePlatform(p)))
  if (!missing.length) return
  const why = result.created
    ? 'builds for them may fail'
    : `it was probably started before they were registered: restart it (docker buildx stop ${result.name}) or choose a new builder-name`
  log.notice(`Builder ${result.name} does not list ${missing.join(', ')}, which the registered emulators provide; ${why}`)
}

function normalizePlatform(p: string): string {
  const q = p.trim().toLowerCase().replace(/\*+$/, '')
  if (q === 'linux/arm64/v8') return 'linux/arm64'
  if (q === 'linux/arm') return 'linux/arm/v7'
  return q
}

/** Inputs that only shape a new builder; reported when they cannot apply. */
function ignoredSettings(opts: BuilderOptions): string[] {
  const out: string[] = []
  if (opts.endpoint) out.push('endpoint')
  if (opts.driverOpts.length) out.push('driver-opts')
  if (opts.buildkitdFlags) out.push('buildkitd-flags')
  if (opts.configInline.trim()) out.push('buildkitd-config-inline')
  if (opts.append.length) out.push('append')
  return out
}

function createInputAtFault(reason: string, opts: BuilderOptions): string {
  if (
    opts.endpoint &&
    /context|endpoint|docker host|cannot connect|dial|connection refused|no such host|not found|does not exist|unix:|tcp:|ssh:/i.test(reason)
  )
    return 'endpoint'
  if (/driver.?opt|expecting k=v/i.test(reason) && opts.driverOpts.length) return 'driver-opts'
  if (/buildkitd.?flags|flag/i.test(reason) && opts.buildkitdFlags) return 'buildkitd-flags'
  if (/config|toml/i.test(reason) && opts.configInline.trim()) return 'buildkitd-config-inline'
  if (/reserved|name/i.test(reason) && opts.nameGiven) return 'builder-name'
  return 'driver'
}

function createFix(input: string): string {
  switch (input) {
    case 'driver-opts':
      return 'each driver-opts entry must be key=value as docker buildx create --driver-opt takes it'
    case 'buildkitd-flags':
      return 'check buildkitd-flags against buildkitd --help'
    case 'buildkitd-config-inline':
      return 'buildkitd-config-inline must be a valid buildkitd.toml'
    case 'endpoint':
      return 'give an existing Docker context (docker context ls) or Docker host for docker-container, or the address of a running buildkitd (tcp://host:port, unix:///path) for driver remote'
    case 'builder-name':
      return 'choose another builder-name (letters, digits, . _ -; not "default")'
    default:
      return 'check the driver, driver-opts, buildkitd-flags and buildkitd-config-inline inputs'
  }
}

/**
 * Removes a builder this step was making. A step cancelled while docker was creating the
 * node's container can leave one buildx does not know of yet (dockerd finishes a request its
 * client dropped): on this runner's daemon it is removed by name, with its state volume.
 */
async function removeAfterFailure(opts: BuilderOptions, docker: Docker, log: BuilderLog): Promise<void> {
  const name = opts.name
  try {
    const r = await docker.run(rmArgs(name), { timeoutMs: BUILDX_MS.create })
    if (r.code === 0) log.info(`Removed the half-made builder ${name}`)
    else if (/no builder .* found/i.test(r.stderr)) log.debug(`builder ${name} was not stored yet`)
    else log.notice(`Could not remove builder ${name} after the failure (${failureReason(r, BUILDX_MS.create)}); remove it with docker buildx rm ${name}`)
    if (opts.driver === 'docker-container' && !opts.endpoint) {
      const node = firstNodeName(name)
      await docker.run(containerRmArgs(node), { timeoutMs: BUILDX_MS.quick })
      await docker.run(volumeRmArgs(node), { timeoutMs: BUILDX_MS.quick })
    }
  } catch (e) {
    log.notice(`Could not remove builder ${name} after the failure (${errorMessage(e)})`)
  }
}

/** For optional reads: a failure to even start is reported as "no answer". */
async function tryRun(docker: Docker, args: string[], log: BuilderLog): Promise<RunResult | undefined> {
  try {
    return await docker.run(args, { timeoutMs: BUILDX_MS.quick })
  } catch (e) {
    log.debug(`${commandLine(args)} could not run: ${errorMessage(e)}`)
    return undefined
  }
}
