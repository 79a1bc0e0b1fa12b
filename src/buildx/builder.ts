// The `docker buildx` builder step, in two parts so that it overlaps the emulator steps:
// startBuilder creates (or reuses), appends and boots the builder (image pull, container,
// BuildKit start) as soon as the inputs are valid; finishBuilder, once emulators are
// registered and verified, reads the builder's platforms (BuildKit re-detects emulators
// when its workers are listed, so ones registered after it booted are there) and makes the
// result and the post step's state; abandonBuilder removes what the start made when the
// emulator step fails. setupBuilder is both, one after the other.
// Every docker command goes through the Docker wrapper over a ProcessRunner, so it
// is unit-tested over recorded command lines.

import * as fs from 'fs'
import * as path from 'path'
import { Docker, EngineCli, commandLine } from '../docker/command'
import { ActionError, errorMessage } from '../errors'
import { CancelledError, ProcessRunner, RunResult, failureReason } from '../process'
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
import { PluginLookup } from './plugin'
import { Log } from '../log'

/** What the builder step says; the notice is for a builder skipped under buildx: auto. */
type BuilderLog = Pick<Log, 'info' | 'notice' | 'warning' | 'debug'>
/** What the post step's removal says. */
type CleanupLog = Pick<Log, 'info' | 'warning' | 'debug'>

const SECOND = 1000

/** buildx has no builder of that name (inspect, rm). */
const NOT_STORED = /no builder .* found/i
/** create refused: a builder of that name is there already (it stored nothing). */
const EXISTING = /existing instance for/i
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

/** What the start needs: everything but the platforms, which are known only once the emulators are registered and verified. */
export type BuilderStartOptions = Omit<BuilderOptions, 'platforms' | 'emulated'> & {
  /**
   * Called when this step is about to create a builder (where nothing is appended, one create both stores and boots it), with
   * the state the post step needs: a caller may save it then, so that a main step that dies before
   * the finish still has its builder removed by the post step.
   */
  onCreated?: (state: BuilderState) => void
  /**
   * The buildx plugin to run directly for the builder's commands where findBuildxPlugin found it beyond
   * doubt, sparing docker's plugin scan on the builder's way; `docker buildx version` still goes
   * through docker, as the check that docker has buildx at all.
   */
  buildxPlugin?: PluginLookup
}

/** What the start left for the finish (internal). */
type StartOutcome =
  /** nothing to finish: buildx: false, or under auto no plugin or no daemon (already said) */
  | { kind: 'none' }
  /** the builder is there and booted (the docker driver's is only looked at in the finish) */
  | { kind: 'ready'; how: 'current' | 'reused' | 'created'; name: string; driver: string; boot: string }
  /** why there is no builder: a BuilderFailure (a warning under auto), a CancelledError, or any other error */
  | { kind: 'failed'; error: unknown }

/**
 * A builder being started (startBuilder): image pull, container create and boot run while the
 * caller fetches, registers and verifies emulators. Neither promise ever rejects, so nothing
 * is unhandled while the caller is busy elsewhere; failures are reported by finishBuilder.
 */
export interface BuilderStart {
  readonly opts: BuilderStartOptions
  /**
   * Settles once `docker buildx version` answered: the error to fail the step with before
   * anything is downloaded (buildx: true and no plugin), else undefined. Never rejects.
   */
  readonly preflight: Promise<ActionError | undefined>
  /** Settles when the start is over (made, failed or skipped). Never rejects. */
  readonly settled: Promise<void>
  /** @internal */
  readonly outcome: Promise<StartOutcome>
  /** @internal the start's log lines, held back until the finish (or abandon) shows them in its place */
  readonly held: HeldLog
  /**
   * @internal settles when the start's lines are ready to show: buildx answered that it is there (its
   * version line leads them), or the start is over (without buildx its lines are dropped for one notice)
   */
  readonly answered: Promise<void>
  /** @internal */
  readonly started: number
  /** @internal */
  readonly io: { docker: Docker; removal: Docker; log: BuilderLog }
}

export interface BuilderFinish {
  result?: BuilderResult
  state?: BuilderState
  /** ms: how long the start took, and how long the finish waited for it (0 when it was over already) */
  timings?: { builderStart: number; builderWait: number }
}

/**
 * Lines logged by the start, which runs beside other steps: kept, in order, and written to
 * the real log when the finish (or abandon) begins, so that they appear together under the
 * builder's heading instead of inside the emulator steps' groups; from then on they go
 * straight through (a start still booting shows its progress, e.g. a retry, as it happens).
 */
