import * as net from 'net'
import * as os from 'os'
import { ActionError, untrusted } from './errors'
import { CancelledError } from './process'
import { pause } from './timeouts'

/**
 * The host-wide lock around every read-plan-change-verify of binfmt_misc, one
 * table for the whole host. It is an abstract unix socket: binding the name
 * succeeds for one process at a time, whichever user it runs as, and the kernel
 * frees it the moment its holder exits, even on SIGKILL, so no stale lock file
 * is ever left to time out. Abstract names belong to a network namespace: jobs
 * in containers with their own network are not serialized with the host's.
 */
// Padded to the whole of sun_path (108 bytes): Node 20 binds abstract names padded with NULs to that
// length, Node 22+ binds them at their own length, and for the kernel those are different names.
// A name that fills sun_path is the same name to every Node version.
const LOCK_NAME = '\0setup-qemu-binfmt/binfmt_misc/'.padEnd(108, '.')

/** Who holds the lock: what a waiting run prints. */
interface LockHolder {
  readonly pid: number
  readonly user: string
  readonly job?: string
  readonly since: string
}

interface LockOptions {
  /** how long to wait for another holder; then an ActionError naming it */
  readonly timeoutMs: number
  readonly cancel?: AbortSignal
  readonly log: (m: string) => void
  /** the lock's socket name (tests use their own) */
  readonly name?: string
}

/** This run, as a waiting run is told; `since` is when it bound the name (a Date.now()). */
function me(since: number): LockHolder {
  const job = [
    process.env.GITHUB_REPOSITORY,
    process.env.GITHUB_RUN_ID && `run ${process.env.GITHUB_RUN_ID}`,
    process.env.GITHUB_JOB && `job ${process.env.GITHUB_JOB}`,
  ]
    .filter(Boolean)
    .join(' ')
  let user: string
  try {
    user = os.userInfo().username
  } catch {
    user = String(process.getuid?.() ?? '?')
  }
  return { pid: process.pid, user, ...(job ? { job } : {}), since: new Date(since).toISOString() }
}

function describeHolder(h: LockHolder | undefined): string {
  if (!h) return 'another process (it did not say who it is)'
  return `pid ${h.pid} (user ${h.user}${h.job ? `, ${h.job}` : ''}, since ${h.since})`
}

/** A field of the holder's answer, made safe to print: any local user can bind the name and answer anything. */
function field(v: unknown, max: number): string | undefined {
  if (typeof v !== 'string') return undefined
  const s = untrusted(v, max).trim()
  return s || undefined
}

/** The holder's answer, checked; undefined when it is not one. */
function parseHolder(text: string): LockHolder | undefined {
  let h: Record<string, unknown>
  try {
    h = JSON.parse(text) as Record<string, unknown>
  } catch {
    return undefined
  }
  if (typeof h !== 'object' || h === null || !Number.isSafeInteger(h.pid) || (h.pid as number) <= 0) return undefined
  const user = field(h.user, 64)
  const since = field(h.since, 40)
  if (!user || !since) return undefined
  const job = field(h.job, 200)
  return { pid: h.pid as number, user, ...(job ? { job } : {}), since }
}

/** Asks the holder who it is; undefined when it does not answer in time. */
function askHolder(name: string): Promise<LockHolder | undefined> {
  return new Promise(resolve => {
    const socket = net.connect({ path: name })
    let data = ''
    const done = (h?: LockHolder): void => {
      socket.destroy()
      resolve(h)
    }
    // A whole-answer deadline, not an idle one: a holder that trickles bytes must not stall the wait.
    const timer = setTimeout(() => done(), 1000)
    socket.on('close', () => clearTimeout(timer))
    socket.on('data', d => {
      data += d.toString()
      if (data.length > 4096) done()
    })
    socket.on('end', () => done(parseHolder(data)))
    socket.on('error', () => done())
  })
}

interface Bound {
  readonly server: net.Server
  /** connections still open: release() ends them, whoever keeps them open */
  readonly sockets: Set<net.Socket>
}

function tryBind(name: string): Promise<Bound | undefined> {
  return new Promise((resolve, reject) => {
    const sockets = new Set<net.Socket>()
    const since = Date.now()
    // Who we are is looked up (the user database, the clock's zone) only when a waiting run asks: most runs never wait.
    let holder: string | undefined
    const server = net.createServer(socket => {
      sockets.add(socket)
      socket.on('close', () => sockets.delete(socket))
      socket.on('error', () => undefined)
      // A client that never closes its side must not keep this connection open.
      socket.end((holder ??= JSON.stringify(me(since))), () => socket.destroy())
      socket.unref()
    })
    server.once('error', (e: NodeJS.ErrnoException) => (e.code === 'EADDRINUSE' ? resolve(undefined) : reject(e)))
    server.listen({ path: name }, () => {
      // A lock must never keep the process alive by itself.
      server.unref()
      resolve({ server, sockets })
    })
  })
}

export class HostLock {
  private constructor(private readonly bound: Bound) {}

  /** Waits for the lock; throws an ActionError naming the holder after `timeoutMs`, CancelledError when cancelled. */
  static async acquire(opts: LockOptions): Promise<HostLock> {
    const name = opts.name ?? LOCK_NAME
    const deadline = Date.now() + opts.timeoutMs
    let told = false
    for (;;) {
      if (opts.cancel?.aborted) throw new CancelledError()
      const bound = await tryBind(name)
      if (bound) return new HostLock(bound)
      const other = await askHolder(name)
      if (Date.now() >= deadline) {
        throw new ActionError(
          `binfmt_misc is locked by another setup-qemu-binfmt run, ${describeHolder(other)}, for more than ${Math.round(opts.timeoutMs / 1000)} s; ` +
            `wait for that job to finish, or raise lock-timeout`,
        )
      }
      if (!told) {
        opts.log(`Waiting for another setup-qemu-binfmt run to finish changing binfmt_misc: ${describeHolder(other)}`)
        told = true
      }
      await pause(100 + Math.random() * 150, opts.cancel)
    }
  }

  /** Frees the name at once; answers still being sent to waiting runs are cut off. */
  release(): Promise<void> {
    return new Promise(resolve => {
      this.bound.server.close(() => resolve())
      // close() waits for open connections: end them, whoever holds them open.
      for (const s of this.bound.sockets) s.destroy()
    })
  }
}
