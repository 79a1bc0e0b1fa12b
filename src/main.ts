import * as core from '@actions/core'
import * as fs from 'fs'
import * as os from 'os'
import * as path from 'path'
import { BinfmtReader, EntrySpec } from './binfmt'
import { ActionError, errorMessage } from './errors'
import { FetchResult, fetchEmulators } from './fetch'
import { CACHE_STATE } from './fetch/actions-cache'
import { detectHost, nativePlatforms } from './host'
import { Plan, detectNative } from './plan'
import { Inputs, readInputs } from './inputs'
import { KernelWriter, directAccess } from './kernel'
import { DockerWriter, dockerAccess, verifyInContainer } from './docker'
import { BuilderResult, setupBuilder } from './buildx/builder'
import { ChildProcessRunner, ProcessRunner } from './process'
import { Journal, Registration, WantedEntry, applyChanges, planChanges, rollback } from './register'
import { Outcome, outputs, reportRows } from './report'
import { resolveSource } from './source'
import { Target, dockerPlatforms, emulatorName } from './targets'
import { ProbeResult, verifyRegistrations } from './verify'

const log = { info: core.info, debug: core.debug, warning: core.warning, notice: core.notice }

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
  const runner = new ChildProcessRunner()
  let tempDir: string | undefined
  try {
    // Every bad input fails here, before anything is touched.
    const inputs = readInputs(name => core.getInput(name))
    const host = detectHost()
    const source = resolveSource(inputs.qemuUrl, inputs.qemuVersion, host.arch)
    defaultRunnerDirs()
    const temp = (tempDir = fs.mkdtempSync(path.join(process.env.RUNNER_TEMP!, 'setup-qemu-binfmt-')))

    const writer = await core.group('Access to binfmt_misc', () => chooseWriter(inputs, runner))
    // A runner that cannot see the table the daemon's containers change reads it as they saw it.
    const hidden = writer instanceof DockerWriter && writer.hidden ? writer : undefined
    const reader: BinfmtReader = hidden ? hidden.view : new BinfmtReader()

    const native = await core.group('Native platforms', () => detectNative(host, reader, temp, runner, core.info))
    const plan = new Plan(host, inputs.platforms, native)
    const nativeP = nativePlatforms(host, native)
    core.info(`This ${host.arch} runner runs natively: ${nativeP.join(', ')}`)
    for (const t of plan.requestedNative()) core.info(`${label(t)} runs natively on this runner; not registering an emulator`)

    // Nothing foreign asked for: nothing to download.
    const onlyNative = inputs.platforms.kind === 'list' && plan.foreignTargets([]).length === 0
    const fetched: FetchResult = onlyNative
      ? { emulators: new Map(), cacheHit: true, from: 'local', timings: { download: 0, extract: 0 } }
      : await time('fetch', () =>
          core.group('Emulators', () =>
            fetchEmulators({
              source,
              version: inputs.qemuVersion,
              host: host.arch,
              sha256: inputs.sha256,
              cache: inputs.cache,
              want: plan.emulatorWant(),
              selectionKey: plan.selectionKey(),
              tempDir: temp,
              log,
            }),
          ),
        )
    Object.assign(timings, fetched.timings)
    // Saved by the post step, so this step's time is what the job needs.
    if (fetched.pendingSave) core.saveState(CACHE_STATE, JSON.stringify(fetched.pendingSave))
    const targets: Target[] = plan.foreignTargets([...fetched.emulators.keys()])
    core.info(`Emulators to register: ${targets.map(x => x.name).join(', ') || 'none'}`)

    const wanted: WantedEntry[] = targets.map(target => ({ target, spec: entrySpec(inputs, target, fetched, writer) }))
    const journal = new Journal()
    let outcome: Outcome
    let builder: BuilderResult | undefined
    try {
      const registrations = await time('register', () =>
        core.group(`Register ${writer.how}`, () =>
          applyChanges(writer, reader, planChanges(reader.mounted() ? reader.list() : [], wanted, inputs.reset), journal, log),
        ),
      )
      const probes = await time('verify', () =>
        core.group('Verify', async () => {
          const results = hidden
            ? await verifyInContainer(hidden, registrations, temp)
            : await verifyRegistrations(registrations, reader, temp, runner)
          for (const p of results) core.info(`${p.target.name}: ${p.ok ? 'ok' : p.detail} (${p.ms.toFixed(1)} ms)`)
          return results
        }),
      )
      const failed = probes.filter(p => !p.ok)
      if (failed.length) throw verificationError(failed, registrations)
      outcome = {
        nativePlatforms: nativeP,
        registrations,
        emulators: fetched.emulators,
        probes,
        qemuVersion: inputs.qemuVersion,
        cacheHit: fetched.cacheHit,
        method: writer.method,
      }
      // After registration, so that BuildKit sees the emulators when it starts.
      const platforms = outputs(outcome).platforms.split(',')
      builder = await time('builder', () => core.group('buildx builder', () => runBuilder(inputs, platforms, temp, runner)))
    } catch (e) {
      // Whatever failed, the kernel is left as this run found it.
      if (!journal.empty) await core.group('Rollback', () => rollback(writer, reader, journal, log))
      throw e
    }

    const out = outputs(outcome)
    if (builder) {
      out.platforms = builder.platforms.join(',')
      out.builder = builder.name
      out.nodes = JSON.stringify(
        builder.nodes.map(n => ({ name: n.name, endpoint: n.endpoint, status: n.status, buildkit: n.buildkit, platforms: n.platforms })),
      )
    }
    for (const [k, v] of Object.entries(out)) core.setOutput(k, v)
    core.info(`Platforms available: ${out.platforms}`)
    timings.total = performance.now() - started
    core.debug(`timings ${JSON.stringify(timings)}`)
    await writeSummary(outcome, builder)
  } catch (e) {
    core.setFailed(errorMessage(e))
    if (!(e instanceof ActionError) && e instanceof Error && e.stack) core.debug(e.stack)
  } finally {
    if (tempDir) fs.rmSync(tempDir, { recursive: true, force: true })
  }
}