class HeldLog implements BuilderLog {
  private lines: [keyof BuilderLog, string][] | undefined = []
  constructor(private readonly target: BuilderLog) {}
  info(s: string): void {
    this.put('info', s)
  }
  notice(s: string): void {
    this.put('notice', s)
  }
  warning(s: string): void {
    this.put('warning', s)
  }
  debug(s: string): void {
    this.put('debug', s)
  }
  /** A line that belongs before everything held so far (an answer that came in after later lines). */
  lead(level: keyof BuilderLog, s: string): void {
    if (this.lines) this.lines.unshift([level, s])
    else this.target[level](s)
  }
  /** Forgets what is held (not what was written already). */
  drop(): void {
    if (this.lines) this.lines = []
  }
  /** Writes what was held; from then on lines go straight through. */
  release(): void {
    const lines = this.lines
    this.lines = undefined
    for (const [level, s] of lines ?? []) this.target[level](s)
  }
  private put(level: keyof BuilderLog, s: string): void {
    if (this.lines) this.lines.push([level, s])
    else this.target[level](s)
  }
}

/**
 * Starts getting the builder: the preflight (`buildx version`), then create (or reuse) the
 * builder, append its nodes and boot it (image pull, container create, BuildKit start).
 * Call it as soon as the inputs are valid; the caller then registers and verifies emulators
 * and calls finishBuilder (or abandonBuilder when its own step failed). Returns at once.
 * A builder this start created that cannot be completed (a failure, or opts.cancel) is
 * removed through `removal`, a runner cancellation does not stop.
 */
export function startBuilder(
  opts: BuilderStartOptions,
  runner: ProcessRunner,
  log: BuilderLog,
  /** removes a half-made builder: one that cancellation does not stop, so that a cancelled step still removes it */
  removal: ProcessRunner = runner,
): BuilderStart {
  const held = new HeldLog(log)
  const plugin = opts.buildxPlugin?.path
  const engine: EngineCli = { cli: 'docker', ...(plugin ? { buildx: plugin } : {}) }
  const docker = new Docker(runner, held, engine)
  const removalDocker = new Docker(removal, held, engine)
  let preflightDone: (e: ActionError | undefined) => void = () => undefined
  const preflight = new Promise<ActionError | undefined>(resolve => (preflightDone = resolve))
  let answeredDone: () => void = () => undefined
  const answered = new Promise<void>(resolve => (answeredDone = resolve))
  const outcome = (async (): Promise<StartOutcome> => {
    if (opts.mode === 'false') return { kind: 'none' }
    const lookup = opts.buildxPlugin
    if (lookup)
      held.debug(lookup.path ? `running the buildx plugin ${lookup.path} directly for the builder's commands` : `running docker buildx: ${lookup.why}`)
    // The builder's first command is started first (its way is the long one); `buildx version` runs beside it,
    // not before it: its answer decides the preflight, and what a failed first command means.
    const making = settled(getBuilder(opts, docker, held, removalDocker))
    const version = buildxVersion(new Docker(runner, held)).then(v => ({ ...v, error: v.ok ? undefined : missingBuildx(v.reason) }))
    void version.then(
      v => {
        preflightDone(opts.mode === 'true' ? v.error : undefined)
        if (v.ok) answeredDone()
      },
      () => preflightDone(undefined),
    )
    const made = await making
    const answer = await settled(version)
    const buildx = answer.ok ? answer.value : undefined
    if (!buildx?.ok) {
      // No plugin (or stopped): what the first command made goes (it failed too, unless the answer was only slow).
      if (made.ok && made.value.kind === 'ready' && made.value.how === 'created') await removeAfterFailure(opts, removalDocker, held)
      if (!buildx) throw (answer as { error: unknown }).error
      // What the first command said (a create that could not run) is beside the point: the plugin is missing.
      held.drop()
      if (opts.mode === 'auto') {
        held.notice(`docker buildx is not available (${buildx.reason}); skipping the builder. Set buildx: false to silence this`)
        return { kind: 'none' }
      }
      return { kind: 'failed', error: buildx.error }
    }
    held.lead('info', `Using ${buildx.version}`)
    if (!made.ok) throw made.error
    return made.value
  })().catch((error: unknown): StartOutcome => ({ kind: 'failed', error }))
  // Whatever happened, the preflight is over once the start is.
  void outcome.then(() => {
    preflightDone(undefined)
    answeredDone()
  })
  return {
    opts,
    preflight,
    answered,
    settled: outcome.then(() => undefined),
    outcome,
    held,
    started: performance.now(),
    io: { docker: new Docker(runner, log, engine), removal: new Docker(removal, log, engine), log },
  }
}

