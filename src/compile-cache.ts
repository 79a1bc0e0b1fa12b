import * as fs from 'fs'
import * as nodeModule from 'module'
import * as path from 'path'

/** Where the compiled bundle is kept: a tool of its own beside the emulators' entries. */
export const COMPILE_CACHE_TOOL = 'setup-qemu-binfmt-compile-cache'

const GROUP_OR_OTHER_WRITE = 0o022
const STICKY = 0o1000

/**
 * Lets Node keep the bytecode of the bundle in the tool cache, so that a later run does not compile
 * ~2 MB of JavaScript again. On a Node without it (< 22.1), or where the directory is not safe, the
 * action just compiles. Never throws: a cache is no reason to fail.
 */
export function enableCompileCache(toolCache: string | undefined): void {
  const enable = (nodeModule as { enableCompileCache?: (dir: string) => unknown }).enableCompileCache
  const uid = process.geteuid?.()
  if (!enable || uid === undefined) return
  const dir = compileCacheDir(toolCache, uid)
  if (dir) enable(dir)
}

/**
 * The cache directory under `toolCache`, created 0700 when missing; undefined unless it is safe.
 * What lies in it runs as this action and Node checks it with a CRC only, so it must be a real
 * directory of `uid`'s that nobody else can read into or write, under directories that nobody but
 * `uid` or root can change. The real path is returned: no symbolic link can be swapped after the check.
 */
export function compileCacheDir(toolCache: string | undefined, uid: number): string | undefined {
  if (!toolCache) return undefined
  try {
    const dir = path.join(fs.realpathSync(toolCache), COMPILE_CACHE_TOOL)
    if (!onlyWritableBy(path.dirname(dir), uid)) return undefined
    try {
      fs.mkdirSync(dir, { mode: 0o700 })
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') return undefined
    }
    const st = fs.lstatSync(dir)
    return st.isDirectory() && st.uid === uid && !(st.mode & 0o077) ? dir : undefined
  } catch {
    return undefined
  }
}

/**
 * True when `dir` and every directory above it belong to `uid` or root and nobody else may write in
 * them. A sticky directory (/tmp) may be writable by all: others cannot rename or remove what is ours in it.
 */
export function onlyWritableBy(dir: string, uid: number): boolean {
  return othersMayChange(dir, uid) === undefined
}

/** Why someone other than `uid` or root could change what lies in `dir` (as ssh's StrictModes asks), or undefined. */
export function othersMayChange(dir: string, uid: number): string | undefined {
  for (let d = dir; ; d = path.dirname(d)) {
    const st = fs.lstatSync(d)
    if (!st.isDirectory()) return `${d} is not a directory`
    if (st.uid !== uid && st.uid !== 0) return `${d} belongs to uid ${st.uid}`
    if (st.mode & GROUP_OR_OTHER_WRITE && !(st.mode & STICKY)) return `${d} is writable by others (mode ${(st.mode & 0o7777).toString(8)})`
    if (d === path.dirname(d)) return undefined
  }
}

/** Why someone other than `uid` or root could change the file `st` describes, or undefined. */
export function othersMayChangeFile(file: string, st: fs.Stats, uid: number): string | undefined {
  if (!st.isFile()) return `${file} is not a regular file`
  if (st.uid !== uid && st.uid !== 0) return `${file} belongs to uid ${st.uid}`
  if (st.mode & GROUP_OR_OTHER_WRITE) return `${file} is writable by others (mode ${(st.mode & 0o7777).toString(8)})`
  return undefined
}
