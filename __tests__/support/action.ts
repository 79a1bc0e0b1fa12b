// Runs the bundled action (dist/index.js) as its own process, with the
// environment a GitHub runner gives a JavaScript action, and reads back what it
// wrote through the runner's files (outputs, state, step summary, env, path).
import { ChildProcess, spawn } from 'child_process'
import * as fs from 'fs'
import * as os from 'os'
import * as path from 'path'
import * as yaml from 'js-yaml'

/** The repository: the nearest directory above this file that holds action.yml (the bench runs this file compiled into .tmp/). */
export const REPO_ROOT = repoRoot(__dirname)

function repoRoot(from: string): string {
  for (let d = from; d !== path.dirname(d); d = path.dirname(d)) if (fs.existsSync(path.join(d, 'action.yml'))) return d
  return path.resolve(from, '..', '..')
}

/**
 * Where the bundle is run from: the world-readable copy of dist/ and action.yml a jest run stages
 * (support/bundle.js; the tests run it as other users too, who may not enter the clone), else the clone.
 */
export const BUNDLE_ROOT = process.env.SETUP_QEMU_BINFMT_TEST_BUNDLE || REPO_ROOT

/** The command as the tests run it. */
export const CLI = path.join(BUNDLE_ROOT, 'dist', 'cli.js')

/**
 * The Node the bundle runs under: Node 24, as action.yml's `runs.using: node24` says
 * (installed by .ci/node.sh from the npm registry's node-linux-<arch> package).
 * ACTION_NODE overrides it; jest itself may run on the machine's older Node.
 */
export const ACTION_NODE =
  process.env.ACTION_NODE || `/opt/setup-qemu-binfmt-test/node24/node_modules/node-linux-${process.arch === 'arm64' ? 'arm64' : 'x64'}/bin/node`

export interface RunActionOptions {
  /** run as this unix user (via runuser); the jest process must be root */
  user?: string
  /** extra environment, applied last (can override anything below) */
  env?: Record<string, string>
  /** RUNNER_TOOL_CACHE; default a fresh dir removed after the run. Pass one to keep/inspect it across runs. */
  toolCache?: string
  /** RUNNER_TEMP; default a fresh dir removed after the run */
  temp?: string
  phase?: 'main' | 'post'
  /** for post: the GITHUB_STATE file content main wrote (RunActionResult.stateFile), or already parsed state */
  state?: string | Record<string, string>
  /** set RUNNER_DEBUG=1 (core.debug lines appear on stdout) */
  debug?: boolean
  /** kill the action after this long (default 5 minutes) */
  timeoutMs?: number
  /** the signal timeoutMs sends (default SIGTERM); SIGKILL to test a run that dies halfway */
  killSignal?: NodeJS.Signals
  /** run this script instead of the one action.yml names (absolute or relative to the repo root) */
  script?: string
  /** keep the per-run directory (workspace, runner files, default tool cache/temp); default false */
  keep?: boolean
  /** called with the action's process as soon as it is started (e.g. to signal it) */
  onSpawn?: (child: ChildProcess) => void
}

export interface Annotation {
  kind: 'error' | 'warning' | 'notice'
  message: string
}

export interface RunActionResult {
  /** exit status; -1 when killed by a signal (e.g. timeout) */
  code: number
  signal: NodeJS.Signals | null
  stdout: string
  stderr: string
  /** parsed GITHUB_OUTPUT */
  outputs: Record<string, string>
  /** parsed GITHUB_STATE */
  state: Record<string, string>
  /** raw GITHUB_STATE content: pass as `state` to the post phase */
  stateFile: string
  /** GITHUB_STEP_SUMMARY content */
  summary: string
  /** parsed GITHUB_ENV (core.exportVariable) */
  exportedEnv: Record<string, string>
  /** GITHUB_PATH lines (core.addPath) */
  addedPaths: string[]
  /** ::error/::warning/::notice workflow commands found on stdout */
  annotations: Annotation[]
  /** wall-clock time of the action's process, from spawn to exit (what `npm run bench` reports) */
  wallMs: number
  /** the per-run directory (gone unless `keep`) */
  dir: string
  toolCache: string
  temp: string
}

// One reader of the runner's files for the scripts and the tests.
import { inputEnvName, parseKeyValueFile } from '../../scripts/action-env'
export { inputEnvName, parseKeyValueFile }

function unescapeCommand(s: string): string {
  return s.replace(/%0D/g, '\r').replace(/%0A/g, '\n').replace(/%3A/g, ':').replace(/%2C/g, ',').replace(/%25/g, '%')
}

export function parseAnnotations(stdout: string): Annotation[] {
  const found: Annotation[] = []
  for (const line of stdout.split('\n')) {
    const m = /^::(error|warning|notice)(?: [^:]*)?::(.*)$/.exec(line.replace(/\r$/, ''))
    if (m) found.push({ kind: m[1] as Annotation['kind'], message: unescapeCommand(m[2]) })
  }
  return found
}

