import * as fs from 'fs'
import * as path from 'path'

/**
 * The PATH entries root may run programs from (docker, podman, nsenter, unshare, setpriv, sudo, mount): absolute
 * directories that, with every directory above them, only root can change. Another user's directory (a user's
 * ~/.local/bin kept by sudo -E, /tmp/bin), a group- or world-writable one, '' and relative entries (the working
 * directory) would let another local user put a program of that name in front of the real one.
 */
export function rootSearchPath(value: string): { kept: string[]; dropped: string[] } {
  const kept: string[] = []
  const dropped: string[] = []
  for (const dir of value.split(':')) (path.isAbsolute(dir) && onlyRoot(dir) ? kept : dropped).push(dir)
  return { kept, dropped }
}

/** Whether only root can change `dir` and the directories above it (a missing one: whether only root could make it). */
function onlyRoot(dir: string): boolean {
  const entry = path.resolve(dir)
  // true while the directory below the one looked at is missing: then nobody else may write there at all
  let missing = false
  for (let d = entry; ; d = path.dirname(d)) {
    let st: fs.Stats | undefined
    try {
      st = fs.statSync(d)
    } catch {
      st = undefined
    }
    if (!st) missing = true
    else {
      // A sticky directory above (/tmp) lets no one else replace root's own, existing directory in it.
      const othersWrite = (st.mode & 0o022) !== 0 && (d === entry || missing || (st.mode & 0o1000) === 0)
      if (!st.isDirectory() || st.uid !== 0 || othersWrite) return false
      missing = false
    }
    if (d === path.dirname(d)) return true
  }
}

/**
 * As root, narrows this process's PATH (its children inherit it) to rootSearchPath's entries; says which went.
 * A no-op for other users: what they run is theirs to choose.
 */
export function securePathForRoot(warn: (m: string) => void): void {
  if (process.geteuid?.() !== 0 || process.env.PATH === undefined) return
  const { kept, dropped } = rootSearchPath(process.env.PATH)
  if (!dropped.length) return
  process.env.PATH = kept.join(':')
  warn(
    `PATH: ignoring ${dropped.map(d => `'${d}'`).join(', ')}: running as root, programs are only taken from directories only root can change; ` +
      'install docker, nsenter and the like in such a directory',
  )
}
