import * as fs from 'fs'
import { HostArch } from './elf'
import { ActionError, readOr } from './errors'
import { Target, dockerPlatforms, getTarget } from './targets'

export interface Host {
  readonly arch: HostArch
  /** the QEMU target the runner itself is */
  readonly target: Target
  /** targets of the host's families a kernel may run without QEMU; tried before they are reported native */
  readonly nativeCandidates: readonly Target[]
}

export function detectHost(nodeArch: string = process.arch): Host {
  switch (nodeArch) {
    case 'x64':
      return { arch: 'amd64', target: getTarget('x86_64'), nativeCandidates: [getTarget('i386'), getTarget('i486')] }
    case 'arm64':
      // Many arm64 server CPUs have no AArch32: arm is tried, never assumed.
      return { arch: 'arm64', target: getTarget('aarch64'), nativeCandidates: [getTarget('arm')] }
    default:
      throw new ActionError(`this runner's architecture (${nodeArch}) is not supported; use an x86_64 (amd64) or arm64 runner`)
  }
}

// x86-64 micro-architecture levels (psABI), by the /proc/cpuinfo flags each needs.
const AMD64_LEVELS: readonly (readonly [string, readonly string[]])[] = [
  ['v2', ['cx16', 'lahf_lm', 'popcnt', 'pni', 'sse4_1', 'sse4_2', 'ssse3']],
  ['v3', ['avx', 'avx2', 'bmi1', 'bmi2', 'f16c', 'fma', 'abm', 'movbe', 'xsave']],
  ['v4', ['avx512f', 'avx512bw', 'avx512cd', 'avx512dq', 'avx512vl']],
]

/** linux/amd64/v2.. the CPU supports, each level requiring the ones below it. */
export function amd64Levels(cpuinfo: string): string[] {
  const line = cpuinfo.split('\n').find(l => l.startsWith('flags'))
  const flags = new Set((line?.split(':')[1] ?? '').trim().split(/\s+/))
  const levels: string[] = []
  for (const [level, needs] of AMD64_LEVELS) {
    if (!needs.every(f => flags.has(f))) break
    levels.push(`linux/amd64/${level}`)
  }
  return levels
}

/** Docker platforms the host runs without QEMU, given which candidate targets ran natively. */
export function nativePlatforms(host: Host, native: readonly Target[], cpuinfo?: string): string[] {
  const platforms = [...dockerPlatforms(host.target)]
  if (host.arch === 'amd64') {
    platforms.push(...amd64Levels(cpuinfo ?? readOr(() => fs.readFileSync('/proc/cpuinfo', 'utf8'), '')))
  }
  for (const t of native) for (const p of dockerPlatforms(t)) if (!platforms.includes(p)) platforms.push(p)
  return platforms
}
