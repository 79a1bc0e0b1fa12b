import { spawnSync } from 'child_process'
import { createHash } from 'crypto'
import * as fs from 'fs'
import * as os from 'os'
import * as path from 'path'
import { BINFMT_ROOT, BinfmtEntry, BinfmtReader, parseEntry, registerLine } from './binfmt'
import { ActionError, errorMessage } from './errors'
import { DirectAccess, KernelOp, KernelWriter } from './kernel'
import { ProcessRunner, RunOptions, RunResult, lastLine } from './process'
import { Registration } from './register'
import { PROBE_ARGS } from './probe'
import { ProbeResult, verifyRegistrations } from './verify'

interface DockerLog {
  info(m: string): void
  debug(m: string): void
}

/** Where the emulators go inside the registering container: `<dir>/<content digest>/<file name>`. */
export const CONTAINER_DIR = '/setup-qemu-binfmt'
const PROBE_DIR = '/setup-qemu-binfmt-probes'
/** Every container this action creates carries it, so that one left behind can be recognised. */
export const CONTAINER_LABEL = 'setup-qemu-binfmt'
/** The inode number of the initial user namespace (PROC_USER_INIT_INO), as readlink shows it. */
export const INIT_USER_NS = 'user:[4026531837]'

const ANSWER_MS = 20_000
const PULL_MS = 300_000
const CONTAINER_MS = 120_000

/**
 * Runs in the privileged container with the ops as arguments (`r:<name>` remove,
 * `d:<name>` disable, `a:<register line>` register). Mounts binfmt_misc when the container's /proc has
 * none, applies the ops in order and stops at the first failure, naming it on
 * stderr. Whatever happened, it then prints the table as the kernel shows it.
 * Writes go through dd: one write() per line as the kernel wants, and unlike
 * the shell's printf, dd says why the kernel refused one.
 */
export const REGISTER_SCRIPT = `
b=${BINFMT_ROOT}
dump() {
  echo "@@userns $(readlink /proc/self/ns/user 2>/dev/null)"
  echo "@@boot_id $(cat /proc/sys/kernel/random/boot_id 2>/dev/null)"
  if [ -e "$b/register" ]; then
    echo "@@mounted"
    for f in "$b"/*; do
      n=\${f##*/}
      case $n in register|status|'*') continue ;; esac
      echo "@@entry $n"
      cat "$f"
    done
  fi
  echo "@@end"
}
trap dump EXIT
fail() { echo "$*" >&2; exit 1; }
put() {
  e=$(printf %s "$1" | dd of="$2" bs=4096 conv=notrunc 2>&1) && return 0
  e=$(echo "$e" | head -n 1)
  fail "$3 failed: \${e##*: }"
}
if [ ! -e "$b/register" ]; then
  e=$(mount -t binfmt_misc binfmt_misc "$b" 2>&1) || fail "mounting binfmt_misc failed: $e"
fi
for op in "$@"; do
  case $op in
    r:*) n=\${op#r:}; if [ -e "$b/$n" ]; then put -1 "$b/$n" "removing $n"; fi ;;
    d:*) n=\${op#d:}; if [ -e "$b/$n" ]; then put 0 "$b/$n" "disabling $n"; fi ;;
    a:*) l=\${op#a:}; n=\${l#:}; put "$l" "$b/register" "registering \${n%%:*}" ;;
    *) fail "unknown operation $op" ;;
  esac
done
`

/** Runs each test program named by the arguments (with PROBE_ARGS) and prints `@@probe <name> <status>` and its first stderr line. */
export const PROBE_SCRIPT = `
cd ${PROBE_DIR} || exit 1
for p in "$@"; do
  ./"$p" ${PROBE_ARGS.join(' ')} >/dev/null 2>"$p.err"
  echo "@@probe $p $?"
  head -n 1 "$p.err"
done
`

/** binfmt_misc as a container showed it. */
export interface ContainerTable {
  readonly userns: string
  readonly bootId: string
  readonly mounted: boolean
  readonly entries: readonly BinfmtEntry[]
}