/**
 * Completes a started builder once the emulators are registered and verified: waits for the
 * start, shows its log lines, reads the builder's platforms now (BuildKit re-detects emulators
 * when asked for its workers, so ones registered after it booted are listed) and holds them
 * against `platforms` (what runs here: native and verified emulated) and `emulated` (the
 * verified emulated subset). Returns the result and the state the post step needs; {} when
 * there is no builder (buildx: false, or a failure under buildx: auto, said as a warning).
 * Throws (an ActionError for a builder that cannot be had under buildx: true, or the start's
 * CancelledError); a builder this step created is removed before it throws.
 */
export async function finishBuilder(start: BuilderStart, platforms: string[], emulated: string[]): Promise<BuilderFinish> {
  // What the start said so far (once buildx answered, its version line leading), then what it says while the finish waits, as it says it.
  await start.answered
  start.held.release()
  const waitFrom = performance.now()
  const outcome = await start.outcome
  const timings = { builderStart: performance.now() - start.started, builderWait: performance.now() - waitFrom }
  const { docker, removal, log } = start.io
  const opts: BuilderOptions = { ...start.opts, platforms, emulated }
  try {
    if (outcome.kind === 'failed') throw outcome.error
    if (outcome.kind === 'none') return { timings }
    if (outcome.how === 'current') return { ...(await readCurrent(opts, docker, log)), timings }
    const created = outcome.how === 'created'
    if (outcome.how === 'reused' && opts.use) await useReused(outcome.name, docker)
    try {
      const parsed = await readBuilder(outcome.name, outcome.boot, docker, log)
      const state: BuilderState = { name: outcome.name, created, driver: parsed.driver || outcome.driver }
      return { result: finish(opts, parsed, outcome.name, created, log), state, timings }
    } catch (e) {
      if (created) await removeAfterFailure(opts, removal, log)
      throw e
    }
  } catch (e) {
    // `auto` means "a builder if possible": the emulators are there and work without one.
    if (opts.mode === 'auto' && e instanceof BuilderFailure) {
      log.warning(`${e.message}; going on without a builder (buildx: auto), set buildx: true to make this fail the step`)
      return { timings }
    }
    throw e
  }
}

/**
 * For a caller whose own step failed (or was cancelled) after startBuilder: waits for the start
 * to end (a cancelled one ends quickly: its docker commands are stopped), shows its log lines,
 * and removes the builder it created, through the removal runner. A reused builder, or the
 * docker driver's, is left as it is. Never throws.
 */
export async function abandonBuilder(start: BuilderStart): Promise<void> {
  await start.answered
  start.held.release()
  const outcome = await start.outcome
  const { removal, log } = start.io
  if (outcome.kind === 'failed' && !(outcome.error instanceof CancelledError)) {
    log.debug(`the builder had not started anyway: ${errorMessage(outcome.error)}`)
  }
  if (outcome.kind !== 'ready' || outcome.how !== 'created') return
  log.info(`Removing builder ${outcome.name}, which this step started: the step did not get as far as using it`)
  await removeAfterFailure(start.opts, removal, log)
}

/** The docker driver's builder, a reused one, or a new one: started (the docker driver's is only looked at in the finish). */
async function getBuilder(opts: BuilderStartOptions, docker: Docker, log: HeldLog, removal: Docker): Promise<StartOutcome> {
  if (opts.driver === 'docker') return startCurrent(opts, log)
  // A name generated for this step (8 random hex digits) is new: no docker process spent asking (it is
  // on the way to the first build). buildx refuses to create over an existing builder in any case.
  if (!opts.nameGiven) return await startCreated(opts, docker, log, removal)
  const existing = await docker.run(inspectArgs(opts.name), { timeoutMs: BUILDX_MS.quick })
  if (existing.code === 0) return await startReused(opts, parseInspect(existing.stdout), docker, log)
  // Only a name known to be free is created (and handed to the post step as ours).
  if (!NOT_STORED.test(existing.stderr)) {
    throw new BuilderFailure(
      `builder-name: cannot tell whether builder ${opts.name} exists (${failureReason(existing, BUILDX_MS.quick)}); check docker buildx inspect ${opts.name}`,
    )
  }
  log.debug(`no builder named ${opts.name} yet`)
  return await startCreated(opts, docker, log, removal)
}

