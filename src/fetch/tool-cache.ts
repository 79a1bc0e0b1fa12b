import { randomBytes } from 'crypto'
import * as fs from 'fs'
import * as path from 'path'
import { othersMayChange, othersMayChangeFile } from '../compile-cache'
import { ActionError } from '../errors'
import { EmulatorFile } from './emulator-file'
import { diskError } from './limits'

/** What the tool cache knows of one stored emulator (`qemu-<T>.json`, written after the binary). */
export interface StoredEmulator extends EmulatorFile {
  /** the downloaded or local file it came from (a label, as a qemu-sha256 line names it) and that file's digest */
  readonly file: string
  readonly fileSha256: string
  /** the Version field of the .deb it came from */
  readonly packageVersion?: string
}

interface Marker {
  sha256: string
  size: number
  file: string
  fileSha256: string
  reportedVersion?: string
  packageVersion?: string
}

const OFFERS = 'offers.json'
/** `@actions/tool-cache` marks a complete `<tool>/<version>/<arch>` directory with `<arch>.complete` beside it */
const COMPLETE = '.complete'
const STAGING = '.tmp-'
/** a staging directory this old belongs to a run that died */
const STALE_MS = 60 * 60 * 1000

/**
 * One tool-cache entry: `<root>/setup-qemu-binfmt/<version>/<arch>/`, holding
 * `qemu-<T>` binaries, each trusted only once its `qemu-<T>.json` marker exists
 * (written after the binary, by rename) and the binary's size matches it.
 * Writers stage in a directory of their own inside the entry and rename into
 * place, so concurrent runs both succeed and a run killed halfway leaves
 * nothing a later run trusts.
 *
 * Once an emulator is in place, `<arch>.complete` beside the entry says so to
 * `@actions/tool-cache`'s `find()` (it wants `<tool>/<semver>/<arch>/` and that
 * file), so later steps of a job can find the emulators. It is for them only:
 * this code never reads it, the per-emulator markers alone decide what is trusted.
 */
export class ToolCacheEntry {
  constructor(readonly dir: string) {}

  static at(toolCache: string, tool: string, version: string, arch: string): ToolCacheEntry {
    return new ToolCacheEntry(path.join(toolCache, tool, version, arch))
  }

  /** The entry of `arch` under any version (the version is learned from what it holds), if there is one. */
  static find(toolCache: string, tool: string, arch: string): ToolCacheEntry | undefined {
    let versions: string[]
    try {
      versions = fs.readdirSync(path.join(toolCache, tool)).filter(v => !v.startsWith('.'))
    } catch {
      return undefined
    }
    const found = versions.sort().find(v => fs.existsSync(path.join(toolCache, tool, v, arch)))
    return found === undefined ? undefined : ToolCacheEntry.at(toolCache, tool, found, arch)
  }

  /** Removes the entry's directory, and its version's, when nothing is left in them (another run may still be using them). */
  removeIfEmpty(): void {
    for (const d of [this.dir, path.dirname(this.dir)]) {
      try {
        fs.rmdirSync(d)
      } catch {
        return
      }
      // find() must not be told of a directory that is gone.
      if (d === this.dir) fs.rmSync(this.completeMarker(), { force: true })
    }
  }

  /** `<entry>.complete`, the file `@actions/tool-cache`'s find() looks for beside a complete entry. */
  completeMarker(): string {
    return `${this.dir}${COMPLETE}`
  }

  /**
   * The emulators stored and intact (by marker and size), and what the source offers when known.
   * `ownOnly`: a marker is believed only where nobody but this user or root could have written it
   * (it says which file an emulator came from, and a pin on that file rests on it); otherwise the
   * entry counts as empty and `doubt` says why.
   */
  read(ownOnly = false): { emulators: Map<string, StoredEmulator>; offered?: string[]; doubt?: string } {
    const emulators = new Map<string, StoredEmulator>()
    let names: string[]
    try {
      names = fs.readdirSync(this.dir)
    } catch {
      return { emulators }
    }
    const uid = process.geteuid?.() ?? -1
    if (ownOnly) {
      let doubt: string | undefined
      try {
        doubt = othersMayChange(fs.realpathSync(this.dir), uid)
      } catch (e) {
        doubt = `${this.dir} cannot be checked (${(e as NodeJS.ErrnoException).code})`
      }
      if (doubt) return { emulators, doubt }
    }
    for (const n of names) {
      const m = /^qemu-([a-z0-9_]+)\.json$/.exec(n)
      if (!m) continue
      const bin = path.join(this.dir, `qemu-${m[1]}`)
      const json = path.join(this.dir, n)
      try {
        const st = fs.lstatSync(bin)
        if (ownOnly && (othersMayChangeFile(bin, st, uid) || othersMayChangeFile(json, fs.lstatSync(json), uid))) continue
        const marker = JSON.parse(fs.readFileSync(json, 'utf8')) as Marker
        if (!st.isFile() || st.size !== marker.size || !/^[0-9a-f]{64}$/.test(marker.sha256)) continue
        emulators.set(m[1], {
          path: bin,
          sha256: marker.sha256,
          size: marker.size,
          reportedVersion: marker.reportedVersion,
          ...(typeof marker.packageVersion === 'string' ? { packageVersion: marker.packageVersion } : {}),
          file: marker.file,
          fileSha256: marker.fileSha256,
        })
      } catch {
        // half-written or foreign: not trusted
      }
    }
    let offered: string[] | undefined
    try {
      const o = JSON.parse(fs.readFileSync(path.join(this.dir, OFFERS), 'utf8')) as { offered: unknown }
      if (Array.isArray(o.offered) && o.offered.every(x => typeof x === 'string')) offered = o.offered as string[]
    } catch {
      // unknown: a later `all` run reads the source again
    }
    return { emulators, offered }
  }

