// Benchmarks the whole action process (dist/index.js under Node 24, as action.yml runs it)
// against a loopback HTTP server that serves a tonistiigi/binfmt-layout archive built from
// Debian's /usr/bin/qemu-<T>-static. Per scenario: cold runs (fresh RUNNER_TOOL_CACHE, no
// entries of ours in binfmt_misc), each right after a `curl | tar xz` of the same archive, then
// one cold and N warm runs (same tool cache, entries already registered and kept). Around each warm
// run it times `node -e 0` and the run's own test programs alone (the action's probe batch through
// the entries it kept, started by /bin/sh from the bench): the report shows the warm run's time
// outside the action (Node start, loading, exit) and the floor those two make.
//
//   sudo npm run bench [-- --runs N] [--cold N] [--json] [--platforms LIST] [--targets LIST] [--script FILE] [--keep-cache] [--force]
//                          [--builder auto|on|off] [--builder-runs N] [--builder-only]
//
// The builder scenario (when Docker, buildx and .ci/registry.sh's registry are there): cold `all`
// with the default builder, its BuildKit image pulled from the local registry each time, against
// the same run with buildx: false and a plain `docker buildx create --bootstrap`, alternated. It
// removes every builder, container and volume it made, and untags the BuildKit image while it
// runs (so that each pull is a real one), putting the tags back (same image ID) at the end.
//
// It runs the action, serves the archive and reads binfmt_misc with the integration tests'
// support (__tests__/support) and maps platforms to targets with the action's own parser.
//
// binfmt_misc is shared by everything on the machine. The bench removes, at the end (also on
// errors and Ctrl-C), only the entries that did not exist when it started and whose interpreter
// lies in its own temporary directory. It never writes to `status`, and by default refuses to
// start when an entry it would register already exists (it would be replaced and not put back).
import { ChildProcess, spawn, spawnSync } from 'child_process'
import * as fs from 'fs'
import * as os from 'os'
import * as path from 'path'
import { ACTION_NODE, REPO_ROOT, RunActionResult, actionScript, runAction } from '../__tests__/support/action'
import { BINFMT_DIR, binfmtMounted, listEntries, readEntry, removeEntry } from '../__tests__/support/binfmt'
import { tonistiigiArchive, tonistiigiUrlPath } from '../__tests__/support/fixtures'
import { TestServer, startServer } from '../__tests__/support/server'
import { parsePlatforms } from '../src/platform'
import { buildProbe } from '../src/test-programs'
import { allTargets, emulatorName, getTarget } from '../src/targets'
import { PROBE_SCRIPT, parseProbes } from '../src/verify'

const QEMU_VERSION = '7.2.0-1'
/** the emulators of a tonistiigi/binfmt amd64 release */
const TONISTIIGI_TARGETS = ['aarch64', 'arm', 'riscv64', 'ppc64le', 's390x', 'mips64el', 'mips64', 'loongarch64', 'i386', 'x86_64']
const TARGET_WARM_ALL_WALL_MS = 300
const TARGET_REGISTER_VERIFY_MS = 50
/** warm `all`, best of the warm runs, against the best `node -e 0` measured between them */
const TARGET_WARM_ALL_NODE_RATIO = 3
const TARGET_WARM_ALL_VERIFY_MS = 100
/** cold runs against `curl | tar xz` of the same archive: all at most 1.3x, one platform at most 1.0x */
const TARGET_COLD_RATIO: Readonly<Record<string, number>> = { all: 1.3, one: 1.0 }

type Metric = 'download' | 'extract' | 'register' | 'verify' | 'registerVerify' | 'fetch' | 'total' | 'outside' | 'wall' | 'nodeZero' | 'batch'
const METRICS: readonly (readonly [Metric, string])[] = [
  ['download', 'download'],
  ['extract', 'extract'],
  ['register', 'register'],
  ['verify', 'verify'],
  ['registerVerify', 'register+verify'],
  ['fetch', 'fetch'],
  ['total', 'action total'],
  // Node starting, loading the action's chunks, and exiting: the whole process less the action's own time.
  ['outside', 'start+load+exit'],
  ['wall', 'whole process'],
  // Measured around each warm run (0 for cold runs): `node -e 0` under the same Node right before it, and
  // right after it the same test programs through the entries it kept, run by /bin/sh from the bench.
  ['nodeZero', 'node -e 0'],
  ['batch', 'programs alone'],
]

interface Options {
  runs: number
  cold: number
  json: boolean
  platforms?: string[]
  targets: string[]
  script?: string
  keepCache: boolean
  force: boolean
  builder: 'auto' | 'on' | 'off'
  builderRuns: number
  builderOnly: boolean
}

interface Scenario {
  readonly name: 'one' | 'all'
  readonly platforms: string
}

type Run = Record<Metric, number> & {
  kind: 'cold' | 'warm'
  cacheHit: string | undefined
  emulators: string
  entries: { added: number; replaced: number; kept: number }
  httpRequests: number
}

type Stats = { n: number } & Record<Metric, { median: number; min: number }>

interface Group {
  scenario: string
  platforms: string
  kind: 'cold' | 'warm'
  stats: Stats
  runs: Run[]
}

interface Comparison {
  scenario: string
  platforms: string
  action: number
  baseline: number
  ratio: number
  limit: number
}

interface TargetResult {
  name: string
  scenario: string
  kind: string
  metric: Metric | 'ratio'
  value: number
  limit: number
  met: boolean
}

class BenchError extends Error {}
function fail(message: string): never {
  throw new BenchError(message)
}

const progress = (m: string): void => void process.stderr.write(`bench: ${m}\n`)

