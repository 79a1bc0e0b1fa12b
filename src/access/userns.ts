// install-mode userns: since Linux 6.7 a user namespace may mount a binfmt_misc
// of its own, whose entries apply to that namespace and the namespaces it
// creates. Rootless Docker runs its daemon and containers in one such namespace,
// which this runner's user owns: the emulators are registered there, without
// any privilege on the host, and the host's table is never touched.
import { ChildProcess, spawn } from 'child_process'
import * as fs from 'fs'
import { Duplex } from 'stream'
import * as os from 'os'
import * as path from 'path'
import { BINFMT_ROOT, BinfmtReader } from '../binfmt'
import { ActionError, errorMessage, readOr } from '../errors'
import { EngineCli } from '../docker/command'
import { DirectWriter } from '../kernel'
import { END_SIGNALS, ProcessRunner, RunOptions, RunResult, errorLine, failureReason } from '../process'
import { USERNS_MS } from '../timeouts'

/** Names a namespace to register in instead of rootless Docker's: the user namespace of this process (e.g. Podman's pause process, or `setup-qemu-binfmt run`'s). */
export const USERNS_PID_ENV = 'SETUP_QEMU_BINFMT_USERNS_PID'

/** A user namespace owned by this runner's user, named by a process inside it. */
export interface UserNamespace {
  readonly pid: number
  /** for logs: which namespace it is ("the user namespace of rootless Docker (...)") */
  readonly label: string
  /** the rootless engine whose containers run in it, when it is one */
  readonly engine?: EngineCli
}

/** The namespace's binfmt_misc, as seen from outside through its process's root. */
function binfmtRootOf(ns: UserNamespace): string {
  return `/proc/${ns.pid}/root${BINFMT_ROOT}`
}

/** A /proc file's text, or undefined when the kernel does not offer it (the process is gone). */
const procText = (file: string): string | undefined => readOr(() => fs.readFileSync(file, 'utf8'), undefined)

const statOr = (file: string): fs.Stats | undefined => readOr(() => fs.statSync(file), undefined)
const lstatOr = (file: string): fs.Stats | undefined => readOr(() => fs.lstatSync(file), undefined)

/**
 * A pid file's text, or undefined when there is none. Opened without following
 * a symlink or waiting on a FIFO, and checked on the open file: only a small
 * regular file of this user's may name the process.
 */
function readPidFile(file: string, what: string): string | undefined {
  let fd: number
  try {
    fd = fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK)
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw new Error(`${file} cannot name ${what} (${errorMessage(e)}); it must be a regular file of this user`)
  }
  try {
    const st = fs.fstatSync(fd)
    if (!st.isFile() || st.uid !== process.geteuid?.()) throw new Error(`${file} is not a regular file owned by this user; it cannot name ${what}`)
    const buf = Buffer.alloc(32)
    return buf.toString('utf8', 0, fs.readSync(fd, buf, 0, buf.length, 0))
  } finally {
    fs.closeSync(fd)
  }
}

/** Why `pid` is not a process of this user in a user namespace other than this process's, or undefined when it is one. */
function processProblem(pid: number): string | undefined {
  const status = procText(`/proc/${pid}/status`)
  if (status === undefined) return `process ${pid} is not running`
  // A zombie keeps its credentials (and so its user namespace link) but no longer has namespaces to enter.
  if (/^State:\s+[ZX]/m.test(status)) return `process ${pid} has exited`
  const uids = /^Uid:\s+(.*)$/m.exec(status)?.[1].trim().split(/\s+/).map(Number) ?? []
  const me = process.geteuid?.() ?? -1
  if (!uids.length || uids.some(u => u !== me)) return `process ${pid} does not run as this user (uid ${me})`
  let theirs: string
  try {
    theirs = fs.readlinkSync(`/proc/${pid}/ns/user`)
  } catch (e) {
    return `cannot see the user namespace of process ${pid} (${errorMessage(e)})`
  }
  if (theirs === fs.readlinkSync('/proc/self/ns/user')) return `process ${pid} runs in this runner's own user namespace, not one of its own`
  return undefined
}

/** `pid` runs as this user in a user namespace other than this process's; else throws why not. */
function checkProcess(pid: number, what: string): void {
  const problem = processProblem(pid)
  if (problem) throw new Error(`${what}: ${problem}`)
}

/** There is no local Docker socket to look at: Podman may be what this user runs. */
class NoDocker extends Error {}