  /** A fresh directory inside the entry for this run to write into; removes stale ones of dead runs. */
  stage(): string {
    try {
      fs.mkdirSync(this.dir, { recursive: true, mode: 0o755 })
    } catch (e) {
      throw toolCacheError(realMkdirError(this.dir, e), this.dir)
    }
    this.sweep()
    const dir = path.join(this.dir, `${STAGING}${process.pid}-${randomBytes(4).toString('hex')}`)
    try {
      fs.mkdirSync(dir, { mode: 0o700 })
    } catch (e) {
      throw toolCacheError(e, this.dir)
    }
    return dir
  }

  private sweep(): void {
    let names: string[]
    try {
      names = fs.readdirSync(this.dir).filter(n => n.startsWith(STAGING))
    } catch {
      return
    }
    for (const n of names) {
      const p = path.join(this.dir, n)
      try {
        if (Date.now() - fs.statSync(p).mtimeMs > STALE_MS) fs.rmSync(p, { recursive: true, force: true })
      } catch {
        // another run's, or already gone
      }
    }
  }

  /**
   * Moves the staged emulators into place (binary first, then its marker) and
   * records what the source offers; removes the staging directory.
   */
  commit(staging: string, emulators: ReadonlyMap<string, StoredEmulator>, offered?: readonly string[]): Map<string, StoredEmulator> {
    const placed = new Map<string, StoredEmulator>()
    try {
      // Staged elsewhere when the version (this entry's folder) was learned from what was staged.
      fs.mkdirSync(this.dir, { recursive: true, mode: 0o755 })
      for (const [t, e] of emulators) {
        const bin = path.join(this.dir, `qemu-${t}`)
        fs.chmodSync(e.path, 0o755)
        fs.renameSync(e.path, bin)
        const marker: Marker = {
          sha256: e.sha256,
          size: e.size,
          file: e.file,
          fileSha256: e.fileSha256,
          reportedVersion: e.reportedVersion,
          packageVersion: e.packageVersion,
        }
        this.writeAtomic(`qemu-${t}.json`, JSON.stringify(marker), staging)
        placed.set(t, { ...e, path: bin })
      }
      if (offered) this.writeAtomic(OFFERS, JSON.stringify({ offered }), staging)
      if (placed.size) this.markComplete(staging)
    } catch (e) {
      throw diskError(e, path.join(this.dir, 'x'))
    } finally {
      fs.rmSync(staging, { recursive: true, force: true })
    }
    return placed
  }

  private writeAtomic(name: string, content: string, staging: string): void {
    const tmp = path.join(staging, `${name}.tmp`)
    fs.writeFileSync(tmp, content, { mode: 0o644 })
    fs.renameSync(tmp, path.join(this.dir, name))
  }

  /**
   * Tells find() the entry is usable (by rename, so a concurrent run or a reader never sees half a file).
   * Only other steps read it; if it cannot be written they do not find the entry, and this run goes on.
   */
  private markComplete(staging: string): void {
    const tmp = path.join(staging, COMPLETE)
    try {
      fs.writeFileSync(tmp, '', { mode: 0o644 })
      fs.renameSync(tmp, this.completeMarker())
    } catch {
      // not needed by this run
    }
  }
}

/** Recursive mkdir reports ENOENT for a read-only parent: create the first missing level alone to learn why. */
function realMkdirError(dir: string, e: unknown): unknown {
  if ((e as NodeJS.ErrnoException).code !== 'ENOENT') return e
  let missing = dir
  while (!fs.existsSync(path.dirname(missing)) && path.dirname(missing) !== missing) missing = path.dirname(missing)
  try {
    fs.mkdirSync(missing)
    fs.rmdirSync(missing)
  } catch (inner) {
    return inner
  }
  return e
}

/** A tool cache this user cannot write says so, and what to do. */
function toolCacheError(e: unknown, dir: string): Error {
  const code = (e as NodeJS.ErrnoException).code
  if (code === 'EROFS' || code === 'EACCES' || code === 'EPERM' || code === 'ENOENT' || code === 'ENOTDIR') {
    const why = {
      EROFS: 'it is on a read-only file system',
      EACCES: 'permission denied',
      EPERM: 'permission denied',
      ENOENT: 'a parent directory is missing and cannot be made',
      ENOTDIR: 'a parent is not a directory',
    }[code]
    return new ActionError(
      `cannot write the tool cache entry ${dir} (${code}: ${why}); make RUNNER_TOOL_CACHE a writable directory for this user, or point it elsewhere`,
    )
  }
  return diskError(e, path.join(dir, 'x'))
}
