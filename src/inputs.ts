import { randomUUID } from 'crypto'
import { ChecksumList, parseChecksums } from './fetch/checksum'
import { ActionError, untrusted } from './errors'
import { PlatformSelection, parsePlatforms } from './platform'
import { parseAppend } from './buildx/append'
import { AppendNode } from './buildx/types'

export type InstallMode = 'auto' | 'direct' | 'docker' | 'userns'

/** The pinned tonistiigi/binfmt release (tag deploy/v<qemu>-<build>). */
export const DEFAULT_QEMU_VERSION = '10.2.3-68'
/** `{qemu}` is the version without its build suffix, as in the asset's file name. */
export const DEFAULT_QEMU_URL = 'https://github.com/tonistiigi/binfmt/releases/download/deploy%2Fv{version}/qemu_v{qemu}_linux-{host}.tar.gz'

/** docker-image when empty (action.yml's default too): the image whose shell registers the emulators on the Docker path. */
export const DEFAULT_DOCKER_IMAGE = 'busybox:stable'

export interface Inputs {
  readonly platforms: PlatformSelection
  readonly qemuVersion: string
  readonly qemuUrl: string
  readonly sha256: ChecksumList
  readonly cache: boolean
  readonly reset: boolean
  readonly preserveArgv0: boolean
  readonly credential: boolean
  readonly installMode: InstallMode
  readonly dockerImage: string
  /** the post step removes what this step added and puts back what it replaced */
  readonly uninstall: boolean
  /** how long to wait for another run changing binfmt_misc on this host */
  readonly lockTimeoutMs: number
  readonly builder: BuilderInputs
}

/** The buildx builder's inputs; the builder step adds what only the run knows (platforms, temp dir). */
interface BuilderInputs {
  readonly mode: 'true' | 'auto' | 'false'
  readonly name: string
  readonly nameGiven: boolean
  readonly driver: string
  readonly endpoint: string
  readonly driverOpts: string[]
  readonly buildkitdFlags: string
  readonly configInline: string
  readonly use: boolean
  readonly append: AppendNode[]
  readonly cleanup: boolean
}

type InputReader = (name: string) => string

function parseBoolean(name: string, value: string, fallback: boolean): boolean {
  const v = value.trim().toLowerCase()
  if (v === '') return fallback
  if (v === 'true') return true
  if (v === 'false') return false
  throw new ActionError(`${name}: '${value.trim()}' is not a boolean; use true or false`)
}

function parseChoice<T extends string>(name: string, value: string, choices: readonly T[], fallback: T): T {
  const v = value.trim().toLowerCase()
  if (v === '') return fallback
  if ((choices as readonly string[]).includes(v)) return v as T
  throw new ActionError(`${name}: '${value.trim()}' is not one of ${choices.join(', ')}`)
}

function parseSeconds(name: string, value: string, fallback: number): number {
  const v = value.trim()
  if (v === '') return fallback
  if (!/^\d{1,6}$/.test(v)) throw new ActionError(`${name}: '${v}' is not a whole number of seconds; use e.g. ${fallback}`)
  return Number(v)
}

function parseVersion(value: string): string {
  const v = value.trim() || DEFAULT_QEMU_VERSION
  // It ends up in URLs and directory names: keep it to what versions are made of.
  if (!/^[A-Za-z0-9][A-Za-z0-9._+~-]*$/.test(v)) {
    throw new ActionError(`qemu-version: '${v}' is not a version; use e.g. ${DEFAULT_QEMU_VERSION}`)
  }
  return v
}

/** Turns the raw `INPUT_*` strings into typed values; every bad value fails here, before anything is touched. */
export function readInputs(get: InputReader): Inputs {
  return {
    platforms: parsePlatforms(get('platforms')),
    qemuVersion: parseVersion(get('qemu-version')),
    qemuUrl: get('qemu-url').trim() || DEFAULT_QEMU_URL,
    sha256: parseChecksums(get('qemu-sha256')),
    cache: parseBoolean('cache', get('cache'), true),
    reset: parseBoolean('reset', get('reset'), false),
    preserveArgv0: parseBoolean('preserve-argv0', get('preserve-argv0'), true),
    credential: parseBoolean('credential', get('credential'), true),
    installMode: parseChoice('install-mode', get('install-mode'), ['auto', 'direct', 'docker', 'userns'] as const, 'auto'),
    dockerImage: get('docker-image').trim() || DEFAULT_DOCKER_IMAGE,
    uninstall: parseBoolean('uninstall', get('uninstall'), false),
    lockTimeoutMs: parseSeconds('lock-timeout', get('lock-timeout'), 300) * 1000,
    builder: readBuilderInputs(get),
  }
}

function readBuilderInputs(get: InputReader): BuilderInputs {
  const name = get('builder-name').trim()
  if (name && !/^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(name)) {
    throw new ActionError(`builder-name: '${name}' is not a valid builder name; use letters, digits, '.', '_' and '-'`)
  }
  const driver = get('driver').trim() || 'docker-container'
  return {
    mode: parseChoice('buildx', get('buildx'), ['true', 'auto', 'false'] as const, 'auto'),
    // Unique per job and per step, so parallel jobs on one self-hosted runner do not share a builder.
    name: name || `qemu-binfmt-${randomUUID().slice(0, 8)}`,
    nameGiven: name !== '',
    driver,
    endpoint: parseEndpoint(get('endpoint'), driver),
    driverOpts: get('driver-opts')
      .split('\n')
      .map(l => l.trim())
      .filter(Boolean),
    buildkitdFlags: get('buildkitd-flags').trim(),
    configInline: get('buildkitd-config-inline'),
    use: parseBoolean('use', get('use'), true),
    append: parseAppend(get('append')),
    cleanup: parseBoolean('cleanup', get('cleanup'), true),
  }
}

// A Docker context name (as `docker context create` takes it), or scheme://address.
const CONTEXT_NAME = /^[A-Za-z0-9][A-Za-z0-9_.+-]*$/
const ADDRESS = /^[a-z][a-z0-9+.-]*:\/\/\S+$/
// What buildx's remote driver dials.
const REMOTE_SCHEMES = ['tcp', 'unix', 'docker-container', 'kube-pod', 'npipe']

/** The first node's endpoint: a Docker context or host, or (driver remote) the address of a running buildkitd. */
function parseEndpoint(value: string, driver: string): string {
  const v = value.trim()
  const remoteHint = 'the address of a running buildkitd such as tcp://127.0.0.1:1234 or unix:///run/buildkit/buildkitd.sock'
  if (!v) {
    if (driver === 'remote') throw new ActionError(`endpoint: driver remote needs the address of its buildkitd; set endpoint to ${remoteHint}`)
    return ''
  }
  // It ends up on a docker command line (after --): never an option, never several words.
  if (v.startsWith('-') || /[\s\x00-\x1f\x7f]/.test(v) || v.length > 1024 || !(CONTEXT_NAME.test(v) || ADDRESS.test(v))) {
    throw new ActionError(
      `endpoint: '${untrusted(v, 60)}' is neither a Docker context name nor an address; give a context from docker context ls, a Docker host such as unix:///var/run/docker.sock, or (driver remote) ${remoteHint}`,
    )
  }
  if (driver === 'remote') {
    const scheme = /^([a-z][a-z0-9+.-]*):\/\//.exec(v)?.[1]
    if (!scheme || !REMOTE_SCHEMES.includes(scheme)) {
      throw new ActionError(`endpoint: '${untrusted(v, 60)}' is not an address the remote driver dials; give ${remoteHint}`)
    }
  }
  return v
}