/** A promise's outcome as a value, so that a failure can wait for another answer before it counts. */
async function settled<T>(p: Promise<T>): Promise<{ ok: true; value: T } | { ok: false; error: unknown }> {
  try {
    return { ok: true, value: await p }
  } catch (error) {
    return { ok: false, error }
  }
}

function missingBuildx(reason: string): ActionError {
  return new ActionError(
    `buildx: docker buildx is not available (${reason}); install the Docker buildx plugin on the runner, ` +
      'or set buildx: auto to skip the builder where it is missing (or buildx: false)',
  )
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
    } else if (NOT_STORED.test(r.stderr)) {
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
    // Stopped, not missing: the start ends as cancelled, without a notice about the plugin.
    if (e instanceof CancelledError) throw e
    const code = (e as NodeJS.ErrnoException).code
    return { ok: false, reason: code === 'ENOENT' ? 'docker was not found on PATH' : errorMessage(e) }
  }
  if (r.code !== 0) return { ok: false, reason: failureReason(r, BUILDX_MS.quick) }
  const version = r.stdout.trim().split('\n')[0]
  return { ok: true, version: version ? `buildx ${version.replace(/^github\.com\/docker\/buildx\s+/, '')}` : 'docker buildx' }
}

/** driver: docker: the context's own builder (inside dockerd) cannot be created or removed; the finish reports it. */
function startCurrent(opts: BuilderStartOptions, log: BuilderLog): StartOutcome {
  const ignored = ignoredSettings(opts)
  if (ignored.length) {
    log.notice(`driver: docker uses the Docker daemon's own builder, so ${ignored.join(', ')} ${ignored.length > 1 ? 'are' : 'is'} not applied`)
  }
  return { kind: 'ready', how: 'current', name: 'default', driver: 'docker', boot: '' }
}