function usage(code: number): never {
  const text = `usage: npm run bench -- [options]   (as root)

Times cold and warm runs of dist/index.js (under ${ACTION_NODE}) against a loopback
HTTP server serving a tonistiigi-layout archive (qemu-version ${QEMU_VERSION}) built from
/usr/bin/qemu-<T>-static. Scenarios: one (platforms=linux/arm64) and all
(platforms=all), inputs buildx=false cache=false, the other inputs at action.yml's defaults.

  --runs N          warm runs per scenario (default 5)
  --cold N          cold runs per scenario, each alternating with a
                    \`curl | tar xz\` of the same archive (default 3)
  --json            print the results as JSON (progress goes to stderr)
  --platforms LIST  comma-separated platforms: scenario one uses the first,
                    scenario all the whole list (instead of platforms=all)
  --targets LIST    emulators in the archive (default: ${TONISTIIGI_TARGETS.join(',')});
                    'installed': every /usr/bin/qemu-<T>-static (Debian's 31)
  --script FILE     run this build of the action instead of dist/index.js
                    (e.g. a copy of an older dist/, to compare)
  --keep-cache      keep the temporary directory (archive, tool caches)
  --force           run even when binfmt entries the bench would register
                    already exist (they get replaced and are not put back)
  --builder MODE    the builder scenario: auto (default: when Docker, buildx and
                    the local registry serving ${BUILDKIT_IMAGE} are there), on, off
  --builder-runs N  rounds of the builder scenario (default 3)
  --builder-only    only the builder scenario
`
  ;(code ? process.stderr : process.stdout).write(text)
  process.exit(code)
}

function parseArgs(argv: readonly string[]): Options {
  const opts: Options = {
    runs: 5,
    cold: 3,
    json: false,
    targets: TONISTIIGI_TARGETS,
    keepCache: false,
    force: false,
    builder: 'auto',
    builderRuns: 3,
    builderOnly: false,
  }
  const list = (v: string): string[] => v.split(/[\s,]+/).filter(Boolean)
  const positive = (name: string, v: string): number => {
    const n = Number(v)
    if (!Number.isInteger(n) || n < 1) fail(`${name} must be a positive integer`)
    return n
  }
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]
    const eq = arg.indexOf('=')
    const name = arg.startsWith('--') && eq > 0 ? arg.slice(0, eq) : arg
    const value = (): string => {
      if (arg.startsWith('--') && eq > 0) return arg.slice(eq + 1)
      if (i + 1 >= argv.length) fail(`${name} needs a value`)
      return argv[++i]
    }
    switch (name) {
      case '--runs':
        opts.runs = positive(name, value())
        break
      case '--cold':
        opts.cold = positive(name, value())
        break
      case '--json':
        opts.json = true
        break
      case '--platforms':
        opts.platforms = list(value())
        if (!opts.platforms.length) fail('--platforms needs at least one platform')
        break
      case '--targets':
        opts.targets = [...new Set(list(value()))]
        if (opts.targets.join() === 'installed') opts.targets = installedTargets()
        if (!opts.targets.length) fail('--targets needs at least one target')
        break
      case '--script':
        opts.script = path.resolve(value())
        if (!fs.existsSync(opts.script)) fail(`--script: ${opts.script} does not exist`)
        break
      case '--keep-cache':
        opts.keepCache = true
        break
      case '--force':
        opts.force = true
        break
      case '--builder': {
        const v = value()
        if (v !== 'auto' && v !== 'on' && v !== 'off') fail('--builder must be auto, on or off')
        opts.builder = v
        break
      }
      case '--builder-runs':
        opts.builderRuns = positive(name, value())
        break
      case '--builder-only':
        opts.builderOnly = true
        break
      case '-h':
      case '--help':
        usage(0)
        break
      default:
        process.stderr.write(`bench: unknown option ${arg}\n`)
        usage(2)
    }
  }
  for (const t of opts.targets) if (!/^[a-z0-9_]+$/.test(t)) fail(`--targets: '${t}' is not a QEMU target name`)
  return opts
}

/** QEMU targets of the installed /usr/bin/qemu-<T>-static, minus names that are no target (e.g. debootstrap helpers). */
function installedTargets(): string[] {
  return fs
    .readdirSync('/usr/bin')
    .map(f => /^qemu-([a-z0-9_]+)-static$/.exec(f)?.[1])
    .filter((t): t is string => t !== undefined)
    .sort()
}

// ---- binfmt_misc ----------------------------------------------------------

interface State {
  /** entries present when the bench started: never touched */
  before: Set<string>
  /** entries the scenarios may make the action register */
  mayCreate: Set<string>
  /** the bench's directory, as given and as resolved */
  dirs: string[]
  dir?: string
  server?: TestServer
  child?: ChildProcess
  interrupted?: NodeJS.Signals
  cleaned: boolean
  /** builders the builder scenario made and has not removed yet */
  builders: string[]
  /** the BuildKit image's ID and local tags while the builder scenario has them removed */
  image?: { id: string; tags: string[] }
}

function entryNames(): string[] {
  return binfmtMounted() ? listEntries() : []
}

/** binfmt entry names a platforms input may make the action register, given the archive's emulators (the action's own parser decides). */
function entriesFor(platforms: string, emulators: readonly string[]): Set<string> {
  const selection = parsePlatforms(platforms)
  const targets = selection.kind === 'all' ? allTargets().filter(t => emulators.includes(emulatorName(t))) : selection.targets
  return new Set(targets.map(t => `qemu-${t.name}`))
}

/**
 * Removes entries that were not there when the bench started, that the bench may create, and
 * whose interpreter is in the bench's directory. Writes only `-1` to such an entry file; never
 * to `status`. Returns what it removed.
 */
