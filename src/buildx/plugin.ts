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

export type PluginLookup = { path: string; why?: undefined } | { path?: undefined; why: string }

/**
 * The buildx plugin `docker buildx` would run, when that is beyond doubt: exactly one
 * docker-buildx in docker's plugin directories, an executable file, no extra directories in docker's config (their
 * order against the others has changed between docker releases), and nobody but this user or
 * root able to swap it (the file, its directory and those above, through a symlink too).
 * Otherwise `why`: the builder step then runs `docker buildx` as usual.
 */
export function findBuildxPlugin(env: NodeJS.ProcessEnv, uid: number, systemDirs: readonly string[] = SYSTEM_PLUGIN_DIRS): PluginLookup {
  if (env[PLUGIN_REEXEC]) return { why: `${PLUGIN_REEXEC} is set` }
  const configDir = env.DOCKER_CONFIG || path.join(env.HOME || os.homedir(), '.docker')
  const extra = extraDirs(path.join(configDir, 'config.json'))
  if (extra) return { why: extra }
  // Anything of that name counts: docker takes the first it finds, whether it works or not.
  const found = [path.join(configDir, 'cli-plugins'), ...systemDirs].map(d => path.join(d, 'docker-buildx')).filter(present)
  if (found.length !== 1) return { why: found.length ? `more than one buildx plugin: ${found.join(', ')}` : 'no buildx plugin in the usual directories' }
  if (!executable(found[0])) return { why: `${found[0]} is not an executable file` }
  const swappable = whoMaySwap(found[0], uid)
  return swappable ? { why: swappable } : { path: found[0] }
}

/** Why docker's config makes the lookup uncertain (extra plugin directories, or a config that cannot be read), or undefined. */
function extraDirs(config: string): string | undefined {
  let text: string
  try {
    text = fs.readFileSync(config, 'utf8')
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'ENOENT' ? undefined : `${config} cannot be read`
  }
  try {
    const dirs = (JSON.parse(text) as { cliPluginsExtraDirs?: unknown } | null)?.cliPluginsExtraDirs
    return Array.isArray(dirs) && dirs.length ? `${config} names cliPluginsExtraDirs` : undefined
  } catch {
    return `${config} is not JSON`
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

/** Why someone other than `uid` or root could change what runs at `file` (the link, or what it points to), or undefined. */
function whoMaySwap(file: string, uid: number): string | undefined {
  try {
    const real = fs.realpathSync(file)
    return othersMayChange(path.dirname(file), uid) ?? othersMayChange(path.dirname(real), uid) ?? othersMayChangeFile(real, fs.statSync(real), uid)
  } catch (e) {
    return `${file}: ${(e as Error).message}`
  }
}
