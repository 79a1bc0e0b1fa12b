import * as core from '@actions/core'
import { log, setOutput } from './log'
import { setMaxListeners } from 'events'
import * as fs from 'fs'
import * as os from 'os'
import * as path from 'path'
import { BinfmtReader, EntrySpec } from './binfmt'
import { ActionError, errorMessage } from './errors'
import { FetchResult, fetchEmulators } from './fetch'
import { Host, detectHost, nativePlatforms } from './host'
import { Plan } from './plan'
import { Inputs, readInputs } from './inputs'
import { KernelWriter } from './kernel'
import { Access, accessVia, chooseWriter } from './access'
import { BuilderResult, requireBuildx, setupBuilder } from './buildx/builder'
import { HostLock } from './lock'
import { explainPinFailure, pinning } from './pins'
import { CancelledError, ChildProcessRunner, ProcessRunner } from './process'
import { Journal, Registration, WantedEntry, applyChanges, commit, planChanges, rollback, stagedBy } from './register'
import { UninstallState, stepState } from './state'
import { CANCEL_GRACE_MS } from './timeouts'
import { JobId, UsageRecords, currentJob, tableOf } from './usage'
import { Outcome, checksumRows, outputs, writeSummary } from './report'
import { abandonedStaging } from './staging'
import { resolveSource } from './source'
import { securePathForRoot } from './search-path'
import { Target, dockerPlatforms, emulatorName } from './targets'
import { ProbeHost, ProbeResult, probeNative, runProbes, shellProbes } from './verify'

/** The main phase: inputs -> plan -> fetch emulators -> register -> verify -> builder -> outputs. */
export async function run(): Promise<void> {
  const started = performance.now()
  const timings: Record<string, number> = {}
  const time = async <T>(phase: string, step: () => Promise<T>): Promise<T> => {
    const t = performance.now()
    try {
      return await step()
    } finally {
      timings[phase] = performance.now() - t
    }
  }
  const cancel = new AbortController()
  // Every child of the run listens for it (dozens of probes at once with platforms: all).
  setMaxListeners(0, cancel.signal)
  let tempDir: string | undefined
  const stopWatching = watchCancellation(cancel, () => tempDir)
  // Downloads, probes and the builder stop on cancellation; kernel writes are short and always finish, so that the rollback can run.
  const runner = new ChildProcessRunner(cancel.signal)
  const kernelRunner = new ChildProcessRunner()
  try {
    // Before any program is looked up: as root, none from a directory another user could write.
    securePathForRoot(log.warning)
    // Every bad input fails here, before anything is touched.
    const inputs = readInputs(name => core.getInput(name))
    const host = detectHost()
    const source = resolveSource(inputs.qemuUrl, inputs.qemuVersion, host.arch)
    // The user's qemu-sha256, or the built-in digest of the default release's asset.
    const pins = pinning(inputs, host.arch)
    defaultRunnerDirs()
    const temp = (tempDir = fs.mkdtempSync(path.join(process.env.RUNNER_TEMP!, 'setup-qemu-binfmt-')))
    await time('preflight', () => requireBuildx(inputs.builder.mode, runner))

    const writer = await time('access', () =>
      core.group('Access to binfmt_misc', () => chooseWriter(inputs.installMode, inputs.dockerImage, kernelRunner, log)),
    )
    const access = accessVia(writer, runner, inputs.dockerImage, log)
    if (!access.hidden) checkBinfmtEnabled(access.reader)

    // In a user namespace, natively means there, where its engine's containers run.
    const { native, amd64Level, tried } = await time('native', () =>
      core.group('Native platforms', () => probeNative(host, access.reader, temp, access.probes, log.info)),
    )
    await checkTempExecutable(host, temp, shellProbes(runner), tried)
    const plan = new Plan(host, inputs.platforms, native)
    const nativeP = nativePlatforms(host, native, amd64Level)
    log.info(`This ${host.arch} runner runs natively: ${nativeP.join(', ')}`)
    for (const t of plan.requestedNative()) log.info(`${label(t)} runs natively on this runner; not registering an emulator`)

    // Nothing foreign asked for: nothing to download.
    const onlyNative = inputs.platforms.kind === 'list' && plan.foreignTargets([]).length === 0
    const fetched: FetchResult = onlyNative
      ? { emulators: new Map(), cacheHit: false, from: 'local', timings: { download: 0, extract: 0 }, files: [] }
      : await time('fetch', () =>
          core.group('Emulators', () =>
            fetchEmulators({
              source,
              version: inputs.qemuVersion,
              host: host.arch,
              sha256: pins.list,
              cache: inputs.cache,
              want: plan.emulatorWant(),
              selectionKey: plan.selectionKey(),
              tempDir: temp,
              signal: cancel.signal,
              log,
            }).catch(e => {
              throw explainPinFailure(pins, e)
            }),
          ),
        )
    Object.assign(timings, fetched.timings)
    for (const r of checksumRows(fetched.files, pins)) log.info(`qemu-sha256 line: ${r.line} (${r.pinned})`)
    // Saved by the post step, so this step's time is what the job needs.
    if (fetched.pendingSave) stepState.saveCachePending(fetched.pendingSave)
    const targets: Target[] = plan.foreignTargets([...fetched.emulators.keys()])
    log.info(`Emulators to register: ${targets.map(x => x.name).join(', ') || 'none'}`)

    const wanted: WantedEntry[] = targets.map(target => ({ target, spec: entrySpec(inputs, target, fetched, writer) }))
    const { registrations, probes } = await registerAndVerify({
      inputs,
      pinned: pins.list.size > 0,
      access,
      wanted,
      temp,
      cancel: cancel.signal,
      time,
    })
    const outcome: Outcome = {
      nativePlatforms: nativeP,
      registrations,
      emulators: fetched.emulators,
      probes,
      qemuVersion: fetched.version ?? inputs.qemuVersion,
      cacheHit: fetched.cacheHit,
      method: writer.method,
      scope: access.scope,
      files: fetched.files,
      pinning: pins,
    }

    // After registration, so that BuildKit sees the emulators when it starts. The emulators are verified and stay whatever happens here.
    let builder: BuilderResult | undefined
    try {
      builder = await time('builder', () => core.group('buildx builder', () => runBuilder(inputs, outcome, temp, runner, cancel.signal)))
    } catch (e) {
      if (e instanceof CancelledError) throw e
      throw new ActionError(
        `${errorMessage(e)} (the emulators were registered and verified, and stay: ${registrations.map(r => r.spec.name).join(', ') || 'none'})`,
      )
    }

    const out = outputs(outcome)
    if (builder) {
      out.platforms = builder.platforms.join(',')
      out['platforms-json'] = JSON.stringify(builder.platforms)
      out.builder = builder.name
      out.nodes = JSON.stringify(
        builder.nodes.map(n => ({
          name: n.name,
          endpoint: n.endpoint,
          status: n.status,
          buildkit: n.buildkit,
          platforms: n.platforms,
          remote: n.remote === true,
        })),
      )
    }
    for (const [k, v] of Object.entries(out)) setOutput(k, v)
    log.info(`Platforms available: ${out.platforms}`)
    timings.total = performance.now() - started
    log.debug(`timings ${JSON.stringify(timings)}`)
    await writeSummary(outcome, builder)
  } catch (e) {
    if (cancel.signal.aborted) log.fail(`the step was cancelled (${String(cancel.signal.reason)})`)
    else log.fail(errorMessage(e))
    if (!(e instanceof ActionError) && e instanceof Error && e.stack) log.debug(e.stack)
  } finally {
    if (tempDir) fs.rmSync(tempDir, { recursive: true, force: true })
    stopWatching()
  }
}