/** Reads the dump REGISTER_SCRIPT prints; undefined when it is missing or cut short. */
export function parseTable(stdout: string): ContainerTable | undefined {
  let userns = ''
  let bootId = ''
  let mounted = false
  let complete = false
  const entries: { name: string; lines: string[] }[] = []
  for (const line of stdout.split('\n')) {
    if (line.startsWith('@@userns ')) userns = line.slice('@@userns '.length).trim()
    else if (line.startsWith('@@boot_id ')) bootId = line.slice('@@boot_id '.length).trim()
    else if (line === '@@mounted') mounted = true
    else if (line.startsWith('@@entry ')) entries.push({ name: line.slice('@@entry '.length), lines: [] })
    else if (line === '@@end') complete = true
    else if (entries.length) entries[entries.length - 1].lines.push(line)
  }
  if (!complete) return undefined
  return { userns, bootId, mounted, entries: entries.map(e => parseEntry(e.name, e.lines.join('\n'))) }
}

/** The kernel's table as the last container of the daemon saw it: the reader for runners that cannot see it themselves. */
class ContainerView extends BinfmtReader {
  private table = new Map<string, BinfmtEntry>()
  private isMounted = false

  constructor() {
    super(`${BINFMT_ROOT} (as a container sees it)`)
  }

  update(t: ContainerTable): void {
    this.isMounted = t.mounted
    this.table = new Map(t.entries.map(e => [e.name, e]))
  }

  mounted(): boolean {
    return this.isMounted
  }

  names(): string[] {
    return [...this.table.keys()].sort()
  }

  read(name: string): BinfmtEntry | undefined {
    return this.table.get(name)
  }
}

/** A file for `docker cp -`: path inside the container (relative to /), content, mode. */
interface TarFile {
  readonly name: string
  readonly data: Buffer
  readonly mode: number
}

function tarHeader(name: string, size: number, mode: number, type: '0' | '5'): Buffer {
  const h = Buffer.alloc(512)
  let prefix = ''
  let base = name
  if (Buffer.byteLength(name) > 100) {
    // ustar: split at a '/' into prefix (<= 155) and name (<= 100).
    const cut = name.lastIndexOf('/', name.length - 2)
    prefix = name.slice(0, cut)
    base = name.slice(cut + 1)
    if (cut < 0 || Buffer.byteLength(prefix) > 155 || Buffer.byteLength(base) > 100) throw new Error(`path too long for a tar header: ${name}`)
  }
  const octal = (offset: number, length: number, n: number): void => {
    h.write(`${n.toString(8).padStart(length - 1, '0')}\0`, offset, length, 'ascii')
  }
  h.write(base, 0, 100, 'utf8')
  octal(100, 8, mode)
  octal(108, 8, 0)
  octal(116, 8, 0)
  octal(124, 12, size)
  octal(136, 12, Math.floor(Date.now() / 1000))
  h.fill(' ', 148, 156)
  h.write(type, 156, 1, 'ascii')
  h.write('ustar\0' + '00', 257, 8, 'ascii')
  h.write(prefix, 345, 155, 'utf8')
  let sum = 0
  for (const byte of h) sum += byte
  h.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 8, 'ascii')
  return h
}

/** A ustar archive of `files` (with their parent directories), what `docker cp -` reads from stdin. */
export function tarArchive(files: readonly TarFile[]): Buffer {
  const parts: Buffer[] = []
  const dirs = new Set<string>()
  for (const f of files) {
    const segments = f.name.split('/')
    for (let i = 1; i < segments.length; i++) {
      const dir = `${segments.slice(0, i).join('/')}/`
      if (dirs.has(dir)) continue
      dirs.add(dir)
      parts.push(tarHeader(dir, 0, 0o755, '5'))
    }
    parts.push(tarHeader(f.name, f.data.length, f.mode, '0'), f.data, Buffer.alloc((512 - (f.data.length % 512)) % 512))
  }
  parts.push(Buffer.alloc(1024))
  return Buffer.concat(parts)
}

/** The docker CLI through the ProcessRunner; each call logged at debug level. */
class Docker {
  constructor(
    readonly runner: ProcessRunner,
    readonly log: DockerLog,
    /** podman takes the same commands */
    readonly cli: 'docker' | 'podman' = 'docker',
  ) {}

