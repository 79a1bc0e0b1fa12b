// `docker buildx ...` costs a run of docker and, before the plugin itself, a run of the plugin's
// metadata command (docker checks every candidate it finds): ~40 ms a command on a 2-core runner,
// on the builder's way twice (create, the read after the emulators). Where only one buildx plugin
// could be the one docker runs, the builder step runs it directly, as buildx runs standalone.

import * as fs from 'fs'
import * as os from 'os'
import * as path from 'path'
import { othersMayChange, othersMayChangeFile } from '../compile-cache'

/** Where docker's CLI looks for plugins after its config directory's cli-plugins (Linux). */
export const SYSTEM_PLUGIN_DIRS = [
  '/usr/local/lib/docker/cli-plugins',
  '/usr/local/libexec/docker/cli-plugins',
  '/usr/lib/docker/cli-plugins',
  '/usr/libexec/docker/cli-plugins',
]

/** Set by docker for a plugin it runs; a plugin that sees it expects docker's argv, not ours. */
const PLUGIN_REEXEC = 'DOCKER_CLI_PLUGIN_ORIGINAL_CLI_COMMAND'
/**
 * Docker client settings that decide how the daemon is reached. buildx run standalone before v0.23
 * ignored the TLS ones (docker reads them as its flags' defaults): with any of these set, or a daemon
 * that is not at a unix socket, buildx goes through docker.
 */
const CLIENT_SETTINGS = ['DOCKER_TLS', 'DOCKER_TLS_VERIFY', 'DOCKER_CERT_PATH', 'DOCKER_CONTEXT']
/** docker's config.json is small; anything larger is not read. */
const MAX_CONFIG_BYTES = 1 << 20

export type PluginLookup = { path: string; why?: undefined } | { path?: undefined; why: string }

/**
 * The buildx plugin `docker buildx` would run, when that is beyond doubt: exactly one
 * docker-buildx in docker's plugin directories, an executable file; a daemon reached the default
 * way (no TLS or context settings, a unix socket); a docker config, if any, that nobody else could
 * change and that names no extra plugin directories (their order against the others has changed
 * between docker releases) or other current context; and nobody but this user or root able to swap
 * the program (the file, and every directory from where it is found to where its symlinks lead).
 * The path returned is the program's real path: what was checked is what runs. Otherwise `why`:
 * the builder step then runs `docker buildx` as usual.
 */
export function findBuildxPlugin(env: NodeJS.ProcessEnv, uid: number, systemDirs: readonly string[] = SYSTEM_PLUGIN_DIRS): PluginLookup {
  try {
    return lookup(env, uid, systemDirs)
  } catch (e) {
    // No home directory to be found, say: docker buildx works as well through docker.
    return { why: (e as Error).message }
  }
}

function lookup(env: NodeJS.ProcessEnv, uid: number, systemDirs: readonly string[]): PluginLookup {
  if (env[PLUGIN_REEXEC]) return { why: `${PLUGIN_REEXEC} is set` }
  const setting = CLIENT_SETTINGS.find(v => env[v])
  if (setting) return { why: `${setting} is set` }
  if (env.DOCKER_HOST && !env.DOCKER_HOST.startsWith('unix://')) return { why: 'DOCKER_HOST is not a unix socket' }
  const configDir = path.resolve(env.DOCKER_CONFIG || path.join(env.HOME || os.homedir(), '.docker'))
  const config = configDoubt(configDir, uid)
  if (config) return { why: config }
  // Anything of that name counts: docker takes the first it finds, whether it works or not.
  const found = [path.join(configDir, 'cli-plugins'), ...systemDirs].map(d => path.join(d, 'docker-buildx')).filter(present)
  if (found.length !== 1) return { why: found.length ? `more than one buildx plugin: ${found.join(', ')}` : 'no buildx plugin in the usual directories' }
  if (!executable(found[0])) return { why: `${found[0]} is not an executable file` }
  return checkedPath(found[0], uid)
}

/** Why docker's config directory makes the lookup uncertain, or undefined (a missing one is docker's default). */
function configDoubt(dir: string, uid: number): string | undefined {
  if (!present(dir)) return undefined
  const others = othersMayChange(dir, uid)
  if (others) return `docker's config directory: ${others}`
  const file = path.join(dir, 'config.json')
  let text: string
  try {
    text = readSmallFile(file)
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'ENOENT' ? undefined : `${file} cannot be read (${(e as Error).message})`
  }
  let config: unknown
  try {
    config = JSON.parse(text)
  } catch {
    return `${file} is not JSON`
  }
  // Docker's JSON decoding matches keys whatever their case.
  const value = (key: string): unknown => Object.entries(config ?? {}).find(([k]) => k.toLowerCase() === key.toLowerCase())?.[1]
  const extra = value('cliPluginsExtraDirs')
  if (Array.isArray(extra) && extra.length) return `${file} names cliPluginsExtraDirs`
  const context = value('currentContext')
  if (typeof context === 'string' && context && context !== 'default') return `${file} makes ${context} the current context`
  return undefined
}

/** A regular file of at most MAX_CONFIG_BYTES, read without waiting on a FIFO or following a symlink. */
function readSmallFile(file: string): string {
  const fd = fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK | fs.constants.O_NOFOLLOW)
  try {
    const st = fs.fstatSync(fd)
    if (!st.isFile()) throw new Error('not a regular file')
    if (st.size > MAX_CONFIG_BYTES) throw new Error(`larger than ${MAX_CONFIG_BYTES} bytes`)
    const buf = Buffer.alloc(st.size)
    const n = fs.readSync(fd, buf, 0, st.size, 0)
    return buf.subarray(0, n).toString('utf8')
  } finally {
    fs.closeSync(fd)
  }
}

function present(file: string): boolean {
  try {
    fs.lstatSync(file)
    return true
  } catch {
    return false
  }
}

function executable(file: string): boolean {
  try {
    const st = fs.statSync(file)
    return st.isFile() && (st.mode & 0o111) !== 0
  } catch {
    return false
  }
}

/**
 * `file`'s real path, when nobody but `uid` or root could change what runs there: the directory it is
 * found in, every link on the way and the directory each lies in, and the program itself.
 */
function checkedPath(file: string, uid: number): PluginLookup {
  let at = file
  for (let hops = 0; ; hops++) {
    const why = othersMayChange(path.dirname(at), uid)
    if (why) return { why }
    const st = fs.lstatSync(at)
    if (!st.isSymbolicLink()) {
      const program = othersMayChangeFile(at, st, uid)
      return program ? { why: program } : { path: at }
    }
    if (st.uid !== uid && st.uid !== 0) return { why: `${at} is a symlink of uid ${st.uid}` }
    if (hops > 16) return { why: `${file}: too many symlinks` }
    at = path.resolve(path.dirname(at), fs.readlinkSync(at))
  }
}
