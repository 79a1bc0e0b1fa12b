import { ActionError } from './errors'
import { Target, allTargets, dockerPlatforms, findTarget } from './targets'

/** What the `platforms` input asks for: every target the source provides, or a list. */
export type PlatformSelection = { kind: 'all' } | { kind: 'list'; targets: readonly Target[] }

// Docker/Go architecture names (and common distro spellings) -> QEMU target.
const ARCH_ALIASES: Readonly<Record<string, string>> = {
  amd64: 'x86_64',
  'x86-64': 'x86_64',
  x64: 'x86_64',
  '386': 'i386',
  i686: 'i386',
  x86: 'i386',
  arm64: 'aarch64',
  armhf: 'arm',
  armel: 'arm',
  armv7: 'arm',
  armv7l: 'arm',
  armv6: 'arm',
  armv6l: 'arm',
  ppc64el: 'ppc64le',
  mips64le: 'mips64el',
  mipsle: 'mipsel',
  loong64: 'loongarch64',
  riscv: 'riscv64',
}

// Variants Docker platform strings may carry, per architecture.
const VARIANTS: Readonly<Record<string, readonly string[]>> = {
  x86_64: ['v1', 'v2', 'v3', 'v4'],
  aarch64: ['v8', 'v9'],
  arm: ['v5', 'v6', 'v7'],
}

function resolveArch(name: string): Target | undefined {
  return findTarget(ARCH_ALIASES[name] ?? name)
}

/** One token: `linux/arm/v7`, `arm64`, `aarch64`, `linux/amd64/v2`, ... */
function parsePlatform(token: string): Target | undefined {
  const parts = token.toLowerCase().split('/')
  if (parts[0] === 'linux') parts.shift()
  if (parts.length === 0 || parts.length > 2 || !parts[0]) return undefined
  const target = resolveArch(parts[0])
  if (!target) return undefined
  if (parts.length === 2 && !(VARIANTS[target.name] ?? []).includes(parts[1])) return undefined
  return target
}

function splitList(value: string): string[] {
  return value
    .split(/[\s,]+/)
    .map(s => s.trim())
    .filter(Boolean)
}

export function parsePlatforms(value: string): PlatformSelection {
  const tokens = splitList(value)
  if (tokens.length === 0 || tokens.some(t => t.toLowerCase() === 'all')) return { kind: 'all' }
  const targets: Target[] = []
  const unknown: string[] = []
  for (const token of tokens) {
    const t = parsePlatform(token)
    if (!t) unknown.push(token)
    else if (!targets.includes(t)) targets.push(t)
  }
  if (unknown.length) {
    throw new ActionError(
      `platforms: unknown platform${unknown.length > 1 ? 's' : ''} ${unknown.map(u => `'${u}'`).join(', ')}; ` +
        `use 'all', Docker platforms (${knownDockerPlatforms().join(', ')}), ` +
        `their bare names (arm64, arm, 386, ...) or QEMU targets (${allTargets()
          .map(t => t.name)
          .join(', ')})`,
    )
  }
  return { kind: 'list', targets }
}

function knownDockerPlatforms(): string[] {
  return allTargets().flatMap(t => [...dockerPlatforms(t)])
}
