// Staging entries (qemu-T.staged-<pid>) and the runs that made them. Only the
// run that staged an entry removes it (on success or failure), so one whose run
// was killed (SIGKILL) stays registered, and with F keeps working even once its
// interpreter file is gone, until something judges it abandoned.
import { BinfmtReader } from './binfmt'
import { stagedBy } from './register'
import { startedAtMs } from './job-records'

/** A process that started this soon after the entry still counts as its maker: boot time is known to the second. */
const SLACK_MS = 2000

export interface Staged {
  /** the run (process) that staged the entry */
  readonly pid: number
  /** false: that run is gone, and the entry is abandoned */
  readonly running: boolean
}

/**
 * Who staged `name`, when it is a staging name, and whether that run still
 * runs: a process with its pid lives and started before the entry was made (a
 * later process that got the same pid is not that run). When the entry's age
 * cannot be read (a table seen through a container), a live pid counts as the
 * run. A run in another pid namespace (a container job) cannot be seen from
 * here: its entries count as abandoned.
 */
export function stagingOf(reader: BinfmtReader, name: string): Staged | undefined {
  const pid = stagedBy(name)
  if (pid === undefined) return undefined
  const started = startedAtMs(pid)
  if (started === undefined) return { pid, running: false }
  const made = reader.madeAtMs(name)
  return { pid, running: made === undefined || started <= made + SLACK_MS }
}

/** The staging entries in the table whose runs are gone. */
export function abandonedStaging(reader: BinfmtReader): string[] {
  if (!reader.mounted()) return []
  return reader.names().filter(n => stagingOf(reader, n)?.running === false)
}