  async run(args: readonly string[], options: RunOptions): Promise<RunResult> {
    this.log.debug(`${this.cli} ${args.map(a => (a.includes('\n') ? '<script>' : /^[\w./:=@,+-]+$/.test(a) ? a : JSON.stringify(a))).join(' ')}`)
    try {
      return await this.runner.run(this.cli, args, options)
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw new Error(`not installed (no ${this.cli} command on PATH)`)
      throw e
    }
  }
}

/** How a docker command or container failed, in words. */
function failure(r: RunResult, ms: number): string {
  if (r.signal) return `was stopped after ${ms / 1000} s (${r.signal})`
  const why = lastLine(r.stderr)
  return `exited with status ${r.code}${why ? `: ${why}` : ' and no message'}`
}

/**
 * Removes the container when the action is cancelled while it exists (the runner
 * sends SIGINT, then SIGTERM), then lets the signal take its course.
 */
function removeOnSignal(id: string): () => void {
  const signals: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP']
  const off = (): void => {
    for (const s of signals) process.off(s, handler)
  }
  function handler(signal: NodeJS.Signals): void {
    // Synchronous: nothing else runs before the process goes.
    spawnSync('docker', ['rm', '-f', id], { stdio: 'ignore', timeout: ANSWER_MS })
    off()
    process.kill(process.pid, signal)
  }
  for (const s of signals) process.on(s, handler)
  return off
}

/**
 * One container: `docker create` (auto-removed), `docker cp -` of `archive`,
 * `docker start -a`, and always `docker rm -f`. Nothing is bind-mounted, so the
 * daemon need not share the runner's file system.
 */
async function runContainer(
  docker: Docker,
  createArgs: readonly string[],
  archive: Buffer | undefined,
  /** false for a container that changes binfmt_misc: killed halfway (say, a rollback on the runner's second signal) it would leave unverified entries */
  removeOnCancel = true,
): Promise<RunResult> {
  const created = await docker.run(['create', '--rm', '--label', CONTAINER_LABEL, '--network', 'none', ...createArgs], {
    timeoutMs: ANSWER_MS,
  })
  if (created.code !== 0) throw new Error(`docker create ${failure(created, ANSWER_MS)}`)
  const id = lastLine(created.stdout)
  const off = removeOnCancel ? removeOnSignal(id) : () => undefined
  try {
    if (archive) {
      const cp = await docker.run(['cp', '-', `${id}:/`], { input: archive, timeoutMs: CONTAINER_MS })
      if (cp.code !== 0) throw new Error(`docker cp into the container ${failure(cp, CONTAINER_MS)}`)
    }
    return await docker.run(['start', '-a', id], { timeoutMs: CONTAINER_MS })
  } finally {
    // Already gone when it ran (--rm); this is for the other ways out.
    await docker.run(['rm', '-f', id], { timeoutMs: ANSWER_MS }).catch(() => undefined)
    off()
  }
}

/** The exit status of a program killed by a signal, as a shell reports it (128 + n), back to the signal's name. */
function signalOf(status: number): NodeJS.Signals | undefined {
  if (status <= 128) return undefined
  const found = Object.entries(os.constants.signals).find(([, n]) => n === status - 128)
  return found?.[0] as NodeJS.Signals | undefined
}

/**
 * Collects the test programs verifyRegistrations asks to run, then runs them all
 * in one container. A program asked for after the batch left runs in a batch of its own.
 */
class ProbeBatch implements ProcessRunner {
  private queued: { file: string; resolve: (r: RunResult) => void; reject: (e: Error) => void }[] = []
  private flushed = false

  constructor(private readonly exec: (files: string[]) => Promise<Map<string, RunResult | Error>>) {}

  run(command: string): Promise<RunResult> {
    const result = new Promise<RunResult>((resolve, reject) => this.queued.push({ file: command, resolve, reject }))
    if (this.flushed) void this.drain()
    return result
  }