/** The unix socket the docker CLI talks to, when it is a local one. */
export function dockerSocket(env: NodeJS.ProcessEnv): string | undefined {
  const host = env.DOCKER_HOST
  if (host) return host.startsWith('unix://') ? host.slice('unix://'.length) : undefined
  return env.XDG_RUNTIME_DIR ? path.join(env.XDG_RUNTIME_DIR, 'docker.sock') : undefined
}

/**
 * The namespace of the rootless Docker daemon behind DOCKER_HOST (or
 * $XDG_RUNTIME_DIR/docker.sock): dockerd writes its pid beside its socket, and
 * rootlesskit its child's pid into its state directory.
 */
export function rootlessDocker(env: NodeJS.ProcessEnv): UserNamespace {
  const socket = dockerSocket(env)
  if (!socket) {
    throw new NoDocker(
      env.DOCKER_HOST
        ? `DOCKER_HOST (${env.DOCKER_HOST}) is not a local unix socket`
        : 'no rootless Docker daemon: neither DOCKER_HOST nor XDG_RUNTIME_DIR is set',
    )
  }
  const sock = statOr(socket)
  if (!sock?.isSocket()) throw new NoDocker(`no rootless Docker daemon: ${socket} is not a socket`)
  // Only this user's files may name the process to enter: the socket's directory may be shared (e.g. /tmp).
  if (sock.uid !== process.geteuid?.())
    throw new Error(`${socket} is not owned by this user, so it is not this user's rootless Docker daemon; set DOCKER_HOST to your own daemon's socket`)
  const dir = path.dirname(socket)
  // rootlesskit's state directory counts only when it is a real directory of this user's, not a symlink or another user's.
  const state = lstatOr(path.join(dir, 'dockerd-rootless'))
  const stateOwn = state?.isDirectory() && state.uid === sock.uid
  for (const file of [...(stateOwn ? [path.join(dir, 'dockerd-rootless', 'child_pid')] : []), path.join(dir, 'docker.pid')]) {
    const pid = pidFrom(file, 'the rootless Docker daemon')
    if (pid === undefined) continue
    return { pid, label: `the user namespace of rootless Docker (pid ${pid}, ${socket})`, engine: { cli: 'docker', env: { DOCKER_HOST: `unix://${socket}` } } }
  }
  throw new Error(`no rootless Docker daemon's pid file beside ${socket} (docker.pid or dockerd-rootless/child_pid)`)
}

/** The process id a pid file of this user's holds, or undefined when there is no such file. */
function readPid(file: string, what: string): number | undefined {
  const text = readPidFile(file, what)
  if (text === undefined) return undefined
  if (!/^\d{1,9}\s*$/.test(text)) throw new Error(`${file} does not hold a process id`)
  return Number(text)
}

/** readPid, checked to run as this user in a user namespace of its own. */
function pidFrom(file: string, what: string): number | undefined {
  const pid = readPid(file, what)
  if (pid !== undefined) checkProcess(pid, `${what} (${file})`)
  return pid
}

/** Podman's pause process, when one of this user's is running: Podman keeps its namespace alive with it. */
function podmanPause(env: NodeJS.ProcessEnv): number | undefined {
  // Podman's runtime directory: XDG_RUNTIME_DIR, else /run/user/<uid>, else /tmp/podman-run-<uid>.
  const uid = process.geteuid?.()
  const dirs = [env.XDG_RUNTIME_DIR, `/run/user/${uid}`, `/tmp/podman-run-${uid}`].filter((d): d is string => !!d)
  // A file someone else put where ours would be (/tmp is shared) is not ours to follow.
  const file = dirs
    .map(d => path.join(d, 'libpod', 'tmp', 'pause.pid'))
    .find(f => {
      const st = lstatOr(f)
      return st?.isFile() && st.uid === uid
    })
  if (!file) return undefined
  const what = "rootless Podman's pause process"
  const pid = readPid(file, what)
  if (pid === undefined) return undefined
  const problem = processProblem(pid)
  // Left behind by a pause process that is gone: Podman starts a new one.
  if (problem && /not running|has exited/.test(problem)) return undefined
  if (problem) throw new Error(`${what} (${file}): ${problem}`)
  return pid
}

/**
 * The namespace of rootless Podman: the one `podman unshare` enters, held by
 * Podman's pause process. With `start`, `podman unshare true` starts that
 * process when it is not running (under auto, nothing of Podman's is started).
 */