function removeOurEntries(state: State): string[] {
  const removed: string[] = []
  const problems: string[] = []
  for (const name of entryNames()) {
    if (state.before.has(name) || !state.mayCreate.has(name)) continue
    let interpreter: string
    try {
      interpreter = readEntry(name).interpreter
    } catch {
      continue
    }
    if (!state.dirs.some(d => interpreter.startsWith(`${d}/`))) continue
    try {
      if (removeEntry(name)) removed.push(name)
    } catch (e) {
      problems.push(`${name}: ${(e as Error).message}`)
    }
  }
  if (problems.length) progress(`could not remove ${problems.join('; ')}`)
  return removed
}

// ---- running the action -------------------------------------------------------

function checkInterrupted(state: State): void {
  if (state.interrupted) throw new BenchError(`interrupted (${state.interrupted})`)
}

function inputsFor(scenario: Scenario, urlTemplate: string): Record<string, string> {
  return { platforms: scenario.platforms, 'qemu-version': QEMU_VERSION, 'qemu-url': urlTemplate, buildx: 'false', cache: 'false' }
}

/** One main phase, as a runner runs it; the support measures the process's wall clock. */
function run(state: State, opts: Options, toolCache: string, inputs: Record<string, string>): Promise<RunActionResult> {
  return runAction(inputs, {
    toolCache,
    debug: true,
    script: opts.script,
    onSpawn: child => (state.child = child),
  }).finally(() => (state.child = undefined))
}

function failure(scenario: string, kind: string, r: RunActionResult, timings: boolean): never {
  const errors = r.stdout.split('\n').filter(l => l.startsWith('::error'))
  const tail = errors.length ? errors.join('\n') : `${r.stdout}\n${r.stderr}`.trim().split('\n').slice(-15).join('\n')
  fail(`${scenario} ${kind} run failed (exit ${r.code}${r.signal ? `, ${r.signal}` : ''}${timings ? '' : ', no timings line'}):\n${tail}`)
}

function timingsOf(stdout: string): Record<string, number> | undefined {
  const prefix = '::debug::timings '
  const line = stdout.split('\n').find(l => l.startsWith(prefix))
  try {
    return line ? (JSON.parse(line.slice(prefix.length)) as Record<string, number>) : undefined
  } catch {
    return undefined
  }
}

async function runScenario(state: State, scenario: Scenario, opts: Options, urlTemplate: string, server: TestServer): Promise<Run[]> {
  const toolCache = path.join(state.dir!, `tool-cache-${scenario.name}`)
  fs.rmSync(toolCache, { recursive: true, force: true })
  // Cold also means: none of the bench's entries registered yet.
  removeOurEntries(state)
  const runs: Run[] = []
  for (let i = 0; i <= opts.runs; i++) {
    checkInterrupted(state)
    const kind = i === 0 ? 'cold' : 'warm'
    // The floor of any Node program's run, alternating with the warm runs so both see the same machine.
    const nodeZero = kind === 'warm' ? await timeNodeZero(state) : 0
    const requestsBefore = server.requests.length
    const r = await run(state, opts, toolCache, inputsFor(scenario, urlTemplate))
    checkInterrupted(state)
    const t = timingsOf(r.stdout)
    if (r.code !== 0 || !t) failure(scenario.name, kind, r, t !== undefined)
    const count = (re: RegExp): number => (r.stdout.match(re) ?? []).length
    const entries = { added: count(/: registering /g), replaced: count(/: replacing the existing entry/g), kept: count(/; kept$/gm) }
    // Right after the run, through the entries it kept: what the verify step cannot go below.
    const batch = kind === 'warm' ? await timeProbeBatch(state) : 0
    const one: Run = {
      kind,
      nodeZero,
      batch,
      wall: r.wallMs,
      outside: r.wallMs - (t.total ?? 0),
      download: t.download ?? 0,
      extract: t.extract ?? 0,
      register: t.register ?? 0,
      verify: t.verify ?? 0,
      registerVerify: (t.register ?? 0) + (t.verify ?? 0),
      fetch: t.fetch ?? 0,
      total: t.total ?? 0,
      cacheHit: r.outputs['cache-hit'],
      emulators: r.outputs.emulators ?? '',
      entries,
      httpRequests: server.requests.length - requestsBefore,
    }
    runs.push(one)
    progress(
      `${scenario.name} ${kind}${kind === 'warm' ? ` ${i}/${opts.runs}` : ''}: ${one.wall.toFixed(1)} ms, ` +
        `${one.httpRequests} HTTP request${one.httpRequests === 1 ? '' : 's'} ` +
        `(register+verify ${one.registerVerify.toFixed(1)} ms, cache-hit ${one.cacheHit}, ` +
        `added ${entries.added}, replaced ${entries.replaced}, kept ${entries.kept}; emulators ${one.emulators || 'none'})`,
    )
  }
  return runs
}

/**
 * Wall time of the action's own test-program batch (PROBE_SCRIPT, one program per entry the
 * bench registered) run by /bin/sh from the bench: the emulators' start alone, without Node.
 */