/** The script action.yml names for a phase (runs.main / runs.post), else dist/index.js. */
export function actionScript(phase: 'main' | 'post'): string {
  let script = 'dist/index.js'
  try {
    const yml = fs.readFileSync(path.join(REPO_ROOT, 'action.yml'), 'utf8')
    const m = new RegExp(`^\\s+${phase}:\\s*['"]?([^'"\\s#]+)`, 'm').exec(yml)
    if (m) script = m[1]
  } catch {
    // no action.yml yet
  }
  return path.join(BUNDLE_ROOT, script)
}

/** Every input action.yml declares, with its default ('' when it has none): what a runner passes when a step gives no value. */
export function actionInputDefaults(): Record<string, string> {
  const doc = yaml.load(fs.readFileSync(path.join(REPO_ROOT, 'action.yml'), 'utf8')) as {
    inputs?: Record<string, { default?: unknown } | null>
  }
  const defaults: Record<string, string> = {}
  for (const [name, spec] of Object.entries(doc.inputs ?? {})) defaults[name] = spec?.default === undefined ? '' : String(spec.default)
  return defaults
}

function userIds(user: string): { uid: number; gid: number; home: string } {
  const line = fs
    .readFileSync('/etc/passwd', 'utf8')
    .split('\n')
    .find(l => l.split(':')[0] === user)
  if (!line) throw new Error(`no such user '${user}'; run .ci/prepare.sh`)
  const f = line.split(':')
  return { uid: Number(f[2]), gid: Number(f[3]), home: f[5] }
}

function chownTree(p: string, uid: number, gid: number): void {
  fs.chownSync(p, uid, gid)
  if (fs.lstatSync(p).isDirectory()) {
    for (const e of fs.readdirSync(p)) chownTree(path.join(p, e), uid, gid)
  }
}

function readOr(file: string, fallback = ''): string {
  try {
    return fs.readFileSync(file, 'utf8')
  } catch {
    return fallback
  }
}

/** The files a runner gives a step to write to (GITHUB_OUTPUT, GITHUB_STATE, GITHUB_STEP_SUMMARY, GITHUB_ENV, GITHUB_PATH). */
export interface RunnerFiles {
  output: string
  state: string
  summary: string
  env: string
  path: string
}

export interface RunnerEnvOptions {
  /** the step's `with:` values; every other input gets action.yml's default (`buildx` gets 'false', see below) */
  inputs: Record<string, string>
  phase: 'main' | 'post'
  files: RunnerFiles
  workspace: string
  toolCache: string
  temp: string
  home: string
  /** the job's unix user (USER, LOGNAME); default none set */
  user?: string
  debug?: boolean
  /** for post: main's GITHUB_STATE content, or already parsed state (given to post as STATE_<name>) */
  state?: string | Record<string, string>
  /** the runner's machine as Node names it (process.arch): RUNNER_ARCH; default this machine's */
  arch?: string
}

/** RUNNER_ARCH for a machine Node calls `arch` (X64, ARM64, ...). */
export const runnerArch = (arch: string): string => ({ x64: 'X64', arm64: 'ARM64', ia32: 'X86', arm: 'ARM' })[arch] ?? arch.toUpperCase()

/**
 * The environment a runner gives a JavaScript action's step, and nothing else: nothing of jest's
 * (or of a CI job around it) leaks in. Paths are as the step sees them (another machine's, for a VM).
 */
export function runnerEnv(o: RunnerEnvOptions): Record<string, string> {
  const env: Record<string, string> = {
    PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
    HOME: o.home,
    LANG: 'C.UTF-8',
    CI: 'true',
    GITHUB_ACTIONS: 'true',
    GITHUB_OUTPUT: o.files.output,
    GITHUB_STATE: o.files.state,
    GITHUB_STEP_SUMMARY: o.files.summary,
    GITHUB_ENV: o.files.env,
    GITHUB_PATH: o.files.path,
    GITHUB_WORKSPACE: o.workspace,
    GITHUB_REPOSITORY: 'test/setup-qemu-binfmt',
    GITHUB_SERVER_URL: 'https://github.com',
    GITHUB_API_URL: 'https://api.github.com',
    GITHUB_RUN_ID: '1',
    GITHUB_JOB: 'test',
    GITHUB_ACTION: 'setup-qemu-binfmt',
    RUNNER_OS: 'Linux',
    RUNNER_ARCH: runnerArch(o.arch ?? process.arch),
    RUNNER_NAME: 'jest',
    RUNNER_TOOL_CACHE: o.toolCache,
    RUNNER_TEMP: o.temp,
  }
  if (o.user) Object.assign(env, { USER: o.user, LOGNAME: o.user })
  if (o.debug) env.RUNNER_DEBUG = '1'
  // Like a runner: every input action.yml declares, its default unless the test gives a value.
  // The buildx plugin is installed on the test machines and its default driver cannot pull
  // BuildKit here: a run that does not name `buildx` skips the builder (buildx.test.ts tests it).
  for (const [name, value] of Object.entries({ ...actionInputDefaults(), buildx: 'false', ...o.inputs })) env[inputEnvName(name)] = value
  if (o.phase === 'post' && o.state !== undefined) {
    // The runner hands main's saved state to the post step as STATE_<name>.
    const saved = typeof o.state === 'string' ? parseKeyValueFile(o.state) : o.state
    for (const [name, value] of Object.entries(saved)) env[`STATE_${name}`] = value
  }
  return env
}

