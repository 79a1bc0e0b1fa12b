// The engine: inputs -> plan -> fetch emulators -> register -> verify -> builder -> outputs.
// Both faces call it: the action's main step (src/action) and the command's install and run
// (src/cli). It talks to neither: what it has to say goes through `io`, what it found is its
// return value, and what a later clean-up needs is handed over as soon as it is known.
import { setMaxListeners } from 'events'
import * as fs from 'fs'
import * as os from 'os'
import * as path from 'path'
import { Access, chooseAccess } from './access'
import { BinfmtReader, EntrySpec } from './binfmt'
import { BuilderResult, BuilderState } from './buildx/types'
import { BuilderStart, abandonBuilder, finishBuilder, startBuilder } from './buildx/builder'
import { failureOf, watchCancellation } from './cancellation'
import { ActionError, errorMessage } from './errors'
import { FetchResult, fetchEmulators } from './fetch'
import { PendingSave } from './fetch/actions-cache'
import { NetworkPolicy } from './fetch/download'
import { httpTarget } from './fetch/url'
import { Host, detectHost, nativePlatforms } from './host'
import { Inputs } from './inputs'
import { KernelWriter } from './kernel'
import { HostLock } from './lock'
import { Log } from './log'
import { Pinning, explainPinFailure, pinning } from './fetch/pins'
import { Plan } from './plan'
import { CancelledError, ChildProcessRunner, ProcessRunner } from './process'
import { Journal, Registration, WantedEntry, applyChanges, commit, planChanges, rollback, stagedBy } from './register'
import { Outcome, availablePlatforms, checksumRows, outputs } from './report'
import { EmulatorSource, resolveSource } from './fetch/source'
import { abandonedStaging } from './staging'
import { Target, dockerPlatforms, emulatorName } from './targets'
import { UninstallState } from './teardown'
import { findBuildxPlugin } from './buildx/plugin'
import { JobId, UsageRecords, currentJob, tableOf } from './job-records'
import { ProbeHost, ProbeResult, probeNative, runProbes, shellProbes } from './verify'

/** How the engine speaks: each face shows it its own way. */
export interface SetupIO {
  readonly log: Log
  /** a named step of the run: a foldable group in the action's log, a heading line in the command's */
  group<T>(title: string, step: () => Promise<T>): Promise<T>
  /** what a later clean-up (the action's post step) needs, handed over as soon as it is known, so that a failed run is cleaned up too */
  readonly handoff: Handoff
}

export interface Handoff {
  /** downloaded emulators to save to the Actions cache, off this step's clock */
  cacheSave(pending: PendingSave): void
  /** the builder to remove; undefined: none any more (one handed over earlier was removed by this run) */
  builder(state: BuilderState | undefined): void
  /** the entries to remove or put back (uninstall: true) */
  uninstall(state: UninstallState): void
}

/** Where the run happens: what each face knows of its surroundings. */
export interface Surroundings {
  /** scratch space, the run's own: the caller makes it and removes it */
  readonly temp: string
  /** where emulators are kept between runs (the runner's tool cache, or the user's cache for local runs) */
  readonly toolCache: string
  /** where rootless engines (DOCKER_HOST, XDG_RUNTIME_DIR) and SETUP_QEMU_BINFMT_USERNS_PID are looked up */
  readonly env: NodeJS.ProcessEnv
  /** stops downloads, probes and the builder; registrations made so far are rolled back */
  readonly cancel: AbortSignal
  /** default: DEFAULT_NETWORK (tests scale it down to meet a stalled server in seconds) */
  readonly network?: NetworkPolicy
}

export interface SetupResult {
  readonly outcome: Outcome
  readonly builder?: BuilderResult
  /** the action's outputs, the command's answer */
  readonly outputs: Record<string, string>
  /** ms per phase, for the debug log and the bench */
  readonly timings: Readonly<Record<string, number>>
}

/** Where a face runs the engine: its scratch space is made under `tempRoot` (and removed after), emulators are kept in `toolCache`. */
export interface Place {
  readonly tempRoot: string
  readonly toolCache: string
  readonly env: NodeJS.ProcessEnv
}

/** The place of a runner, or of a user's own machine off a runner. */
export function runnerPlace(env: NodeJS.ProcessEnv): Place {
  return { tempRoot: env.RUNNER_TEMP || os.tmpdir(), toolCache: env.RUNNER_TOOL_CACHE || localToolCache(env), env }
}

/**
 * setup() as both faces run it: in a scratch directory of its own, stopped by SIGINT or SIGTERM.
 * A failure is one line to `fail` (a cancellation says so), with its stack at debug level when it is
 * not an error the user can fix; then the result is undefined. Should a cancelled run's clean-up
 * overrun its grace, `fail` says so and the process exits (with the scratch directory removed).
 */