async function timeProbeBatch(state: State): Promise<number> {
  const names = entryNames().filter(n => !state.before.has(n) && state.mayCreate.has(n))
  const dir = fs.mkdtempSync(path.join(state.dir!, 'batch-'))
  try {
    const programs = names.map(n => `probe-${n.slice('qemu-'.length)}`)
    for (const n of names) fs.writeFileSync(path.join(dir, `probe-${n.slice('qemu-'.length)}`), buildProbe(getTarget(n.slice('qemu-'.length))), { mode: 0o755 })
    const { ms, stdout } = await new Promise<{ ms: number; stdout: string }>((resolve, reject) => {
      const start = performance.now()
      const child = spawn('/bin/sh', ['-c', PROBE_SCRIPT, 'sh', dir, ...programs], { stdio: ['ignore', 'pipe', 'ignore'] })
      state.child = child
      const out: Buffer[] = []
      child.stdout.on('data', (d: Buffer) => out.push(d))
      child.on('error', reject)
      child.on('close', () => {
        state.child = undefined
        resolve({ ms: performance.now() - start, stdout: Buffer.concat(out).toString() })
      })
    })
    const ended = parseProbes(stdout, programs)
    const failed = programs.filter(p => {
      const e = ended.get(p)
      return !e || e instanceof Error || e.code === null
    })
    if (failed.length) progress(`warning: the programs-alone batch did not run ${failed.join(', ')}`)
    return ms
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
}

/** Wall time of `node -e 0` under the Node the action runs on. */
function timeNodeZero(state: State): Promise<number> {
  return new Promise((resolve, reject) => {
    const start = performance.now()
    const child = spawn(ACTION_NODE, ['-e', '0'], { stdio: 'ignore' })
    state.child = child
    child.on('error', reject)
    child.on('close', code => {
      state.child = undefined
      if (code !== 0) reject(new BenchError(`${ACTION_NODE} -e 0 exited with ${code}`))
      else resolve(performance.now() - start)
    })
  })
}

/** The floor for a cold run: `curl | tar xz` of the same archive into a fresh directory. */
function runBaseline(state: State, url: string): Promise<number> {
  const out = fs.mkdtempSync(path.join(state.dir!, 'baseline-'))
  return new Promise((resolve, reject) => {
    const start = performance.now()
    const child = spawn('sh', ['-c', 'curl -sSf "$1" | tar xzf - -C "$2"', 'sh', url, out], { stdio: ['ignore', 'ignore', 'pipe'] })
    state.child = child
    const err: Buffer[] = []
    child.stderr.on('data', (d: Buffer) => err.push(d))
    child.on('error', reject)
    child.on('close', code => {
      state.child = undefined
      const wall = performance.now() - start
      fs.rmSync(out, { recursive: true, force: true })
      if (code !== 0) reject(new BenchError(`curl | tar xz failed: ${Buffer.concat(err).toString().trim()}`))
      else resolve(wall)
    })
  })
}

/** Cold runs of the action, each right after a baseline run (alternating, so both see the same machine state). */
async function runColdComparison(state: State, scenario: Scenario, opts: Options, urlTemplate: string, archiveUrl: string): Promise<Comparison> {
  const action: number[] = []
  const baseline: number[] = []
  for (let i = 0; i < opts.cold; i++) {
    checkInterrupted(state)
    baseline.push(await runBaseline(state, archiveUrl))
    const toolCache = path.join(state.dir!, `tool-cache-cold-${scenario.name}-${i}`)
    removeOurEntries(state)
    const r = await run(state, opts, toolCache, inputsFor(scenario, urlTemplate))
    if (r.code !== 0) failure(scenario.name, 'cold', r, true)
    action.push(r.wallMs)
    fs.rmSync(toolCache, { recursive: true, force: true })
    progress(`${scenario.name} cold ${i + 1}/${opts.cold}: action ${r.wallMs.toFixed(1)} ms, curl | tar xz ${baseline[baseline.length - 1].toFixed(1)} ms`)
  }
  const a = median(action)
  const b = median(baseline)
  return {
    scenario: scenario.name,
    platforms: scenario.platforms,
    action: round(a),
    baseline: round(b),
    ratio: Math.round((a / b) * 100) / 100,
    limit: TARGET_COLD_RATIO[scenario.name],
  }
}

// ---- the builder scenario --------------------------------------------------------
//
// Cold `all` with the default builder (docker-container, its BuildKit image pulled from the local
// registry every time, as a hosted runner pulls moby/buildkit), against (a) the same cold run with
// buildx: false and (b) a plain `docker buildx create --bootstrap` of the same image, alternated.
// With the builder overlapping the emulator steps, the action should take about the slower of the
// two: the ratio is against max(a, b).

/** what .ci/registry.sh serves (pushed from .ci/buildkit.sh's local/buildkit:test) */
const BUILDKIT_IMAGE = '127.0.0.1:5000/buildkit:test'
const TARGET_BUILDER_RATIO = 1.2

interface BuilderComparison {
  platforms: string
  image: string
  /** medians, ms */
  action: number
  noBuilder: number
  plainCreate: number
  ratio: number
  limit: number
  runs: { action: number; noBuilder: number; plainCreate: number; builderStart?: number; builderWait?: number }[]
}

const docker = (...args: string[]): ReturnType<typeof spawnSync> => spawnSync('docker', args, { encoding: 'utf8', timeout: 300000 })

/** Whether the builder scenario can run here: a Docker daemon, buildx, and the registry serving the image. */
function builderAvailable(): string | undefined {
  if (docker('info').status !== 0) return 'no Docker daemon'
  if (docker('buildx', 'version').status !== 0) return 'no docker buildx'
  const reg = spawnSync('curl', ['-fsS', '-o', '/dev/null', `http://${BUILDKIT_IMAGE.replace(/\/.*/, '')}/v2/buildkit/manifests/test`])
  if (reg.status !== 0) return `the local registry does not serve ${BUILDKIT_IMAGE} (run .ci/docker.sh as root)`
  return undefined
}

/**
 * Every local tag of the BuildKit image: a pull is a real one only when no image holds its layers, so
 * all of them go before each run and come back (pulled from the registry, same image ID) at the end.
 */
function imageTags(state: State): void {
  const r = docker('image', 'inspect', '-f', '{{.Id}} {{json .RepoTags}}', BUILDKIT_IMAGE)
  if (r.status !== 0) {
    if (docker('pull', '-q', BUILDKIT_IMAGE).status !== 0) fail(`cannot pull ${BUILDKIT_IMAGE}`)
    return imageTags(state)
  }
  const out = String(r.stdout).trim()
  const id = out.slice(0, out.indexOf(' '))
  const tags = JSON.parse(out.slice(out.indexOf(' ') + 1)) as string[]
  state.image = { id, tags }
}

function dropImage(state: State): void {
  const tags = state.image?.tags ?? []
  if (tags.length) docker('image', 'rm', ...tags)
  if (docker('image', 'inspect', BUILDKIT_IMAGE).status === 0) fail(`${BUILDKIT_IMAGE} is still there after docker image rm (a container uses it?)`)
}

/** Puts the image's tags back as they were (pulled again from the registry: the same image ID). Synchronous for cleanup. */
function restoreImage(state: State): void {
  const img = state.image
  if (!img) return
  const have = (tag: string): boolean => String(docker('image', 'inspect', '-f', '{{.Id}}', tag).stdout).trim() === img.id
  if (!img.tags.every(have)) {
    if (!have(BUILDKIT_IMAGE)) docker('pull', '-q', BUILDKIT_IMAGE)
    for (const t of img.tags) if (!have(t)) docker('tag', BUILDKIT_IMAGE, t)
  }
  const missing = img.tags.filter(t => !have(t))
  if (missing.length) progress(`could not put back ${missing.join(', ')} (image ${img.id}); run .ci/docker.sh as root to rebuild it`)
  state.image = undefined
}

/** Removes a builder the bench made, its container and its state volume, whatever is left of them. */
function removeBuilder(name: string): void {
  docker('buildx', 'rm', '--', name)
  docker('rm', '--force', '--volumes', '--', `buildx_buildkit_${name}0`)
  docker('volume', 'rm', '--force', '--', `buildx_buildkit_${name}0_state`)
}

function removeBuilders(state: State): void {
  for (const name of state.builders.splice(0)) removeBuilder(name)
}

/** (b): what the builder costs alone, as a user would make it by hand. */
function plainCreate(state: State, name: string): Promise<number> {
  state.builders.push(name)
  return new Promise((resolve, reject) => {
    const start = performance.now()
    const args = ['buildx', 'create', '--name', name, '--node', `${name}0`, '--driver', 'docker-container']
    args.push('--driver-opt', `image=${BUILDKIT_IMAGE}`, '--driver-opt', 'network=host', '--bootstrap')
    const child = spawn('docker', args, { stdio: ['ignore', 'ignore', 'pipe'] })
    state.child = child
    const err: Buffer[] = []
    child.stderr.on('data', (d: Buffer) => err.push(d))
    child.on('error', reject)
    child.on('close', code => {
      state.child = undefined
      const wall = performance.now() - start
      if (code !== 0) reject(new BenchError(`docker ${args.join(' ')} failed: ${Buffer.concat(err).toString().trim().split('\n').slice(-3).join(' ')}`))
      else resolve(wall)
    })
  })
}

async function runBuilderComparison(state: State, opts: Options, scenario: Scenario, urlTemplate: string): Promise<BuilderComparison> {
  imageTags(state)
  const runs: BuilderComparison['runs'] = []
  try {
    for (let i = 0; i < opts.builderRuns; i++) {
      checkInterrupted(state)
      // (a) the same cold run without a builder
      removeOurEntries(state)
      const cacheA = path.join(state.dir!, `tool-cache-builder-a-${i}`)
      const a = await run(state, opts, cacheA, inputsFor(scenario, urlTemplate))
      if (a.code !== 0) failure('builder (buildx: false)', 'cold', a, true)
      fs.rmSync(cacheA, { recursive: true, force: true })
      checkInterrupted(state)

      // (b) a plain create --bootstrap of the same image, pulled
      removeBuilders(state)
      dropImage(state)
      const b = await plainCreate(state, `qbf-bench-${process.pid}-plain-${i}`)
      removeBuilders(state)
      checkInterrupted(state)

      // the action with the default builder, the image pulled
      removeOurEntries(state)
      dropImage(state)
      const cache = path.join(state.dir!, `tool-cache-builder-${i}`)
      // builder-name left to the action (a generated one), as by default; the name is read back to remove it
      const inputs = { ...inputsFor(scenario, urlTemplate), buildx: 'true', use: 'false', 'driver-opts': `image=${BUILDKIT_IMAGE}\nnetwork=host` }
      const r = await run(state, opts, cache, inputs)
      const made = r.outputs.builder || /Creating builder (\S+)/.exec(r.stdout)?.[1]
      if (made) state.builders.push(made)
      if (r.code !== 0 || !r.outputs.builder) failure('builder', 'cold', r, true)
      fs.rmSync(cache, { recursive: true, force: true })
      removeBuilders(state)
      const t = timingsOf(r.stdout) ?? {}
      runs.push({ action: r.wallMs, noBuilder: a.wallMs, plainCreate: b, builderStart: t.builderStart, builderWait: t.builderWait })
      progress(
        `builder ${i + 1}/${opts.builderRuns}: action with builder ${r.wallMs.toFixed(0)} ms (builder phase ${(t.builder ?? NaN).toFixed(0)} ms), ` +
          `buildx: false ${a.wallMs.toFixed(0)} ms, plain create --bootstrap ${b.toFixed(0)} ms`,
      )
    }
  } finally {
    removeBuilders(state)
    restoreImage(state)
    removeOurEntries(state)
  }
  const action = median(runs.map(r => r.action))
  const noBuilder = median(runs.map(r => r.noBuilder))
  const plain = median(runs.map(r => r.plainCreate))
  return {
    platforms: scenario.platforms,
    image: BUILDKIT_IMAGE,
    action: round(action),
    noBuilder: round(noBuilder),
    plainCreate: round(plain),
    ratio: Math.round((action / Math.max(noBuilder, plain)) * 100) / 100,
    limit: TARGET_BUILDER_RATIO,
    runs: runs.map(r => ({ ...r, action: round(r.action), noBuilder: round(r.noBuilder), plainCreate: round(r.plainCreate) })),
  }
}

// ---- statistics and report ----------------------------------------------------

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  const m = Math.floor(s.length / 2)
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2
}