/** Runs the action with `inputs` (INPUT_*) over action.yml's defaults; `buildx` is 'false' unless given, see below. */
export async function runAction(inputs: Record<string, string>, opts: RunActionOptions = {}): Promise<RunActionResult> {
  const phase = opts.phase ?? 'main'
  const script = opts.script ? path.resolve(REPO_ROOT, opts.script) : actionScript(phase)
  if (!fs.existsSync(script)) throw new Error(`${script} not found; run 'npm run build' first`)

  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `action-${phase}-`))
  const files: RunnerFiles = {
    output: path.join(dir, 'github_output'),
    state: path.join(dir, 'github_state'),
    summary: path.join(dir, 'step_summary'),
    env: path.join(dir, 'github_env'),
    path: path.join(dir, 'github_path'),
  }
  for (const f of Object.values(files)) fs.writeFileSync(f, '')
  const workspace = path.join(dir, 'workspace')
  const toolCache = opts.toolCache ?? path.join(dir, 'toolcache')
  const temp = opts.temp ?? path.join(dir, 'temp')
  for (const d of [workspace, toolCache, temp]) fs.mkdirSync(d, { recursive: true })

  let home = os.homedir()
  if (opts.user) {
    // Everything the runner would give the job user must belong to that user.
    const u = userIds(opts.user)
    home = u.home
    chownTree(dir, u.uid, u.gid)
    if (opts.toolCache) chownTree(toolCache, u.uid, u.gid)
    if (opts.temp) chownTree(temp, u.uid, u.gid)
  }

  const env = runnerEnv({ inputs, phase, files, workspace, toolCache, temp, home, user: opts.user, debug: opts.debug, state: opts.state })
  Object.assign(env, opts.env ?? {})

  if (!fs.existsSync(ACTION_NODE)) throw new Error(`${ACTION_NODE} not found; run .ci/node.sh (as root) to install Node 24`)
  let command = ACTION_NODE
  let args = [script]
  if (opts.user) {
    // runuser switches user without PAM session noise; env -i makes the environment exactly `env`.
    args = ['-u', opts.user, '--', '/usr/bin/env', '-i', ...Object.entries(env).map(([k, v]) => `${k}=${v}`), command, script]
    command = 'runuser'
  }

  const { code, signal, stdout, stderr, wallMs } = await new Promise<{
    code: number | null
    signal: NodeJS.Signals | null
    stdout: string
    stderr: string
    wallMs: number
  }>((resolve, reject) => {
    const start = performance.now()
    let exited: number | undefined
    const child = spawn(command, args, {
      cwd: workspace,
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
      timeout: opts.timeoutMs ?? 300000,
      killSignal: opts.killSignal,
    })
    const out: Buffer[] = []
    const err: Buffer[] = []
    child.stdout.on('data', (d: Buffer) => out.push(d))
    child.stderr.on('data', (d: Buffer) => err.push(d))
    child.on('error', reject)
    child.on('exit', () => (exited = performance.now()))
    child.on('close', (c, s) =>
      resolve({
        code: c,
        signal: s,
        stdout: Buffer.concat(out).toString(),
        stderr: Buffer.concat(err).toString(),
        wallMs: (exited ?? performance.now()) - start,
      }),
    )
    opts.onSpawn?.(child)
  })

  const stateFile = readOr(files.state)
  const result: RunActionResult = {
    code: code ?? -1,
    signal,
    stdout,
    stderr,
    outputs: parseKeyValueFile(readOr(files.output)),
    state: parseKeyValueFile(stateFile),
    stateFile,
    summary: readOr(files.summary),
    exportedEnv: parseKeyValueFile(readOr(files.env)),
    addedPaths: readOr(files.path).split('\n').filter(Boolean),
    annotations: parseAnnotations(stdout),
    wallMs,
    dir,
    toolCache,
    temp,
  }
  if (!opts.keep) fs.rmSync(dir, { recursive: true, force: true })
  return result
}
