import { randomBytes } from 'crypto'
import * as fs from 'fs'
import * as path from 'path'
import { errnoMessage, readOr } from './errors'

/**
 * Which live jobs on this host use which qemu-* entries, so that `uninstall` in
 * one job's post step never removes an entry another running job relies on.
 * A job is the process that lives exactly as long as it: the runner's
 * Runner.Worker, else the parent of this process. A record whose process is gone
 * counts for nothing. Records can only ever keep entries registered: when they
 * cannot be read safely, uninstall keeps everything.
 */
const USAGE_DIR = '/tmp/setup-qemu-binfmt-jobs'
/** root's records: where only root can write, so no other user can block, hide or redirect them. */
const ROOT_USAGE_DIR = '/run/setup-qemu-binfmt-jobs'

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

// The effective uid: it owns what this process makes and decides what it may change.
const myUid = (): number => process.geteuid?.() ?? -1

/** A directory nobody but root can change: a real directory owned by root, not writable by group or others. */
function rootOnly(st: fs.Stats): boolean {
  return st.isDirectory() && st.uid === 0 && (st.mode & 0o022) === 0
}

/** A directory in which nobody but root can replace a root-owned name: root's, and not writable by others or sticky (/tmp). */
function rootNames(st: fs.Stats): boolean {
  return st.isDirectory() && st.uid === 0 && ((st.mode & 0o022) === 0 || (st.mode & 0o1000) !== 0)
}

/** Why root's records directory (or a directory above it) is not one only root can change, or undefined (also when missing). */
function rootDirProblem(dir: string): string | undefined {
  let st: fs.Stats
  try {
    st = fs.lstatSync(dir)
  } catch {
    return undefined
  }
  if (!rootOnly(st)) return `${dir} is not a directory only root can write (owner uid ${st.uid}, mode ${(st.mode & 0o7777).toString(8)}); remove it`
  for (let up = path.dirname(dir); ; up = path.dirname(up)) {
    if (!rootNames(fs.statSync(up))) return `${up} lets users other than root replace ${dir}; make it owned by root and mode 0755`
    if (up === path.dirname(up)) return undefined
  }
}

/** Why the shared top directory cannot be used, or undefined (also when it is missing). */
function topProblem(dir: string): string | undefined {
  let st: fs.Stats
  try {
    st = fs.lstatSync(dir)
  } catch {
    return undefined
  }
  return st.isDirectory() ? undefined : `${dir} is not a directory; remove it`
}

/**
 * Which uids (as directory names give them, uids of the parent namespace) are mapped into this
 * process's user namespace: all in the initial one. Files of an unmapped user show as owned by
 * the overflow uid here, so their ownership could not be checked.
 */
function mappedUids(): (uid: number) => boolean {
  const map = readOr(() => fs.readFileSync('/proc/self/uid_map', 'utf8'), '')
  const ranges = map
    .trim()
    .split('\n')
    .map(l => l.trim().split(/\s+/).map(Number))
    .filter(r => r.length === 3 && r.every(Number.isFinite))
  // Unreadable: assume mapped, so that a directory that cannot be checked keeps entries (fail safe).
  if (!ranges.length) return () => true
  return uid => ranges.some(([, outside, count]) => uid >= outside && uid < outside + count)
}

/** Why a user's record directory cannot be trusted to hold all of that user's records, or undefined. */
function userDirProblem(dir: string, uid: number, top: fs.Stats): string | undefined {
  const st = fs.lstatSync(dir)
  if (!st.isDirectory() || st.uid !== uid || (st.mode & 0o022) !== 0)
    return `${dir} is not a directory of uid ${uid} that only it can write (owner uid ${st.uid}); remove it (only its owner or root can)`
  // The top directory's owner can rename anything in it, sticky bit or not: it could hide this user's records.
  if (top.uid !== 0 && top.uid !== uid) return `${path.dirname(dir)} belongs to uid ${top.uid}, who could remove uid ${uid}'s records; remove it (as root)`
  return undefined
}