const round = (x: number): number => Math.round(x * 10) / 10

function stats(runs: readonly Run[]): Stats {
  const out = { n: runs.length } as Stats
  for (const [key] of METRICS) {
    const xs = runs.map(r => r[key])
    out[key] = { median: round(median(xs)), min: round(Math.min(...xs)) }
  }
  return out
}

function table(groups: readonly Group[]): string {
  const cols = groups.map(g => `${g.scenario} ${g.kind}${g.kind === 'warm' ? ` (n=${g.stats.n})` : ''}`)
  const w = 8
  const first = 16
  const pad = (s: string, n: number): string => s.padStart(n)
  const lines = [''.padEnd(first) + cols.map(c => pad(c, 2 * w + 1)).join('  ')]
  lines.push(`${'ms'.padEnd(first)}${groups.map(() => `${pad('median', w)} ${pad('min', w)}`).join('  ')}`)
  for (const [key, label] of METRICS) {
    lines.push(label.padEnd(first) + groups.map(g => `${pad(g.stats[key].median.toFixed(1), w)} ${pad(g.stats[key].min.toFixed(1), w)}`).join('  '))
  }
  return lines.join('\n')
}

/**
 * What a warm `all` cannot go below on this machine: Node starting and exiting (`node -e 0`) plus
 * its test programs run alone (the emulators' own start); both the best measured.
 */