/** Local runs have no runner directories: use per-user ones. */
function defaultRunnerDirs(): void {
  process.env.RUNNER_TEMP ||= os.tmpdir()
  process.env.RUNNER_TOOL_CACHE ||= path.join(os.homedir(), '.cache', 'setup-qemu-binfmt', 'tool-cache')
  fs.mkdirSync(process.env.RUNNER_TEMP, { recursive: true })
}

/** install-mode decides the path; auto tries direct registration first, then Docker. */
async function chooseWriter(inputs: Inputs, runner: ProcessRunner): Promise<KernelWriter> {
  const tried: string[] = []
  if (inputs.installMode !== 'docker') {
    const direct = await directAccess(runner)
    if (direct.writer) {
      core.info(`Registering directly ${direct.writer.how}`)
      return direct.writer
    }
    tried.push(`direct: ${direct.reason}`)
    if (inputs.installMode === 'auto') core.info(`Direct registration is not possible (${direct.reason}); trying Docker`)
  }
  if (inputs.installMode !== 'direct') {
    const docker = await dockerAccess(runner, inputs.dockerImage, log)
    if (docker.writer) {
      core.info(`Registering ${docker.writer.how}`)
      return docker.writer
    }
    tried.push(`${docker.reason}`)
  }
  throw new ActionError(
    `cannot register emulators (install-mode: ${inputs.installMode}): ${tried.join('; ')}; ` +
      `run as root, allow passwordless sudo, or give the runner access to a Docker daemon`,
  )
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

/** Creates or reuses the builder after registration, so BuildKit sees the emulators; saves what the post step removes. */
async function runBuilder(inputs: Inputs, platforms: string[], tempDir: string, runner: ProcessRunner): Promise<BuilderResult | undefined> {
  const { cleanup, ...opts } = inputs.builder
  const { result, state } = await setupBuilder({ ...opts, platforms, tempDir }, runner, log)
  if (state && cleanup) core.saveState('builder', JSON.stringify(state))
  if (result) core.info(`Builder ${result.name} (${result.driver}): ${result.platforms.join(', ')}`)
  return result
}

async function writeSummary(o: Outcome, builder?: BuilderResult): Promise<void> {
  if (!process.env.GITHUB_STEP_SUMMARY) return
  const rows = reportRows(o, emulatorName)
  if (builder) {
    core.summary.addHeading(`buildx builder ${builder.name}`, 3).addTable([
      [
        { data: 'node', header: true },
        { data: 'endpoint', header: true },
        { data: 'status', header: true },
        { data: 'BuildKit', header: true },
        { data: 'platforms', header: true },
      ],
      ...builder.nodes.map(n => [n.name, n.endpoint, n.status, n.buildkit, n.platforms.join(', ')].map(c => c || '-')),
    ])
  }
  await core.summary
    .addHeading('QEMU emulators', 3)
    .addTable([
      [
        { data: 'platform', header: true },
        { data: 'emulator', header: true },
        { data: 'QEMU version', header: true },
        { data: 'flags', header: true },
        { data: 'source', header: true },
        { data: 'verified', header: true },
        { data: 'time', header: true },
      ],
      // core.summary leaves an empty cell unclosed: never pass ''.
      ...rows.map(r =>
        [r.platforms.join(', '), r.emulator, r.qemuVersion, r.flags, r.source, r.verified, r.ms === undefined ? '' : `${r.ms.toFixed(1)} ms`].map(
          c => c || '-',
        ),
      ),
    ])
    .addRaw(`\nmethod: ${o.method}, cache hit: ${o.cacheHit}\n`)
    .write()
}