  async flush(): Promise<void> {
    await new Promise(resolve => setImmediate(resolve))
    this.flushed = true
    await this.drain()
  }

  private async drain(): Promise<void> {
    const calls = this.queued.splice(0)
    if (!calls.length) return
    try {
      const results = await this.exec(calls.map(c => c.file))
      for (const c of calls) {
        const r = results.get(c.file) ?? new Error('the verification container did not run it')
        if (r instanceof Error) c.reject(r)
        else c.resolve(r)
      }
    } catch (e) {
      for (const c of calls) c.reject(e instanceof Error ? e : new Error(String(e)))
    }
  }
}

/** Reads what PROBE_SCRIPT printed into what running each file on the runner would have given. */
export function parseProbes(stdout: string, files: readonly string[]): Map<string, RunResult | Error> {
  const byName = new Map(files.map(f => [path.basename(f), f]))
  const out = new Map<string, RunResult | Error>()
  const lines = stdout.split('\n')
  for (let i = 0; i < lines.length; i++) {
    const m = /^@@probe (\S+) (\d+)$/.exec(lines[i])
    const file = m && byName.get(m[1])
    if (!m || !file) continue
    const status = Number(m[2])
    const stderr = lines[i + 1] !== undefined && !lines[i + 1].startsWith('@@probe ') ? lines[++i] : ''
    // A file the kernel cannot execute is run by the shell as a script (POSIX), which fails on its binary content.
    if (status !== 0 && /syntax error|cannot execute binary|exec format error/i.test(stderr)) {
      out.set(file, Object.assign(new Error(`exec format error (${stderr})`), { code: 'ENOEXEC' }))
      continue
    }
    const signal = signalOf(status)
    out.set(file, { code: signal ? null : status, signal: signal ?? null, stdout: '', stderr })
  }
  return out
}

/**
 * The Docker path: registers through one privileged container per batch of ops,
 * with the emulators this action downloaded and checked copied into it.
 */
export class DockerWriter implements KernelWriter {
  readonly method = 'docker'
  readonly how: string
  /** binfmt_misc as the last container saw it */
  readonly view = new ContainerView()
  /** why this runner does not see the table the daemon's containers change; undefined when it does */
  hidden?: string
  /** container path -> emulator on the runner */
  private readonly emulators = new Map<string, string>()

  constructor(
    private readonly docker: Docker,
    readonly image: string,
  ) {
    this.how = `through a privileged container (${image})`
  }

  /** Named by content: the same emulator gets the same path, so a second identical run keeps its entries. */
  interpreterFor(emulatorPath: string): string {
    const digest = createHash('sha256').update(fs.readFileSync(emulatorPath)).digest('hex').slice(0, 16)
    const inside = `${CONTAINER_DIR}/${digest}/${path.basename(emulatorPath)}`
    this.emulators.set(inside, emulatorPath)
    return inside
  }

  async apply(ops: readonly KernelOp[]): Promise<void> {
    if (ops.length) await this.run(ops)
  }

  /** Runs the privileged container for `ops` (none: only looks) and returns the table it left. */
  async run(ops: readonly KernelOp[]): Promise<ContainerTable> {
    const args = ops.map(op => (op.kind === 'register' ? `a:${registerLine(op.spec)}` : `${op.kind === 'remove' ? 'r' : 'd'}:${op.name}`))
    const files = new Map<string, TarFile>()
    for (const op of ops) {
      if (op.kind !== 'register' || files.has(op.spec.interpreter)) continue
      // Ours by digest; an entry put back on rollback names a file of the runner, copied to the same path if it is there.
      const source = this.emulators.get(op.spec.interpreter) ?? op.spec.interpreter
      if (!fs.existsSync(source) || !fs.statSync(source).isFile()) continue
      files.set(op.spec.interpreter, { name: op.spec.interpreter.replace(/^\/+/, ''), data: fs.readFileSync(source), mode: 0o755 })
    }
    const r = await runContainer(
      this.docker,
      ['--privileged', this.image, 'sh', '-c', REGISTER_SCRIPT, 'sh', ...args],
      files.size ? tarArchive([...files.values()]) : undefined,
      // Kernel writes are short and always finish, so that a cancelled run's rollback completes.
      ops.length === 0,
    )
    const table = parseTable(r.stdout)
    if (table) this.view.update(table)
    if (r.code !== 0 || r.signal) throw new ActionError(`the privileged container (${this.image}) ${failure(r, CONTAINER_MS)}`)
    if (!table) throw new ActionError(`the privileged container (${this.image}) did not print binfmt_misc's entries; does its sh work?`)
    return table
  }