function warmFloor(groups: readonly Group[]): { nodeZero: number; batch: number; floor: number; ratio: number; best: number; bestRatio: number } | undefined {
  const allWarm = groups.find(g => g.scenario === 'all' && g.kind === 'warm')
  if (!allWarm?.runs.length) return undefined
  const nodeZero = Math.min(...allWarm.runs.map(r => r.nodeZero))
  const batch = Math.min(...allWarm.runs.map(r => r.batch))
  const best = Math.min(...allWarm.runs.map(r => r.wall))
  const ratio2 = (x: number): number => Math.round((x / nodeZero) * 100) / 100
  return {
    nodeZero: round(nodeZero),
    batch: round(batch),
    floor: round(nodeZero + batch),
    ratio: ratio2(nodeZero + batch),
    best: round(best),
    bestRatio: ratio2(best),
  }
}

function evaluateTargets(groups: readonly Group[], comparisons: readonly Comparison[]): TargetResult[] {
  const targets: TargetResult[] = []
  const allWarm = groups.find(g => g.scenario === 'all' && g.kind === 'warm')
  if (allWarm) {
    const value = allWarm.stats.wall.median
    targets.push({
      name: `warm whole process (all) < ${TARGET_WARM_ALL_WALL_MS} ms`,
      scenario: 'all',
      kind: 'warm',
      metric: 'wall',
      value,
      limit: TARGET_WARM_ALL_WALL_MS,
      met: value < TARGET_WARM_ALL_WALL_MS,
    })
  }
  const nodeZero = allWarm?.runs.map(r => r.nodeZero) ?? []
  if (allWarm && nodeZero.length) {
    const best = Math.min(...allWarm.runs.map(r => r.wall))
    const value = Math.round((best / Math.min(...nodeZero)) * 100) / 100
    targets.push({
      name: `warm whole process (all, best) <= ${TARGET_WARM_ALL_NODE_RATIO}x node -e 0 (best, ${Math.min(...nodeZero).toFixed(1)} ms)`,
      scenario: 'all',
      kind: 'warm',
      metric: 'ratio',
      value,
      limit: TARGET_WARM_ALL_NODE_RATIO,
      met: value <= TARGET_WARM_ALL_NODE_RATIO,
    })
    const verify = allWarm.stats.verify.median
    targets.push({
      name: `verify (all warm) < ${TARGET_WARM_ALL_VERIFY_MS} ms`,
      scenario: 'all',
      kind: 'warm',
      metric: 'verify',
      value: verify,
      limit: TARGET_WARM_ALL_VERIFY_MS,
      met: verify < TARGET_WARM_ALL_VERIFY_MS,
    })
  }
  for (const g of groups) {
    const value = g.stats.registerVerify.median
    targets.push({
      name: `register+verify (${g.scenario} ${g.kind}) < ${TARGET_REGISTER_VERIFY_MS} ms`,
      scenario: g.scenario,
      kind: g.kind,
      metric: 'registerVerify',
      value,
      limit: TARGET_REGISTER_VERIFY_MS,
      met: value < TARGET_REGISTER_VERIFY_MS,
    })
  }
  for (const c of comparisons) {
    targets.push({
      name: `cold ${c.scenario} <= ${c.limit}x curl | tar xz`,
      scenario: c.scenario,
      kind: 'cold',
      metric: 'ratio',
      value: c.ratio,
      limit: c.limit,
      met: c.ratio <= c.limit,
    })
  }
  return targets
}