type Timer = <T>(phase: string, step: () => Promise<T>) => Promise<T>

/**
 * Under the host-wide lock: reads the table, registers the new entries beside
 * the old ones, verifies them, and only then puts them in place. A failure or a
 * cancellation before that removes what this run added; every entry that was
 * there before the run is untouched until the new one is proven.
 */
async function registerAndVerify({
  inputs,
  pinned,
  access,
  wanted,
  temp,
  cancel,
  time,
}: {
  readonly inputs: Inputs
  /** the emulators were checked against digests: entries are registered from them, never kept by path */
  readonly pinned: boolean
  /** the way into binfmt_misc: its writer, the table it sees, how it proves entries */
  readonly access: Access
  readonly wanted: readonly WantedEntry[]
  readonly temp: string
  readonly cancel: AbortSignal
  readonly time: Timer
}): Promise<{ registrations: Registration[]; probes: ProbeResult[] }> {
  if (!wanted.length && !inputs.reset) return { registrations: [], probes: [] }
  const { writer, reader, verify } = access
  const lock = await HostLock.acquire({ timeoutMs: inputs.lockTimeoutMs, cancel, log: log.info })
  const journal = new Journal()
  try {
    if (!access.hidden) await removeAbandonedStaging(writer, reader)
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
    const registrations = await time('register', () => core.group(`Register ${writer.how}`, () => applyChanges(writer, reader, changes, journal, log)))
    const probes = await time('verify', () =>
      core.group('Verify', async () => {
        const results = await verify(registrations, temp)
        for (const p of results) log.info(`${p.target.name}: ${p.ok ? 'ok' : p.detail} (${p.ms.toFixed(1)} ms)`)
        return results
      }),
    )
    const failed = probes.filter(p => !p.ok)
    if (failed.length) throw verificationError(failed, registrations)
    if (cancel.aborted) throw new CancelledError()
    await commit(writer, reader, changes, registrations, journal, log)
    recordUsage(inputs, writer, registrations, job, records)
    return { registrations, probes }
  } catch (e) {
    if (!journal.empty) await core.group('Rollback', () => rollback(writer, reader, journal, log))
    throw e
  } finally {
    await lock.release()
  }
}