  /** Runs test programs in one ordinary container of the daemon: what running them on the runner would give. */
  async runProbes(files: readonly string[]): Promise<Map<string, RunResult | Error>> {
    const archive = tarArchive(files.map(f => ({ name: `${PROBE_DIR.slice(1)}/${path.basename(f)}`, data: fs.readFileSync(f), mode: 0o755 })))
    const r = await runContainer(this.docker, [this.image, 'sh', '-c', PROBE_SCRIPT, 'sh', ...files.map(f => path.basename(f))], archive)
    if (r.code !== 0 || r.signal) throw new ActionError(`the verification container (${this.image}) ${failure(r, CONTAINER_MS)}`)
    return parseProbes(r.stdout, files)
  }
}

/**
 * verifyRegistrations for a runner that cannot see the table the daemon's
 * containers change (writer.hidden): the entries are checked as the registering
 * container left them, the test programs run in one container of the same daemon.
 */
export function verifyInContainer(writer: DockerWriter, registrations: readonly Registration[], dir: string): Promise<ProbeResult[]> {
  return probeInContainer(writer, registrations, writer.view, dir)
}

async function probeInContainer(writer: DockerWriter, registrations: readonly Registration[], reader: BinfmtReader, dir: string): Promise<ProbeResult[]> {
  const batch = new ProbeBatch(files => writer.runProbes(files))
  const results = verifyRegistrations(registrations, reader, dir, batch)
  await batch.flush()
  return results
}

/**
 * Runs the test programs in an ordinary container of the daemon `runner`
 * reaches, with `image` (pulled when missing): the proof for a rootless engine
 * whose user namespace got the entries (`reader` shows that namespace's table).
 */
export async function verifyInDaemon(
  runner: ProcessRunner,
  cli: 'docker' | 'podman',
  image: string,
  log: DockerLog,
  registrations: readonly Registration[],
  reader: BinfmtReader,
  dir: string,
): Promise<ProbeResult[]> {
  const docker = new Docker(runner, log, cli)
  await ensureImage(docker, image, log)
  return probeInContainer(new DockerWriter(docker, image), registrations, reader, dir)
}

/** What this runner's own process sees of the kernel. */
export interface RunnerNamespace {
  readonly bootId?: string
  readonly userns?: string
  readonly binfmtMounted: boolean
}

function readOr(read: () => string): string | undefined {
  try {
    return read().trim()
  } catch {
    return undefined
  }
}

function runnerNamespace(): RunnerNamespace {
  return {
    bootId: readOr(() => fs.readFileSync('/proc/sys/kernel/random/boot_id', 'utf8')),
    userns: readOr(() => fs.readlinkSync('/proc/self/ns/user')),
    binfmtMounted: fs.existsSync(path.join(BINFMT_ROOT, 'register')),
  }
}

/** Why the runner does not see the table `table` came from, or undefined when it does. */
export function hiddenFromRunner(table: ContainerTable, self: RunnerNamespace): string | undefined {
  if (table.bootId && self.bootId && table.bootId !== self.bootId) {
    return 'the Docker daemon runs on another kernel than this runner (a remote DOCKER_HOST or a VM)'
  }
  if (!self.binfmtMounted) return `binfmt_misc is not mounted in this runner's namespace (${BINFMT_ROOT} is empty)`
  if (self.userns && self.userns !== INIT_USER_NS) {
    return `this runner runs in a user namespace (${self.userns}), which may have a binfmt_misc of its own`
  }
  return undefined
}

/** Go's names for Node's architectures, as `docker version` prints the daemon's. */
const GO_ARCH: Readonly<Record<string, string>> = { x64: 'amd64', arm64: 'arm64', ia32: '386', arm: 'arm', ppc64: 'ppc64le', s390x: 's390x', riscv64: 'riscv64' }