function versionOf(command: string, args: string[]): string {
  const r = spawnSync(command, args)
  return r.status === 0 ? r.stdout.toString().trim() : 'unknown'
}

// ---- main -------------------------------------------------------------------------

async function main(state: State, opts: Options): Promise<void> {
  if (process.getuid?.() !== 0) fail('run as root (sudo npm run bench): the bench registers and removes binfmt_misc entries')
  if (process.arch !== 'x64') fail(`the archive is a linux-amd64 one; this host is ${process.arch}`)
  if (!binfmtMounted()) fail(`${BINFMT_DIR} is not mounted; run .ci/prepare.sh (as root)`)
  for (const t of opts.targets) {
    if (!fs.existsSync(`/usr/bin/qemu-${t}-static`)) fail(`/usr/bin/qemu-${t}-static does not exist; install qemu-user-static or change --targets`)
  }
  if (!opts.script && !fs.existsSync(actionScript('main'))) {
    progress(`${actionScript('main')} is missing; running npm run build`)
    if (spawnSync('npm', ['run', 'build'], { cwd: REPO_ROOT, stdio: ['ignore', 'inherit', 'inherit'] }).status !== 0)
      fail('npm run build failed; fix the build and retry')
  }

  const scenarios: Scenario[] = opts.platforms
    ? [
        { name: 'one', platforms: opts.platforms[0] },
        { name: 'all', platforms: opts.platforms.join(',') },
      ]
    : [
        { name: 'one', platforms: 'linux/arm64' },
        { name: 'all', platforms: 'all' },
      ]

  // What is in binfmt_misc now stays untouched; refuse to replace existing entries unless --force.
  state.before = new Set(entryNames())
  for (const s of scenarios) {
    let names: Set<string>
    try {
      names = entriesFor(s.platforms, opts.targets)
    } catch (e) {
      fail(`--platforms: ${(e as Error).message}`)
    }
    for (const n of names) state.mayCreate.add(n)
  }
  const clash = [...state.mayCreate].filter(n => state.before.has(n)).sort()
  if (clash.length && !opts.force) {
    const them = clash.length > 1 ? 'them' : 'it'
    fail(
      `binfmt_misc already has ${clash.join(', ')}; the bench would replace ${them} and not put ${them} back. Remove ${them}, choose other --platforms/--targets, or pass --force`,
    )
  }
  if (clash.length) progress(`--force: ${clash.join(', ')} will be replaced and not restored`)

  state.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'setup-qemu-binfmt-bench-'))
  state.dirs = [state.dir, fs.realpathSync(state.dir)]
  progress(`building the archive of ${opts.targets.join(', ')} in ${state.dir}`)
  const www = path.join(state.dir, 'www')
  const stage = path.join(state.dir, 'stage')
  fs.mkdirSync(stage)
  for (const t of opts.targets) fs.copyFileSync(`/usr/bin/qemu-${t}-static`, path.join(stage, `qemu-${t}`))
  // gzip's default level, as tonistiigi/binfmt releases are packed
  const archive = tonistiigiArchive(www, stage, opts.targets, QEMU_VERSION, 'gzip')
  fs.rmSync(stage, { recursive: true, force: true })
  const archiveBytes = fs.statSync(archive).size
  checkInterrupted(state)
  const server = (state.server = await startServer(www))
  const urlTemplate = `${server.url}/releases/download/deploy%2Fv{version}/qemu_v{qemu}_linux-{host}.tar.gz`
  const archiveUrl = `${server.url}/${tonistiigiUrlPath(QEMU_VERSION)}`
  progress(`serving ${(archiveBytes / 1048576).toFixed(1)} MiB at ${urlTemplate}`)

  const builderSkipped = opts.builder === 'off' ? 'off' : builderAvailable()
  if (builderSkipped && opts.builder === 'on') fail(`--builder on: ${builderSkipped}`)
  if (builderSkipped && opts.builderOnly) fail(`--builder-only: ${builderSkipped}`)
  if (builderSkipped && opts.builder === 'auto') progress(`skipping the builder scenario: ${builderSkipped}`)

  const comparisons: Comparison[] = []
  const groups: Group[] = []
  if (!opts.builderOnly) for (const s of scenarios) comparisons.push(await runColdComparison(state, s, opts, urlTemplate, archiveUrl))

  for (const s of opts.builderOnly ? [] : scenarios) {
    const runs = await runScenario(state, s, opts, urlTemplate, server)
    const cold = runs.filter(r => r.kind === 'cold')
    const warm = runs.filter(r => r.kind === 'warm')
    groups.push({ scenario: s.name, platforms: s.platforms, kind: 'cold', stats: stats(cold), runs: cold })
    groups.push({ scenario: s.name, platforms: s.platforms, kind: 'warm', stats: stats(warm), runs: warm })
    if (warm.some(r => r.cacheHit !== 'true')) progress(`warning: a warm ${s.name} run was not a cache hit`)
    if (warm.some(r => r.entries.added || r.entries.replaced)) progress(`warning: a warm ${s.name} run registered entries instead of keeping them`)
  }
  const builder = builderSkipped ? undefined : await runBuilderComparison(state, opts, scenarios[1], urlTemplate)
  const targets = evaluateTargets(groups, comparisons)
  const floor = warmFloor(groups)
  if (builder) {
    targets.push({
      name: `cold ${builder.platforms} with the default builder <= ${builder.limit}x the slower of buildx: false and a plain create --bootstrap`,
      scenario: 'builder',
      kind: 'cold',
      metric: 'ratio',
      value: builder.ratio,
      limit: builder.limit,
      met: builder.ratio <= builder.limit,
    })
  }
  const removed = removeOurEntries(state)

  const cpus = os.cpus()
  const info = {
    node: versionOf(ACTION_NODE, ['--version']),
    script: opts.script ?? actionScript('main'),
    kernel: os.release(),
    cpus: cpus.length,
    cpu: cpus[0]?.model,
    loadAverage: os.loadavg().map(x => Math.round(x * 100) / 100),
    qemuVersion: QEMU_VERSION,
    qemuUserStatic: versionOf('dpkg-query', ['-W', '-f=${Version}', 'qemu-user-static']),
    targets: opts.targets,
    archiveBytes,
    runs: opts.runs,
    scenarios,
  }
  if (opts.json) {
    process.stdout.write(`${JSON.stringify({ info, results: groups, comparisons, builder, targets, floor, removedEntries: removed }, null, 2)}
`)
    return
  }
  const out = [
    '',
    `setup-qemu-binfmt bench: ${info.script} under node ${info.node}, kernel ${info.kernel}, ${info.cpus} x ${info.cpu}, load average ${info.loadAverage.join(' ')}`,
    `archive: ${opts.targets.length} emulators (${opts.targets.join(', ')}), ${(archiveBytes / 1048576).toFixed(1)} MiB, qemu-user-static ${info.qemuUserStatic}`,
    `scenarios: ${scenarios.map(s => `${s.name} (platforms=${s.platforms})`).join(', ')}; buildx=false cache=false; ${opts.runs} warm runs`,
    '',
    table(groups),
    '',
    `cold runs against curl | tar xz of the same archive (median of ${opts.cold}, alternating):`,
    '| scenario | action cold (ms) | curl \\| tar xz (ms) | ratio | target |',
    '|---|---|---|---|---|',
    ...comparisons.map(c => `| ${c.scenario} (${c.platforms}) | ${c.action.toFixed(0)} | ${c.baseline.toFixed(0)} | ${c.ratio.toFixed(2)}x | <= ${c.limit}x |`),
    '',
    ...(builder
      ? [
          `builder: cold platforms=${builder.platforms}, default builder with driver-opts image=${builder.image} (pulled each time), median of ${builder.runs.length}, alternating:`,
          '| action with builder (ms) | (a) buildx: false (ms) | (b) plain create --bootstrap (ms) | ratio to the slower | target |',
          '|---|---|---|---|---|',
          `| ${builder.action.toFixed(0)} | ${builder.noBuilder.toFixed(0)} | ${builder.plainCreate.toFixed(0)} | ${builder.ratio.toFixed(2)}x | <= ${builder.limit}x |`,
          '',
        ]
      : [`builder scenario skipped: ${builderSkipped}`, '']),
    'targets:',
    ...targets.map(
      t => `  ${t.met ? 'met    ' : 'NOT met'}  ${t.name}: ${t.metric === 'ratio' ? `${t.value.toFixed(2)}x` : `median ${t.value.toFixed(1)} ms`}`,
    ),
    ...(floor
      ? [
          '',
          `warm all floor: node -e 0 ${floor.nodeZero.toFixed(1)} ms + its test programs alone ${floor.batch.toFixed(1)} ms = ` +
            `${floor.floor.toFixed(1)} ms (${floor.ratio.toFixed(2)}x node -e 0); best warm all ${floor.best.toFixed(1)} ms (${floor.bestRatio.toFixed(2)}x)`,
        ]
      : []),
    '',
    `binfmt entries removed at the end: ${removed.join(', ') || 'none'}`,
  ]
  process.stdout.write(`${out.join('\n')}\n`)
}

