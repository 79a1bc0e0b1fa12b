import { randomBytes } from 'crypto'
import * as fs from 'fs'
import * as path from 'path'
import { readOr } from './errors'

/**
 * Which live jobs on this host use which qemu-* entries, so that `uninstall` in
 * one job's post step never removes an entry another running job relies on.
 * A job is the process that lives exactly as long as it: the runner's
 * Runner.Worker, else the parent of this process. A record whose process is gone
 * counts for nothing. Records can only ever keep entries registered: when they
 * cannot be read safely, uninstall keeps everything.
 */
const USAGE_DIR = '/tmp/setup-qemu-binfmt-jobs'

/** A process, told apart from a later one with the same pid by its start time. */
export interface JobId {
  readonly pid: number
  readonly start: string
}

interface UsageRecord extends JobId {
  /** entries, each as `<table>/<name>` (see tableOf) */
  readonly entries: readonly string[]
}

/**
 * Which binfmt_misc instance a name belongs to: the device of its mount. The
 * host has one; a user namespace may mount one of its own, with other entries.
 */
export function tableOf(root: string): string {
  try {
    return String(fs.statSync(root).dev)
  } catch {
    return '?'
  }
}

/** Field 22 of /proc/<pid>/stat (start time in clock ticks since boot); undefined when the process is gone. */
function startTime(pid: number): string | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8')
    // comm (field 2) may hold spaces and parentheses: count from its closing one.
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]
  } catch {
    return undefined
  }
}

function parentOf(pid: number): number | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8')
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1])
  } catch {
    return undefined
  }
}

function commOf(pid: number): string {
  try {
    return fs.readFileSync(`/proc/${pid}/comm`, 'utf8').trim()
  } catch {
    return ''
  }
}

/** USER_HZ, the unit of /proc/<pid>/stat's times: 100 on every Linux architecture this tool runs on. */
const TICKS_PER_S = 100

/** When the process started (ms since the epoch, to the second: boot time is whole seconds); undefined when it is gone. */
export function startedAtMs(pid: number): number | undefined {
  const ticks = startTime(pid)
  const btime = /^btime (\d+)$/m.exec(readOr(() => fs.readFileSync('/proc/stat', 'utf8'), ''))?.[1]
  if (ticks === undefined || btime === undefined) return undefined
  return Number(btime) * 1000 + (Number(ticks) * 1000) / TICKS_PER_S
}

export function alive(job: JobId): boolean {
  return startTime(job.pid) === job.start
}

/** The process that lives as long as this job: the nearest Runner.Worker above us, else our parent. */
export function currentJob(self: number = process.pid): JobId | undefined {
  const parent = parentOf(self)
  let pid = parent
  for (let hops = 0; pid && pid > 1 && hops < 32; hops++) {
    if (commOf(pid) === 'Runner.Worker') break
    pid = parentOf(pid)
  }
  const job = pid && pid > 1 ? pid : parent
  const start = job ? startTime(job) : undefined
  return job && start ? { pid: job, start } : undefined
}

const myUid = (): number => process.getuid?.() ?? -1

/**
 * Why the shared top directory cannot be used, or undefined (also when it is
 * missing). Root takes over one another user made first: the records area is
 * this tool's, and its owner could otherwise rename what is in it.
 */
function topProblem(dir: string): string | undefined {
  let st: fs.Stats
  try {
    st = fs.lstatSync(dir)
  } catch {
    return undefined
  }
  return st.isDirectory() ? undefined : `${dir} is not a directory`
}

/** A user's own record directory is trusted only as a real directory owned by that user and writable by nobody else. */
function trustedUserDir(dir: string, uid: number): boolean {
  try {
    const st = fs.lstatSync(dir)
    return st.isDirectory() && st.uid === uid && (st.mode & 0o022) === 0
  } catch {
    return false
  }
}

/**
 * Records live in one directory per user under a shared top directory
 * (`<top>/<uid>/<pid>-<start>.json`): each user writes only its own, readers
 * read every directory whose owner is the uid it is named after, and a record
 * is deleted only by its own user, never through another user's directory.
 */
