import * as net from 'net'
import * as os from 'os'
import { ActionError } from './errors'
import { CancelledError } from './process'

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
export const LOCK_NAME = '\0setup-qemu-binfmt/binfmt_misc/'.padEnd(108, '.')

/** Who holds the lock: what a waiting run prints. */
export interface LockHolder {
  readonly pid: number
  readonly user: string
  readonly job?: string
  readonly since: string
}

export interface LockOptions {
  /** how long to wait for another holder; then an ActionError naming it */
  readonly timeoutMs: number
  readonly cancel?: AbortSignal
  readonly log: (m: string) => void
  /** the lock's socket name (tests use their own) */
  readonly name?: string
}

function me(): LockHolder {
  const job = [process.env.GITHUB_REPOSITORY, process.env.GITHUB_RUN_ID && `run ${process.env.GITHUB_RUN_ID}`, process.env.GITHUB_JOB && `job ${process.env.GITHUB_JOB}`]
    .filter(Boolean)
    .join(' ')
  let user: string
  try {
    user = os.userInfo().username
  } catch {
    user = String(process.getuid?.() ?? '?')
  }
  return { pid: process.pid, user, ...(job ? { job } : {}), since: new Date().toISOString() }
}

export function describeHolder(h: LockHolder | undefined): string {
  if (!h) return 'another process (it did not say who it is)'
  return `pid ${h.pid} (user ${h.user}${h.job ? `, ${h.job}` : ''}, since ${h.since})`
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
    socket.setTimeout(1000, () => done())
    socket.on('data', d => {
      data += d.toString()
      if (data.length > 4096) done()
    })
    socket.on('end', () => {
      try {
        const h = JSON.parse(data) as LockHolder
        done(typeof h.pid === 'number' && typeof h.user === 'string' ? h : undefined)
      } catch {
        done()
      }
    })
    socket.on('error', () => done())
  })
}

function tryBind(name: string, holder: LockHolder): Promise<net.Server | undefined> {
  return new Promise((resolve, reject) => {
    const server = net.createServer(socket => {
      socket.on('error', () => undefined)
      socket.end(JSON.stringify(holder))
    })
    server.once('error', (e: NodeJS.ErrnoException) => (e.code === 'EADDRINUSE' ? resolve(undefined) : reject(e)))
    server.listen({ path: name }, () => {
      // A lock must never keep the process alive by itself.
      server.unref()
      resolve(server)
    })
  })
}

export class HostLock {
  private constructor(private readonly server: net.Server) {}

  /** Waits for the lock; throws an ActionError naming the holder after `timeoutMs`, CancelledError when cancelled. */
  static async acquire(opts: LockOptions): Promise<HostLock> {
    const name = opts.name ?? LOCK_NAME
    const deadline = Date.now() + opts.timeoutMs
    const holder = me()
    let told = false
    for (;;) {
      if (opts.cancel?.aborted) throw new CancelledError()
      const server = await tryBind(name, holder)
      if (server) return new HostLock(server)
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
      await sleep(100 + Math.random() * 150, opts.cancel)
    }
  }

  release(): Promise<void> {
    return new Promise(resolve => this.server.close(() => resolve()))
  }
}

function sleep(ms: number, cancel?: AbortSignal): Promise<void> {
  return new Promise(resolve => {
    const t = setTimeout(done, ms)
    function done(): void {
      clearTimeout(t)
      cancel?.removeEventListener('abort', done)
      resolve()
    }
    cancel?.addEventListener('abort', done, { once: true })
  })
}