/**
 * Staging entries whose run died (SIGKILL) before it could remove them; only their owner would, and it is gone.
 * One under our own pid is a dead run's too (pids repeat, in containers every time): this run has staged nothing yet.
 */
async function removeAbandonedStaging(writer: KernelWriter, reader: BinfmtReader): Promise<void> {
  if (!reader.mounted()) return
  const abandoned = [...new Set([...abandonedStaging(reader), ...reader.names().filter(n => stagedBy(n) === process.pid)])].sort()
  if (!abandoned.length) return
  log.info(`Removing entries left by runs that were killed before they finished: ${abandoned.join(', ')}`)
  await writer.apply(abandoned.map(name => ({ kind: 'remove', name })))
}

/** Tells other jobs' uninstall that this job uses these entries; and tells this step's post what to undo. */
function recordUsage(inputs: Inputs, writer: KernelWriter, registrations: readonly Registration[], job: JobId | undefined, records: UsageRecords): void {
  const names = registrations.map(r => r.spec.name)
  if (job && names.length) {
    try {
      records.add(job, names)
    } catch (e) {
      // Fail safe only where other jobs see the same fault (they then keep every entry): say so loudly.
      log.warning(`could not record that this job uses ${names.join(', ')}, so another job's uninstall may remove them while this job runs: ${errorMessage(e)}`)
    }
  }
  if (inputs.uninstall) {
    const state: UninstallState = {
      method: writer.method,
      dockerImage: inputs.dockerImage,
      job,
      entries: registrations.filter(r => r.action !== 'kept').map(r => ({ spec: r.spec, previous: r.previous })),
    }
    stepState.saveUninstall(state)
  }
}

/**
 * The runner cancels a step with SIGINT, then SIGTERM. Either aborts the run:
 * children are killed, unverified entries removed, the lock released. Should
 * that take too long, the temporary files go and the process exits anyway.
 */
function watchCancellation(cancel: AbortController, tempDir: () => string | undefined): () => void {
  const signals: NodeJS.Signals[] = ['SIGINT', 'SIGTERM']
  let deadline: NodeJS.Timeout | undefined
  const handler = (signal: NodeJS.Signals): void => {
    if (cancel.signal.aborted) return
    log.info(`Received ${signal}: stopping`)
    cancel.abort(signal)
    deadline = setTimeout(() => {
      const dir = tempDir()
      if (dir) fs.rmSync(dir, { recursive: true, force: true })
      log.fail(`cancelled (${signal}) and the clean-up did not finish in time`)
      process.exit(1)
    }, CANCEL_GRACE_MS)
    deadline.unref()
  }
  for (const s of signals) process.on(s, handler)
  return () => {
    clearTimeout(deadline)
    for (const s of signals) process.off(s, handler)
  }
}

/**
 * The probes and the emulators' checks run from RUNNER_TEMP: a noexec mount there would look like broken emulators.
 * A native-detection probe the kernel got to load (it ran, or its format was refused) already shows that programs
 * may run there; only when none was tried does the host's own probe run.
 */
async function checkTempExecutable(host: Host, temp: string, probes: ProbeHost, tried: readonly ProbeResult[]): Promise<void> {
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

/** Local runs have no runner directories: use per-user ones. */
function defaultRunnerDirs(): void {
  process.env.RUNNER_TEMP ||= os.tmpdir()
  process.env.RUNNER_TOOL_CACHE ||= path.join(os.homedir(), '.cache', 'setup-qemu-binfmt', 'tool-cache')
  fs.mkdirSync(process.env.RUNNER_TEMP, { recursive: true })
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
 * Creates or reuses the builder after registration, so BuildKit sees the emulators; saves
 * what the post step removes. Under buildx: auto a builder that cannot be had is a
 * warning and no result: the outputs then come from the emulators alone.
 */
async function runBuilder(inputs: Inputs, outcome: Outcome, tempDir: string, runner: ProcessRunner, cancel: AbortSignal): Promise<BuilderResult | undefined> {
  const { cleanup, ...opts } = inputs.builder
  const platforms = outputs(outcome).platforms.split(',').filter(Boolean)
  const emulated = platforms.filter(p => !outcome.nativePlatforms.includes(p))
  // A half-made builder is removed even when the step is cancelled (as the rollback of entries is).
  const { result, state } = await setupBuilder({ ...opts, platforms, emulated, tempDir, cancel }, runner, log, new ChildProcessRunner())
  if (state && cleanup) stepState.saveBuilder(state)
  if (result) log.info(`Builder ${result.name} (${result.driver}): ${result.platforms.join(', ')}`)
  return result
}