async function readCurrent(opts: BuilderOptions, docker: Docker, log: BuilderLog): Promise<{ result: BuilderResult; state: BuilderState }> {
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

async function startReused(opts: BuilderStartOptions, existing: ParsedBuilder, docker: Docker, log: BuilderLog): Promise<StartOutcome> {
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
  return { kind: 'ready', how: 'reused', name: opts.name, driver, boot }
}

/** Makes a reused builder the current one: in the finish, so that a step whose emulators failed leaves the current builder as it was. */
async function useReused(name: string, docker: Docker): Promise<void> {
  const r = await docker.run(useArgs(name), { timeoutMs: BUILDX_MS.quick })
  if (r.code !== 0)
    throw new BuilderFailure(`use: cannot make ${name} the current builder (${failureReason(r, BUILDX_MS.quick)}); set use: false or check the builder`)
}

async function startCreated(opts: BuilderStartOptions, docker: Docker, log: BuilderLog, removal: Docker): Promise<StartOutcome> {
  let configFile: string | undefined
  if (opts.configInline.trim()) {
    configFile = path.join(opts.tempDir, `buildkitd-${opts.name.replace(/[^A-Za-z0-9._-]/g, '_')}.toml`)
    await fs.promises.mkdir(opts.tempDir, { recursive: true })
    await fs.promises.writeFile(configFile, opts.configInline)
  }

  log.info(`Creating builder ${opts.name} (driver ${opts.driver}${opts.endpoint ? `, endpoint ${opts.endpoint}` : ''})`)
  // With no node to append first, create boots the builder itself: one buildx run fewer on the builder's way.
  const boots = !opts.append.length
  // Handed over before create runs, since one run both stores and boots it: a step that dies meanwhile
  // still has it removed by the post step. The name is ours (new, or no builder had it just now).
  opts.onCreated?.({ name: opts.name, created: true, driver: opts.driver })
  let created: RunResult
  try {
    created = await docker.run(createArgs(opts, configFile, boots), { timeoutMs: boots ? BUILDX_MS.bootstrap : BUILDX_MS.create, loud: true })
  } catch (e) {
    // Cancelled halfway: buildx may have stored the builder already; the name is ours (no builder had it).
    // Not started at all (no docker): nothing was made.
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') await removeAfterFailure(opts, removal, log)
    throw e
  } finally {
    // buildx copies the config into its own store at create, so the file is done with.
    if (configFile) await fs.promises.rm(configFile, { force: true })
  }
  if (created.code === null) {
    // Killed (its time ran out): buildx had no chance to roll back.
    await removeAfterFailure(opts, removal, log)
    if (boots) throw new BuilderFailure(bootstrapError(opts, opts.name, created))
  } else if (created.code !== 0 && boots) {
    // buildx keeps a builder whose boot failed: then the boot's failure is told (and retried) as such.
    const made = EXISTING.test(created.stderr) ? false : await stored(opts.name, removal)
    if (made) return await completeCreated(opts, removal, log, () => bootstrap(opts, opts.name, docker, log, created))
    // No answer: whatever may be stored goes; the create's failure is told.
    if (made === undefined) await removeAfterFailure(opts, removal, log)
  }
  if (created.code !== 0) {
    // buildx rolls a failed create back itself: there is nothing to remove.
    const reason = failureReason(created, boots ? BUILDX_MS.bootstrap : BUILDX_MS.create)
    // The plugin works without a daemon; `auto` also means "skip where Docker cannot run containers".
    if (opts.mode === 'auto' && !opts.endpoint && DAEMON_DOWN.test(reason)) {
      log.notice(`the Docker daemon is not reachable (${reason}); skipping the builder. Set buildx: false to silence this`)
      return { kind: 'none' }
    }
    const input = createInputAtFault(reason, opts)
    throw new BuilderFailure(`${input}: cannot create builder ${opts.name} (${reason}); ${createFix(input)}`)
  }
  if (boots) return { kind: 'ready', how: 'created', name: opts.name, driver: opts.driver, boot: '' }
  return await completeCreated(opts, removal, log, async () => {
    for (const node of opts.append) await appendNode(opts.name, node, docker, log)
    return await bootstrap(opts, opts.name, docker, log)
  })
}

/** The rest of a builder this step created (its nodes appended, its boot); any failure removes it again. */
async function completeCreated(opts: BuilderStartOptions, removal: Docker, log: BuilderLog, rest: () => Promise<string>): Promise<StartOutcome> {
  try {
    const boot = await rest()
    return { kind: 'ready', how: 'created', name: opts.name, driver: opts.driver, boot }
  } catch (e) {
    await removeAfterFailure(opts, removal, log)
    throw e
  }
}

/**
 * Whether buildx has a builder of this name stored (asked after a create that failed: did it get that
 * far?); undefined when it gives no clear answer. Asked through the removal runner: a cancellation
 * does not stop it, and what is stored is removed after it.
 */
async function stored(name: string, docker: Docker): Promise<boolean | undefined> {
  try {
    const r = await docker.run(inspectArgs(name), { timeoutMs: BUILDX_MS.quick })
    if (r.code === 0) return true
    return NOT_STORED.test(r.stderr) ? false : undefined
  } catch {
    return undefined
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
 * `first`: a boot that already ran and failed (create --bootstrap), to be judged and retried.
 */
async function bootstrap(opts: BuilderStartOptions, name: string, docker: Docker, log: BuilderLog, first?: RunResult): Promise<string> {
  if (!first) log.info(`Booting builder ${name}`)
  let r = first ?? (await docker.run(bootstrapArgs(name), { timeoutMs: BUILDX_MS.bootstrap, loud: true }))
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
async function nodeDownError(opts: BuilderStartOptions, name: string, r: RunResult, docker: Docker, log: BuilderLog): Promise<string | undefined> {
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

function bootstrapError(opts: BuilderStartOptions, name: string, r: RunResult): string {
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
 * BuildKit detects emulated platforms when it starts and, from v0.13 at least (checked on the
 * real one), again whenever its workers are listed, so the finish sees emulators registered
 * after the boot. An older BuildKit, or one whose container cannot run the emulator (an entry
 * without the F flag names a path the container does not have), may still not list them. Only
 * emulated platforms are compared: native ones (linux/amd64/v2.. are CPU levels) need no emulator.
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
function ignoredSettings(opts: BuilderStartOptions): string[] {
  const out: string[] = []
  if (opts.endpoint) out.push('endpoint')
  if (opts.driverOpts.length) out.push('driver-opts')
  if (opts.buildkitdFlags) out.push('buildkitd-flags')
  if (opts.configInline.trim()) out.push('buildkitd-config-inline')
  if (opts.append.length) out.push('append')
  return out
}

function createInputAtFault(reason: string, opts: BuilderStartOptions): string {
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
async function removeAfterFailure(opts: BuilderStartOptions, docker: Docker, log: BuilderLog): Promise<void> {
  const name = opts.name
  try {
    const r = await docker.run(rmArgs(name), { timeoutMs: BUILDX_MS.create })
    if (r.code === 0) log.info(`Removed the half-made builder ${name}`)
    else if (NOT_STORED.test(r.stderr)) log.debug(`builder ${name} was not stored yet`)
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
