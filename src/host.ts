import { HostArch } from './elf'
import { ActionError } from './errors'
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

/** linux/amd64/v2.. up to the x86-64 `level` (1..4) the CPU runs; none when the level is unknown. */
export function amd64Levels(level: number | undefined): string[] {
  const levels: string[] = []
  for (let v = 2; v <= (level ?? 1); v++) levels.push(`linux/amd64/v${v}`)
  return levels
}

/** Docker platforms the host runs without QEMU, given which candidate targets ran natively and the x86-64 level the CPU reported. */
export function nativePlatforms(host: Host, native: readonly Target[], amd64Level?: number): string[] {
  const platforms = [...dockerPlatforms(host.target)]
  if (host.arch === 'amd64') platforms.push(...amd64Levels(amd64Level))
  for (const t of native) for (const p of dockerPlatforms(t)) if (!platforms.includes(p)) platforms.push(p)
  return platforms
}