/** Idempotent and synchronous, so it can run from 'exit' too. */
function cleanup(state: State, keepCache: boolean): void {
  if (state.cleaned) return
  state.cleaned = true
  if (state.builders.length) {
    progress(`removing builders ${state.builders.join(', ')}`)
    removeBuilders(state)
  }
  restoreImage(state)
  if (state.dirs.length) {
    const removed = removeOurEntries(state)
    if (removed.length) progress(`removed binfmt entries ${removed.join(', ')}`)
    const left = entryNames().filter(n => !state.before.has(n) && state.mayCreate.has(n))
    if (left.length) progress(`new entries not removed (not created by the bench): ${left.join(', ')}`)
  }
  // The server dies with the process; its sockets must not keep the process alive.
  void state.server?.close()
  if (state.dir) {
    if (keepCache) progress(`kept ${state.dir}`)
    else fs.rmSync(state.dir, { recursive: true, force: true })
  }
}

function start(): void {
  const state: State = { before: new Set(), mayCreate: new Set(), dirs: [], cleaned: false, builders: [] }
  let opts: Options
  try {
    opts = parseArgs(process.argv.slice(2))
  } catch (e) {
    process.stderr.write(`bench: ${(e as Error).message}\n`)
    process.exit(2)
  }
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.on(sig, () => {
      if (state.interrupted) return
      state.interrupted = sig
      progress(`${sig}: stopping; cleaning up after the current run`)
      // Wait for the action to exit before cleaning up, so nothing gets registered after the cleanup.
      // Between runs the main loop notices the flag at its next check.
      const child = state.child
      if (child && child.exitCode === null && child.signalCode === null) child.kill('SIGTERM')
    })
  }
  process.on('exit', () => cleanup(state, opts.keepCache))
  main(state, opts).then(
    () => {
      cleanup(state, opts.keepCache)
      process.exit(state.interrupted ? 130 : 0)
    },
    (e: unknown) => {
      process.stderr.write(`bench: ${e instanceof BenchError ? e.message : e instanceof Error && e.stack ? e.stack : String(e)}\n`)
      cleanup(state, opts.keepCache)
      process.exit(state.interrupted ? 130 : 1)
    },
  )
}

start()