/** Opens a directory itself, never what a symlink swapped in for it points to. */
function openDir(dir: string): number {
  return fs.openSync(dir, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY | fs.constants.O_NOFOLLOW)
}

/** mkdir, then the mode umask trimmed, set on the directory made (by descriptor): false when it existed. */
function makeDir(dir: string, mode: number): boolean {
  try {
    fs.mkdirSync(dir, { mode })
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') return false
    throw e
  }
  const fd = openDir(dir)
  try {
    if (fs.fstatSync(fd).uid === myUid()) fs.fchmodSync(fd, mode)
  } finally {
    fs.closeSync(fd)
  }
  return true
}

const ENTRY_NAME = /^\d+$/

/**
 * Records live in one directory per user (`<dir>/<uid>/<pid>-<start>.json`):
 * root's under /run, where only root can write; every other user's under a
 * shared top directory in /tmp, where each writes only its own. Readers read
 * both; a user directory that cannot be trusted makes the records unknown
 * (uninstall then keeps everything), never silently empty. Nothing is ever
 * chowned or chmodded by path where another user can write.
 */
export class UsageRecords {
  /** `table`: the binfmt_misc instance the names belong to (tableOf); `dir`, `rootDir`: the two areas (tests use their own) */
  constructor(
    private readonly table: string,
    private readonly dir: string = USAGE_DIR,
    private readonly rootDir: string = ROOT_USAGE_DIR,
  ) {}

  private key(entry: string): string {
    return `${this.table}/${entry}`
  }

  private get own(): string {
    return myUid() === 0 ? this.rootDir : path.join(this.dir, String(myUid()))
  }

  /** Why the records cannot be used (then uninstall and reset keep everything), or undefined. */
  problem(): string | undefined {
    return rootDirProblem(this.rootDir) ?? topProblem(this.dir)
  }

  private ensureDirs(): void {
    if (myUid() === 0) {
      this.adoptTop()
      const problem = rootDirProblem(this.rootDir)
      if (problem) throw new Error(problem)
      // /run is missing in some containers; only root can make it in /.
      fs.mkdirSync(path.dirname(this.rootDir), { recursive: true, mode: 0o755 })
      makeDir(this.rootDir, 0o755)
      const again = rootDirProblem(this.rootDir)
      if (again) throw new Error(again)
      return
    }
    const problem = topProblem(this.dir)
    if (problem) throw new Error(problem)
    // Every runner user must be able to add its own directory.
    makeDir(this.dir, 0o1777)
    makeDir(this.own, 0o755)
    const why = userDirProblem(this.own, myUid(), fs.lstatSync(this.dir))
    if (why) throw new Error(why)
  }

  /**
   * root takes over a shared top directory another user made first, so that its owner cannot hide other users'
   * records; by descriptor, so a symlink swapped in for it is never followed (it fails to open and stays as it is).
   */
  private adoptTop(): void {
    let fd: number
    try {
      fd = openDir(this.dir)
    } catch {
      return
    }
    try {
      if (fs.fstatSync(fd).uid !== 0) {
        fs.fchownSync(fd, 0, 0)
        fs.fchmodSync(fd, 0o1777)
      }
    } finally {
      fs.closeSync(fd)
    }
  }

  private file(job: JobId): string {
    return path.join(this.own, `${job.pid}-${job.start}.json`)
  }