export async function runSetup(inputs: Inputs, place: Place, io: SetupIO, fail: (m: string) => void): Promise<SetupResult | undefined> {
  const cancel = new AbortController()
  // Every child of the run listens for it (dozens of probes at once with platforms: all).
  setMaxListeners(0, cancel.signal)
  let temp: string | undefined
  const removeTemp = (): void => {
    if (temp) fs.rmSync(temp, { recursive: true, force: true })
  }
  const stopWatching = watchCancellation(cancel, io.log, signal => {
    removeTemp()
    fail(`cancelled (${signal}) and the clean-up did not finish in time`)
  })
  try {
    fs.mkdirSync(place.tempRoot, { recursive: true })
    temp = fs.mkdtempSync(path.join(place.tempRoot, 'setup-qemu-binfmt-'))
    const result = await setup(inputs, { temp, toolCache: place.toolCache, env: place.env, cancel: cancel.signal }, io)
    io.log.debug(`timings ${JSON.stringify(result.timings)}`)
    return result
  } catch (e) {
    fail(failureOf(e, cancel.signal))
    if (!(e instanceof ActionError) && e instanceof Error && e.stack) io.log.debug(e.stack)
    return undefined
  } finally {
    removeTemp()
    stopWatching()
  }
}

/** Where emulators are kept off a runner: the user's cache directory. */
export function localToolCache(env: NodeJS.ProcessEnv): string {
  return path.join(env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache'), 'setup-qemu-binfmt', 'tool-cache')
}

/** Each phase's time, measured where it runs. */
class Timings {
  readonly ms: Record<string, number> = {}
  private readonly started = performance.now()

  async time<T>(phase: string, step: () => Promise<T>): Promise<T> {
    const t = performance.now()
    try {
      return await step()
    } finally {
      this.ms[phase] = performance.now() - t
    }
  }

  done(): Record<string, number> {
    this.ms.total = performance.now() - this.started
    return this.ms
  }
}

/** The run. Bad inputs were refused before (readInputs); every failure here is one ActionError, with nothing of this run's left half-done. */
export async function setup(inputs: Inputs, at: Surroundings, io: SetupIO): Promise<SetupResult> {
  const { log } = io
  const timings = new Timings()
  // Downloads, probes and the builder stop on cancellation; kernel writes are short and always finish, so that the rollback can run.
  const runs = new ChildProcessRunner(at.cancel)
  const writes = new ChildProcessRunner()

  const host = detectHost()
  // A template that names no emulator file is a bad input: refused before anything is touched.
  const source = resolveSource(inputs.qemuUrl, inputs.qemuVersion, host.arch)
  // Before anything names the source: a credential in qemu-url never reaches a log.
  if (!source.local) for (const s of httpTarget(source.locate('x')).secrets) log.secret(s)
  // The user's qemu-sha256, or the built-in digest of the default release's asset.
  const pins = pinning(inputs, host.arch)
  // Started now, so that the builder's image pull, container create and boot overlap the emulator steps.
  const builder = startBuilderStep(inputs, at, io)
  let outcome: Outcome
  try {
    if (inputs.builder.mode === 'true') {
      // No buildx plugin under buildx: true fails the step before anything is downloaded.
      const missing = await timings.time('preflight', () => builder.start.preflight)
      if (missing) throw missing
    }
    outcome = await emulatorSteps(inputs, { host, source, pins }, at, io, timings, { runs, writes })
  } catch (e) {
    // The builder this step started goes with the emulators that failed: its start is stopped
    // (a pull or boot of minutes is not waited for), and what it made is removed.
    builder.stop()
    if (inputs.builder.mode !== 'false') await io.group('buildx builder', () => abandonBuilder(builder.start))
    if (inputs.builder.cleanup) io.handoff.builder(undefined)
    throw e
  }
  const result = await timings.time('builder', () => io.group('buildx builder', () => finishBuilderStep(builder.start, inputs, outcome, io, timings)))
  const out = outputs(outcome, result)
  log.info(`Platforms available: ${out.platforms}`)
  return { outcome, builder: result, outputs: out, timings: timings.done() }
}

/** Where the emulators come from and how they are checked, as the inputs say. */
interface Sourcing {
  readonly host: Host
  readonly source: EmulatorSource
  readonly pins: Pinning
}

/** access -> native platforms and the plan -> fetch -> register and verify: the emulators, proven where they apply. */
async function emulatorSteps(
  inputs: Inputs,
  { host, source, pins }: Sourcing,
  at: Surroundings,
  io: SetupIO,
  timings: Timings,
  { runs, writes }: { runs: ProcessRunner; writes: ProcessRunner },
): Promise<Outcome> {
  const { log } = io
  const access = await timings.time('access', () =>
    io.group('Access to binfmt_misc', () => chooseAccess({ mode: inputs.installMode, dockerImage: inputs.dockerImage, writes, runs, env: at.env, log })),
  )
  if (!access.hidden) checkBinfmtEnabled(access.reader)

  const { plan, native } = await timings.time('native', () => io.group('Native platforms', () => planFor(inputs, host, access, at, runs, log)))
  const fetched = await fetchStep(inputs, source, host, pins, plan, at, io, timings)
  const targets = plan.foreignTargets([...fetched.emulators.keys()])
  log.info(`Emulators to register: ${targets.map(x => x.name).join(', ') || 'none'}`)

  const wanted: WantedEntry[] = targets.map(target => ({ target, spec: entrySpec(inputs, target, fetched, access.writer) }))
  const { registrations, probes } = await registerAndVerify(inputs, pins.list.size > 0, access, wanted, at, io, timings)
  return {
    nativePlatforms: native,
    registrations,
    emulators: fetched.emulators,
    probes,
    qemuVersion: fetched.version ?? inputs.qemuVersion,
    cacheHit: fetched.cacheHit,
    method: access.writer.method,
    scope: access.scope,
    files: fetched.files,
    pinning: pins,
  }
}

/** What runs natively (in a user namespace: there, where its engine's containers run), and the plan that leaves the rest to emulators. */
async function planFor(inputs: Inputs, host: Host, access: Access, at: Surroundings, runs: ProcessRunner, log: Log): Promise<{ plan: Plan; native: string[] }> {
  const { native, amd64Level, tried } = await probeNative(host, access.reader, at.temp, access.probes, log.info)
  await checkTempExecutable(host, at.temp, shellProbes(runs), tried, log)
  const plan = new Plan(host, inputs.platforms, native)
  const platforms = nativePlatforms(host, native, amd64Level)
  log.info(`This ${host.arch} runner runs natively: ${platforms.join(', ')}`)
  for (const t of plan.requestedNative()) log.info(`${label(t)} runs natively on this runner; not registering an emulator`)
  return { plan, native: platforms }
}

/** The emulators the plan needs, checked against the pins; nothing to fetch when only native platforms are asked for. */
async function fetchStep(
  inputs: Inputs,
  source: EmulatorSource,
  host: Host,
  pins: Pinning,
  plan: Plan,
  at: Surroundings,
  io: SetupIO,
  timings: Timings,
): Promise<FetchResult> {
  if (inputs.platforms.kind === 'list' && plan.foreignTargets([]).length === 0) {
    return { emulators: new Map(), cacheHit: false, from: 'local', timings: { download: 0, extract: 0 }, files: [] }
  }
  const { log } = io
  const fetched = await timings.time('fetch', () =>
    io.group('Emulators', () =>
      fetchEmulators({
        source,
        version: inputs.qemuVersion,
        host: host.arch,
        sha256: pins.list,
        cache: inputs.cache,
        want: plan.emulatorWant(),
        selectionKey: plan.selectionKey(),
        tempDir: at.temp,
        toolCache: at.toolCache,
        network: at.network,
        signal: at.cancel,
        log,
      }).catch(e => {
        throw explainPinFailure(pins, e)
      }),
    ),
  )
  Object.assign(timings.ms, fetched.timings)
  for (const r of checksumRows(fetched.files, pins)) log.info(`qemu-sha256 line: ${r.line} (${r.pinned})`)
  // Saved after this step (the action's post step), so this step's time is what the job needs.
  if (fetched.pendingSave) io.handoff.cacheSave(fetched.pendingSave)
  return fetched
}

/**
 * Under the host-wide lock: reads the table, registers the new entries beside
 * the old ones, verifies them, and only then puts them in place. A failure or a
 * cancellation before that removes what this run added; every entry that was
 * there before the run is untouched until the new one is proven.
 */
async function registerAndVerify(
  inputs: Inputs,
  /** the emulators were checked against digests: entries are registered from them, never kept by path */
  pinned: boolean,
  access: Access,
  wanted: readonly WantedEntry[],
  at: Surroundings,
  io: SetupIO,
  timings: Timings,
): Promise<{ registrations: Registration[]; probes: ProbeResult[] }> {
  if (!wanted.length && !inputs.reset) return { registrations: [], probes: [] }
  const { log } = io
  const { writer, reader } = access
  const lock = await HostLock.acquire({ timeoutMs: inputs.lockTimeoutMs, cancel: at.cancel, log: log.info })
  const journal = new Journal()
  try {
    if (!access.hidden) await removeAbandonedStaging(writer, reader, log)
    const job = currentJob()
    const records = new UsageRecords(tableOf(reader.root))
    const inUse = (name: string): boolean => {
      let users
      try {
        users = records.users(name, job)
      } catch (e) {
        // Records that cannot be trusted could hide a live job: keep what it might use.
        log.info(`reset: keeping ${name}: which jobs use it cannot be told (${errorMessage(e)})`)
        return true
      }
      if (users.length) log.info(`reset: keeping ${name}: the running job of process ${users.map(u => u.pid).join(', ')} uses it`)
      return users.length > 0
    }
    const changes = planChanges(reader.mounted() ? reader.list() : [], wanted, { reset: inputs.reset, pinned, inUse })
    const registrations = await timings.time('register', () => io.group(`Register ${writer.how}`, () => applyChanges(writer, reader, changes, journal, log)))
    const probes = await timings.time('verify', () =>
      io.group('Verify', async () => {
        const results = await access.verify(registrations, at.temp)
        for (const p of results) log.info(`${p.target.name}: ${p.ok ? 'ok' : p.detail} (${p.ms.toFixed(1)} ms)`)
        return results
      }),
    )
    const failed = probes.filter(p => !p.ok)
    if (failed.length) throw verificationError(failed, registrations)
    if (at.cancel.aborted) throw new CancelledError()
    await commit(writer, reader, changes, registrations, journal, log)
    recordUsage(inputs, writer, registrations, job, records, io)
    return { registrations, probes }
  } catch (e) {
    if (!journal.empty) await io.group('Rollback', () => rollback(writer, reader, journal, log))
    throw e
  } finally {
    await lock.release()
  }
}

/**
 * Staging entries whose run died (SIGKILL) before it could remove them; only their owner would, and it is gone.
 * One under our own pid is a dead run's too (pids repeat, in containers every time): this run has staged nothing yet.
 */
async function removeAbandonedStaging(writer: KernelWriter, reader: BinfmtReader, log: Log): Promise<void> {
  if (!reader.mounted()) return
  const abandoned = [...new Set([...abandonedStaging(reader), ...reader.names().filter(n => stagedBy(n) === process.pid)])].sort()
  if (!abandoned.length) return
  log.info(`Removing entries left by runs that were killed before they finished: ${abandoned.join(', ')}`)
  await writer.apply(abandoned.map(name => ({ kind: 'remove', name })))
}

/** Tells other jobs' uninstall that this job uses these entries; and hands over what uninstall would undo. */
function recordUsage(
  inputs: Inputs,
  writer: KernelWriter,
  registrations: readonly Registration[],
  job: JobId | undefined,
  records: UsageRecords,
  io: SetupIO,
): void {
  const names = registrations.map(r => r.spec.name)
  if (job && names.length) {
    try {
      records.add(job, names)
    } catch (e) {
      // Fail safe only where other jobs see the same fault (they then keep every entry): say so loudly.
      io.log.warning(
        `could not record that this job uses ${names.join(', ')}, so another job's uninstall may remove them while this job runs: ${errorMessage(e)}`,
      )
    }
  }
  if (inputs.uninstall) {
    io.handoff.uninstall({
      method: writer.method,
      dockerImage: inputs.dockerImage,
      job,
      entries: registrations.filter(r => r.action !== 'kept').map(r => ({ spec: r.spec, previous: r.previous })),
    })
  }
}

/**
 * The probes and the emulators' checks run from the scratch directory: a noexec mount there would look like broken emulators.
 * A native-detection probe the kernel got to load (it ran, or its format was refused) already shows that programs
 * may run there; only when none was tried does the host's own probe run.
 */
async function checkTempExecutable(host: Host, temp: string, probes: ProbeHost, tried: readonly ProbeResult[], log: Log): Promise<void> {
  const refused = (p: ProbeResult): boolean => !p.ok && /EACCES|EPERM/.test(p.detail)
  if (tried.some(p => !refused(p))) return
  const r = tried.find(refused) ?? (await runProbes([host.target], temp, probes))[0]
  if (r.ok) return
  if (refused(r)) {
    throw new ActionError(
      `RUNNER_TEMP (${path.dirname(temp)}) does not allow running programs (${r.detail}; is it mounted noexec?); set RUNNER_TEMP to a directory on a file system that allows exec`,
    )
  }
  log.debug(`the native test program did not run as expected in ${temp}: ${r.detail}`)
}

function checkBinfmtEnabled(reader: BinfmtReader): void {
  if (reader.mounted() && !reader.enabled()) {
    throw new ActionError(
      `binfmt_misc is disabled for the whole host (${reader.root}/status says disabled), so no emulator can run; ` +
        `enable it with 'echo 1 | sudo tee ${reader.root}/status' (this action does not change that switch)`,
    )
  }
}

function entrySpec(inputs: Inputs, target: Target, fetched: FetchResult, writer: KernelWriter): EntrySpec {
  const emulator = fetched.emulators.get(emulatorName(target))
  if (!emulator) throw new Error(`no emulator fetched for ${target.name}`)
  return {
    name: `qemu-${target.name}`,
    offset: 0,
    magic: target.magic,
    mask: target.mask,
    interpreter: writer.interpreterFor(emulator.path),
    flags: `${inputs.preserveArgv0 ? 'P' : ''}${inputs.credential ? 'C' : ''}F`,
  }
}

function verificationError(failed: readonly ProbeResult[], registrations: readonly Registration[]): ActionError {
  // Entries that were already exactly right before this step are not this run's to remove.
  const kept = failed.filter(p => registrations.some(r => r.target === p.target && r.action === 'kept')).map(p => `qemu-${p.target.name}`)
  const left = kept.length ? `; ${kept.join(', ')} ${kept.length > 1 ? 'were' : 'was'} registered before this step and left as it was` : ''
  return new ActionError(
    `verification failed for ${failed.map(p => `${label(p.target)}: ${p.detail}`).join('; ')}; ` +
      `the entries this run made were removed${left} - try another qemu-version or drop the platform`,
  )
}

function label(t: Target): string {
  const p = dockerPlatforms(t)
  return p.length ? `${p[0]} (qemu-${t.name})` : `qemu-${t.name}`
}

/**
 * Starts getting the builder (buildx: true or auto); a builder it creates is handed over for removal
 * at once (cleanup: true), so that a step that dies before the finish still has it removed. The start
 * stops on the step's cancellation, and on `stop` (the emulator step failed: no builder is wanted).
 */
function startBuilderStep(inputs: Inputs, at: Surroundings, io: SetupIO): { start: BuilderStart; stop: () => void } {
  const { cleanup, ...opts } = inputs.builder
  const onCreated = cleanup ? (state: BuilderState) => io.handoff.builder(state) : undefined
  const stopped = new AbortController()
  const follow = (): void => stopped.abort(at.cancel.reason)
  if (at.cancel.aborted) follow()
  else at.cancel.addEventListener('abort', follow, { once: true })
  // A half-made builder is removed even when the start is stopped (as the rollback of entries is): the removal runner is never cancelled.
  const buildxPlugin = opts.mode === 'false' ? undefined : findBuildxPlugin(at.env, process.geteuid?.() ?? -1)
  const start = startBuilder(
    { ...opts, tempDir: at.temp, cancel: stopped.signal, onCreated, buildxPlugin },
    new ChildProcessRunner(stopped.signal),
    io.log,
    new ChildProcessRunner(),
  )
  return { start, stop: () => stopped.abort('the emulator step failed') }
}

/**
 * Reads the started builder's platforms once the emulators are registered and verified (BuildKit
 * lists emulators registered after it booted), held against what runs here. Under buildx: auto a
 * builder that cannot be had is a warning and no result: the outputs then come from the emulators
 * alone. The emulators are verified and stay whatever happens here.
 */
async function finishBuilderStep(builder: BuilderStart, inputs: Inputs, outcome: Outcome, io: SetupIO, timings: Timings): Promise<BuilderResult | undefined> {
  const platforms = availablePlatforms(outcome)
  const emulated = platforms.filter(p => !outcome.nativePlatforms.includes(p))
  // Without a state the start's builder, if it made one, is gone again: the finish removed it on a
  // failure, a cancellation, or a builder that could not be had under buildx: auto.
  let state: BuilderState | undefined
  try {
    const finished = await finishBuilder(builder, platforms, emulated)
    Object.assign(timings.ms, finished.timings)
    state = finished.state
    if (finished.result) io.log.info(`Builder ${finished.result.name} (${finished.result.driver}): ${finished.result.platforms.join(', ')}`)
    return finished.result
  } catch (e) {
    if (e instanceof CancelledError) throw e
    throw new ActionError(
      `${errorMessage(e)} (the emulators were registered and verified, and stay: ${outcome.registrations.map(r => r.spec.name).join(', ') || 'none'})`,
    )
  } finally {
    if (inputs.builder.cleanup) io.handoff.builder(state)
  }
}