/** The daemon answers, runs Linux containers on this runner's architecture; else throws why not. */
async function checkDaemon(docker: Docker, log: DockerLog, nodeArch: string): Promise<void> {
  const r = await docker.run(['version', '--format', '{{.Server.Os}}/{{.Server.Arch}} {{.Server.Version}}'], { timeoutMs: ANSWER_MS })
  if (r.signal) throw new Error(`the daemon did not answer within ${ANSWER_MS / 1000} s`)
  if (r.code !== 0) {
    const denied = /permission denied while trying to connect to the Docker daemon socket at (\S+?):\s/i.exec(r.stderr)
    if (denied) throw new Error(`permission denied on the daemon's socket ${denied[1]} (is the user in the docker group?)`)
    const down = /Cannot connect to the Docker daemon at (\S+?)\.?\s+Is the docker daemon running/i.exec(r.stderr)
    if (down) throw new Error(`cannot connect to the daemon at ${down[1]} (is it running?)`)
    throw new Error(`docker version ${failure(r, ANSWER_MS)}`)
  }
  const [platform, version] = r.stdout.trim().split(' ')
  const [daemonOs, daemonArch] = platform.split('/')
  if (daemonOs !== 'linux') throw new Error(`the daemon runs ${daemonOs} containers, not Linux ones`)
  const mine = GO_ARCH[nodeArch]
  if (mine && daemonArch !== mine) throw new Error(`the daemon runs on ${daemonArch}, this runner on ${mine}: its emulators would not run there`)
  log.info(`Docker daemon ${version} (${platform})`)
}

/** The image is on the daemon, pulled when it is not; else throws why not. */
async function ensureImage(docker: Docker, image: string, log: DockerLog): Promise<void> {
  const have = await docker.run(['image', 'inspect', '--format', '{{.Id}}', image], { timeoutMs: ANSWER_MS })
  if (have.code === 0) return
  if (!/no such image/i.test(have.stderr)) throw new Error(`docker image inspect ${image} ${failure(have, ANSWER_MS)}`)
  log.info(`Pulling ${image}`)
  const pull = await docker.run(['pull', image], { timeoutMs: PULL_MS })
  if (pull.code !== 0 || pull.signal) {
    throw new Error(
      `image ${image} is not on the daemon and pulling it failed (${pull.signal ? `no answer within ${PULL_MS / 1000} s` : lastLine(pull.stderr) || `exit ${pull.code}`}); ` +
        `set docker-image to an image the daemon has or can pull`,
    )
  }
}

/**
 * The fallback path: a KernelWriter that registers through `docker create --privileged`
 * with `image`, or the reason it cannot. Tries it for real: one privileged
 * container mounts binfmt_misc and reads the table before anything is planned.
 */
export async function dockerAccess(
  runner: ProcessRunner,
  image: string,
  log: DockerLog,
  self: RunnerNamespace = runnerNamespace(),
  nodeArch: string = process.arch,
): Promise<DirectAccess> {
  const docker = new Docker(runner, log)
  try {
    await checkDaemon(docker, log, nodeArch)
    await ensureImage(docker, image, log)
    const writer = new DockerWriter(docker, image)
    let table: ContainerTable
    try {
      table = await writer.run([])
    } catch (e) {
      throw new Error(`a privileged container cannot use binfmt_misc: ${errorMessage(e)}`)
    }
    if (table.userns && table.userns !== INIT_USER_NS) {
      throw new Error(
        `the daemon's containers run in a user namespace (${table.userns}; rootless Docker or userns-remap), ` +
          `where binfmt_misc entries do not reach the host and go with the container`,
      )
    }
    writer.hidden = hiddenFromRunner(table, self)
    if (writer.hidden) {
      log.info(`This runner cannot see the entries the daemon's containers register: ${writer.hidden}. They are read and verified in containers of the daemon instead.`)
    }
    return { writer }
  } catch (e) {
    return { reason: `docker: ${errorMessage(e)}` }
  }
}