export async function rootlessPodman(env: NodeJS.ProcessEnv, runner: ProcessRunner, start: boolean): Promise<UserNamespace> {
  let pid = podmanPause(env)
  if (pid === undefined) {
    if (!start) throw new Error('no rootless Podman running (no live pause process; install-mode: userns starts one with podman unshare)')
    let r: RunResult
    try {
      r = await runner.run('podman', ['unshare', 'true'], { timeoutMs: USERNS_MS })
    } catch (e) {
      throw new Error((e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no podman command on PATH' : errorMessage(e))
    }
    if (r.code !== 0) throw new Error(`podman unshare: ${failureReason(r, USERNS_MS)}`)
    pid = podmanPause(env)
    if (pid === undefined) throw new Error('podman unshare left no pause process (libpod/tmp/pause.pid)')
  }
  return { pid, label: `the user namespace of rootless Podman (pause process ${pid})`, engine: { cli: 'podman' } }
}

/** The namespace $SETUP_QEMU_BINFMT_USERNS_PID names, else rootless Docker's, else rootless Podman's. */
export async function findNamespace(env: NodeJS.ProcessEnv, runner: ProcessRunner, startPodman = true): Promise<UserNamespace> {
  const named = env[USERNS_PID_ENV]
  if (named === undefined || named === '') {
    try {
      return rootlessDocker(env)
    } catch (docker) {
      // A Docker socket that is there but refused (someone else's, a planted pid file) stops here: it is what the user pointed at.
      if (!(docker instanceof NoDocker)) throw docker
      try {
        return await rootlessPodman(env, runner, startPodman)
      } catch (podman) {
        throw new Error(
          `${errorMessage(docker)}; ${errorMessage(podman).startsWith('no rootless Podman') ? '' : 'no rootless Podman: '}${errorMessage(podman)}`,
        )
      }
    }
  }
  if (!/^[1-9]\d{0,8}$/.test(named)) throw new ActionError(`${USERNS_PID_ENV} must be a process id, not '${named}'`)
  const pid = Number(named)
  checkProcess(pid, USERNS_PID_ENV)
  return { pid, label: `the user namespace of process ${pid}` }
}

/** The nsenter arguments that run a command inside `ns` (in its root directory: entering a mount namespace moves there). */
export function enterArgs(ns: UserNamespace, command: string, args: readonly string[]): string[] {
  // Our uid is its root already; without --preserve-credentials nsenter calls setgroups, which such a namespace denies.
  return ['--target', String(ns.pid), '--user', '--mount', '--preserve-credentials', '--', command, ...args]
}

/** Runs programs inside the namespace: where its binfmt_misc entries apply. */
export class NamespaceRunner implements ProcessRunner {
  constructor(
    private readonly ns: UserNamespace,
    private readonly runner: ProcessRunner,
  ) {}

  async run(command: string, args: readonly string[], options?: RunOptions): Promise<RunResult> {
    const r = await this.runner.run('nsenter', enterArgs(this.ns, command, args), options)
    // nsenter's own failure to start the program, as running it directly would have thrown.
    const failed = /^nsenter: failed to execute .*: (.*)$/m.exec(r.stderr)
    if (r.code !== null && r.code >= 126 && failed) {
      const code = /exec format error/i.test(failed[1]) ? 'ENOEXEC' : /no such file/i.test(failed[1]) ? 'ENOENT' : 'EACCES'
      throw Object.assign(new Error(failed[1]), { code })
    }
    return r
  }
}

/** Whether a file of a binfmt_misc is in the namespace's own table: it belongs to the namespace's root (this user), and it is not the host's. */
function inOwnTable(file: fs.Stats): boolean {
  const host = statOr(BINFMT_ROOT)
  return file.uid === process.geteuid?.() && (!host || file.dev !== host.dev)
}

/** Whether the binfmt_misc at `root` is the namespace's own. */
function ownInstance(root: string): boolean {
  const register = statOr(path.join(root, 'register'))
  return register !== undefined && inOwnTable(register)
}

/** Kernel release as [major, minor]. */
function kernelVersion(release: string): [number, number] {
  const m = /^(\d+)\.(\d+)/.exec(release)
  return m ? [Number(m[1]), Number(m[2])] : [0, 0]
}

/** Mounts the namespace's own binfmt_misc over the host's in its mount namespace, unless it has it already. */
export async function mountOwnBinfmt(ns: UserNamespace, runner: ProcessRunner): Promise<void> {
  const root = binfmtRootOf(ns)
  if (ownInstance(root)) return
  let why: string
  try {
    const r = await runner.run('nsenter', enterArgs(ns, 'mount', ['-t', 'binfmt_misc', 'binfmt_misc', BINFMT_ROOT]), { timeoutMs: USERNS_MS })
    why = r.code === 0 ? '' : failureReason(r, USERNS_MS, 'mount')
  } catch (e) {
    why = (e as NodeJS.ErrnoException).code === 'ENOENT' ? 'nsenter is not installed (util-linux)' : errorMessage(e)
  }
  if (!why && ownInstance(root)) return
  // Not the kernel's refusal: the namespace's process ended (or its pid is another's now) during the step.
  const gone = processProblem(ns.pid)
  if (gone) throw new ActionError(`${ns.label} went away during the step (${gone}); start it again and rerun`)
  throw mountRefused(ns.label, why || 'the mount did not take', os.release())
}

/** A namespace cannot have a binfmt_misc of its own. `reason` says why without the advice, for auto's list of ways tried. */
export class MountRefused extends ActionError {
  constructor(readonly reason: string) {
    super(`${reason}: use install-mode: direct (root or passwordless sudo) or a rootful Docker daemon (install-mode: docker) instead`)
  }
}

/** Why a namespace has no binfmt_misc of its own: the kernel is too old for it, or refused it there. */
export function mountRefused(label: string, why: string, release: string): MountRefused {
  const [major, minor] = kernelVersion(release)
  const old = major < 6 || (major === 6 && minor < 7)
  return new MountRefused(
    `cannot give ${label} a binfmt_misc of its own (${why}); ` +
      (old ? `this kernel is ${release}, and user namespaces can mount binfmt_misc only since Linux 6.7` : `kernel ${release} refused it in this namespace`),
  )
}

/** Registers in the namespace's own binfmt_misc, writing its files from outside as their owner. */
export class UsernsWriter extends DirectWriter {
  override readonly method = 'userns'
  readonly how: string
  /** the namespace's table: the reader for this writer */
  readonly view: BinfmtReader
  /** runs test programs inside the namespace */
  readonly probes: ProcessRunner

  constructor(
    readonly ns: UserNamespace,
    runner: ProcessRunner,
  ) {
    super(runner, binfmtRootOf(ns))
    this.how = `in ${ns.label}`
    this.view = new BinfmtReader(this.root)
    this.probes = new NamespaceRunner(ns, runner)
  }

  protected mounted(): boolean {
    return ownInstance(this.root)
  }

  protected mount(): Promise<void> {
    return mountOwnBinfmt(this.ns, this.runner)
  }

  protected async write(file: string, data: string): Promise<void> {
    // The namespace may have gone since, or its table been swapped: the file is checked as opened, then written, so
    // nothing between the check and the write can send it into another table (the host's above all).
    const fd = fs.openSync(file, fs.constants.O_WRONLY | fs.constants.O_NOFOLLOW)
    try {
      if (!inOwnTable(fs.fstatSync(fd))) throw new Error(`${this.ns.label} no longer has a binfmt_misc of its own`)
      // One write() per line: the kernel parses each write as a whole entry.
      fs.writeSync(fd, data)
    } finally {
      fs.closeSync(fd)
    }
  }
}

export interface UsernsAccess {
  readonly writer?: UsernsWriter
  readonly reason?: string
}

/** A writer for the user namespace of rootless Docker (or $SETUP_QEMU_BINFMT_USERNS_PID's), with its binfmt_misc mounted; or why not. */
export async function usernsAccess(runner: ProcessRunner, startPodman = true, env: NodeJS.ProcessEnv = process.env): Promise<UsernsAccess> {
  let ns: UserNamespace
  try {
    ns = await findNamespace(env, runner, startPodman)
  } catch (e) {
    if (e instanceof ActionError) throw e
    return { reason: `userns: ${errorMessage(e)}` }
  }
  await mountOwnBinfmt(ns, runner)
  return { writer: new UsernsWriter(ns, runner) }
}

/**
 * For looking only (the command's status and verify): the namespace of rootless
 * Docker or of a running Podman, and whether it has a binfmt_misc of its own.
 * Nothing is mounted or started: a namespace without its own table uses the host's.
 */
export async function usernsView(runner: ProcessRunner, env: NodeJS.ProcessEnv = process.env): Promise<{ writer: UsernsWriter; own: boolean }> {
  let ns: UserNamespace
  try {
    ns = await findNamespace(env, runner, false)
  } catch (e) {
    if (e instanceof ActionError) throw e
    throw new ActionError(`--userns: ${errorMessage(e)}`)
  }
  return { writer: new UsernsWriter(ns, runner), own: ownInstance(binfmtRootOf(ns)) }
}

/**
 * The first process of a new user namespace (mapped to root there) with a
 * mount namespace of its own: it waits until told to go, then becomes COMMAND.
 * Descriptor 3 is the line between us: it says `ready` once inside, and reads the go-ahead.
 * Descriptor 4 is our own stderr, which the command gets (a terminal stays one: an
 * interactive shell needs it); until then stderr is a pipe to us, to explain a failed start.
 */
const HOLDER = 'echo ready >&3 || exit 125; read -r go <&3 || exit 125; exec 3>&- 2>&4 4>&-; exec "$@"'

/** Whether this process is in the foreground process group of its controlling terminal (whose ^C then reaches the whole group). */
function inTerminalForeground(): boolean {
  const stat = procText('/proc/self/stat')
  // After "pid (comm) ": state ppid pgrp session tty_nr tpgid ...; comm may hold spaces and parentheses.
  const fields = stat?.slice(stat.lastIndexOf(')') + 2).split(' ')
  return fields !== undefined && fields[4] !== '0' && fields[5] === fields[2]
}

/** Whether `name` is an executable file in one of PATH's directories. */
function onPath(name: string): boolean {
  return (process.env.PATH ?? '')
    .split(':')
    .filter(d => path.isAbsolute(d))
    .some(d => {
      try {
        fs.accessSync(path.join(d, name), fs.constants.X_OK)
        return true
      } catch {
        return false
      }
    })
}

/** Exit status of a process as a shell reports it (128 + n for a signal). */
function statusOf(code: number | null, signal: NodeJS.Signals | null): number {
  if (code !== null) return code
  return 128 + (signal ? (os.constants.signals[signal] ?? 0) : 0)
}

/** A new user namespace, for `setup-qemu-binfmt run`: registered into first, then it runs the command. */
export class NewNamespace {
  private constructor(
    private readonly child: ChildProcess,
    readonly ns: UserNamespace,
    private readonly exited: Promise<number>,
  ) {}

  /** Starts the namespace's first process, which will run `command` once `go` is called; throws why it could not. */
  static async start(command: readonly string[]): Promise<NewNamespace> {
    // setpriv --pdeathsig: if we are killed outright (SIGKILL, no chance to pass a signal on), the command is sent
    // SIGTERM as our own SIGTERM would have, instead of running on as an orphan.
    const orphanGuard = onPath('setpriv') ? ['setpriv', '--pdeathsig', 'TERM', '--'] : []
    const holder = [...orphanGuard, '/bin/sh', '-c', HOLDER, 'sh', ...command]
    const child = spawn('unshare', ['--user', '--map-root-user', '--mount', '--propagation', 'private', '--', ...holder], {
      stdio: ['inherit', 'inherit', 'pipe', 'pipe', 2],
    })
    let stderr = ''
    let ready = false
    child.stderr?.on('data', (d: Buffer) => {
      // Until the namespace is ready its errors are ours to explain.
      if (!ready) stderr += d.toString()
    })
    let failed: NodeJS.ErrnoException | undefined
    const exited = new Promise<number>(resolve => {
      child.once('error', e => {
        failed = e
        resolve(125)
      })
      child.once('close', (code, signal) => resolve(statusOf(code, signal)))
    })
    const started = await new Promise<boolean>(resolve => {
      ;(child.stdio[3] as Duplex).once('data', () => resolve(true))
      void exited.then(() => resolve(false))
    })
    if (!started) {
      if (failed?.code === 'ENOENT') throw new ActionError('cannot create a user namespace: unshare is not installed; install util-linux')
      const why = failed ? errorMessage(failed) : errorLine(stderr) || 'unshare exited'
      throw new ActionError(
        `cannot create a user namespace (${why}); ` +
          `unprivileged user namespaces are needed: check the sysctls user.max_user_namespaces and kernel.apparmor_restrict_unprivileged_userns`,
      )
    }
    ready = true
    const pid = child.pid as number
    return new NewNamespace(child, { pid, label: `a new user namespace (pid ${pid})` }, exited)
  }

  /** Lets the command run; resolves with its exit status. Signals sent to us meanwhile are passed on. */
  async go(): Promise<number> {
    // A terminal's ^C reaches the command itself (same process group): passing it on too would make it a
    // second ^C, which many programs take as "force quit". A signal sent to us alone is passed on.
    const pass = (s: NodeJS.Signals): void => void (s === 'SIGINT' && inTerminalForeground() ? undefined : this.child.kill(s))
    for (const s of END_SIGNALS) process.on(s, pass)
    try {
      ;(this.child.stdio[3] as Duplex).end('go\n')
      return await this.exited
    } finally {
      for (const s of END_SIGNALS) process.off(s, pass)
    }
  }

  /** Ends the namespace without running the command. */
  async abandon(): Promise<void> {
    this.child.kill('SIGKILL')
    await this.exited
  }
}