export class UsageRecords {
  /** `table`: the binfmt_misc instance the names belong to (tableOf) */
  constructor(
    private readonly table: string,
    private readonly dir: string = USAGE_DIR,
  ) {}

  private key(entry: string): string {
    return `${this.table}/${entry}`
  }

  private get own(): string {
    return path.join(this.dir, String(myUid()))
  }

  /** Why the records cannot be used (then uninstall and reset keep everything), or undefined. */
  problem(): string | undefined {
    return topProblem(this.dir)
  }

  private ensureDirs(): void {
    const problem = topProblem(this.dir)
    if (problem) throw new Error(problem)
    try {
      fs.mkdirSync(this.dir, { mode: 0o1777 })
      // umask trims the mode mkdir gets: every runner user must be able to add its own directory.
      fs.chmodSync(this.dir, 0o1777)
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e
    }
    const top = fs.lstatSync(this.dir)
    if (myUid() === 0 && top.uid !== 0) {
      fs.chownSync(this.dir, 0, 0)
      fs.chmodSync(this.dir, 0o1777)
    }
    try {
      fs.mkdirSync(this.own, { mode: 0o755 })
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e
    }
    if (!trustedUserDir(this.own, myUid())) throw new Error(`${this.own} is not a directory of this user's that only it can write`)
  }

  private file(job: JobId): string {
    return path.join(this.own, `${job.pid}-${job.start}.json`)
  }

  /** Adds `entries` to the job's record. Throws when the directories are not safe to write. */
  add(job: JobId, entries: readonly string[]): void {
    this.ensureDirs()
    const mine = this.read(this.file(job))
    const all = [...new Set([...(mine?.entries ?? []), ...entries.map(e => this.key(e))])].sort()
    const record: UsageRecord = { pid: job.pid, start: job.start, entries: all }
    // Written aside and renamed: a reader never sees half a record, and nothing at the final name is followed.
    const tmp = path.join(this.own, `.${job.pid}-${randomBytes(6).toString('hex')}`)
    fs.writeFileSync(tmp, JSON.stringify(record), { flag: 'wx', mode: 0o644 })
    fs.renameSync(tmp, this.file(job))
  }

  /** Forgets the job's record (its post step is done with it); only ever in this user's own directory. */
  remove(job: JobId): void {
    if (trustedUserDir(this.own, myUid())) fs.rmSync(this.file(job), { force: true })
  }

  private read(file: string): UsageRecord | undefined {
    try {
      const st = fs.lstatSync(file)
      if (!st.isFile() || st.size > 65536) return undefined
      const r = JSON.parse(fs.readFileSync(file, 'utf8')) as UsageRecord
      if (typeof r.pid !== 'number' || typeof r.start !== 'string' || !Array.isArray(r.entries)) return undefined
      return { pid: r.pid, start: r.start, entries: r.entries.filter(e => typeof e === 'string') }
    } catch {
      return undefined
    }
  }

  /**
   * The live jobs other than `self` that use `entry`. Dead jobs' records count
   * for nothing; this user's own are dropped on the way. Throws when the top
   * directory is not safe (a symlink): its records could hide a live job.
   */
  users(entry: string, self?: JobId): JobId[] {
    const problem = topProblem(this.dir)
    if (problem) throw new Error(problem)
    let users: string[]
    try {
      users = fs.readdirSync(this.dir).filter(n => /^\d+$/.test(n))
    } catch {
      return []
    }
    const out: JobId[] = []
    for (const uid of users) {
      const dir = path.join(this.dir, uid)
      if (!trustedUserDir(dir, Number(uid))) continue
      let names: string[]
      try {
        names = fs
          .readdirSync(dir)
          .filter(n => n.endsWith('.json'))
          .slice(0, 10000)
      } catch {
        continue
      }
      for (const n of names) {
        const r = this.read(path.join(dir, n))
        if (!r) continue
        if (!alive(r)) {
          if (Number(uid) === myUid()) fs.rmSync(path.join(dir, n), { force: true })
          continue
        }
        if (self && r.pid === self.pid && r.start === self.start) continue
        if (r.entries.includes(this.key(entry))) out.push({ pid: r.pid, start: r.start })
      }
    }
    return out
  }
}