  /** Adds `entries` to the job's record. Throws, naming the directory at fault, when it cannot be written safely. */
  add(job: JobId, entries: readonly string[]): void {
    this.ensureDirs()
    const mine = this.read(this.file(job))
    const all = [...new Set([...(mine?.entries ?? []), ...entries.map(e => this.key(e))])].sort()
    const record: UsageRecord = { pid: job.pid, start: job.start, entries: all }
    // Written aside and renamed: a reader never sees half a record, and nothing at the final name is followed.
    const tmp = path.join(this.own, `.${job.pid}-${randomBytes(6).toString('hex')}`)
    const fd = fs.openSync(tmp, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_NOFOLLOW, 0o644)
    try {
      // Readable by every user's uninstall whatever the umask: an unreadable record would hide this job.
      fs.fchmodSync(fd, 0o644)
      fs.writeSync(fd, JSON.stringify(record))
    } finally {
      fs.closeSync(fd)
    }
    fs.renameSync(tmp, this.file(job))
  }

  /** Forgets the job's record (its post step is done with it); only ever in this user's own directory, and only when it is safe. */
  remove(job: JobId): void {
    const own = (): string | undefined => topProblem(this.dir) ?? userDirProblem(this.own, myUid(), fs.lstatSync(this.dir))
    const unsafe = myUid() === 0 ? rootDirProblem(this.rootDir) : readOr(own, 'missing')
    if (!unsafe) fs.rmSync(this.file(job), { force: true })
  }

  /** A record; undefined when it is gone or not one. Throws when it cannot be read (it could be a live job's). */
  private read(file: string): UsageRecord | undefined {
    let text: string
    try {
      const st = fs.lstatSync(file)
      if (!st.isFile() || st.size > 65536) return undefined
      text = fs.readFileSync(file, 'utf8')
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined
      throw new Error(`${file} cannot be read (${errnoMessage(e)})`)
    }
    try {
      const r = JSON.parse(text) as UsageRecord
      if (typeof r.pid !== 'number' || typeof r.start !== 'string' || !Array.isArray(r.entries)) return undefined
      return { pid: r.pid, start: r.start, entries: r.entries.filter(e => typeof e === 'string') }
    } catch {
      return undefined
    }
  }

  /** The records of one user's directory: live ones; this user's dead ones are dropped on the way. */
  private readDir(dir: string, uid: number): UsageRecord[] {
    let names: string[]
    try {
      names = fs
        .readdirSync(dir)
        .filter(n => n.endsWith('.json'))
        .slice(0, 10000)
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return []
      throw new Error(`${dir} cannot be read (${errnoMessage(e)})`)
    }
    const out: UsageRecord[] = []
    for (const n of names) {
      const r = this.read(path.join(dir, n))
      if (!r) continue
      if (alive(r)) out.push(r)
      else if (uid === myUid()) fs.rmSync(path.join(dir, n), { force: true })
    }
    return out
  }

  /**
   * The live jobs other than `self` that use `entry`. Dead jobs' records count
   * for nothing. Throws when any records could be missing: a directory that is
   * not safe, or that another user could have emptied; the throw names it.
   */
  users(entry: string, self?: JobId): JobId[] {
    const problem = this.problem()
    if (problem) throw new Error(problem)
    const records = this.readDir(this.rootDir, 0)
    let top: fs.Stats | undefined
    let uids: string[] = []
    try {
      top = fs.lstatSync(this.dir)
      uids = fs.readdirSync(this.dir).filter(n => ENTRY_NAME.test(n))
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw new Error(`${this.dir} cannot be read (${errnoMessage(e)})`)
    }
    const mappedHere = mappedUids()
    for (const uid of uids) {
      // A user this user namespace does not map runs outside it, where this namespace's binfmt_misc does not apply.
      if (!mappedHere(Number(uid))) continue
      // A "0" here is an older version's root records (or another user's pretending to be).
      const dir = path.join(this.dir, uid)
      const why = userDirProblem(dir, Number(uid), top as fs.Stats)
      if (why) throw new Error(why)
      records.push(...this.readDir(dir, Number(uid)))
    }
    return records
      .filter(r => !(self && r.pid === self.pid && r.start === self.start) && r.entries.includes(this.key(entry)))
      .map(r => ({ pid: r.pid, start: r.start }))
  }
}
