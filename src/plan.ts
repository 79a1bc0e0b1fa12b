import { BinfmtReader } from './binfmt'
import { Host } from './host'
import { PlatformSelection } from './platform'
import { buildProbe } from './probe'
import { ProcessRunner } from './process'
import { Target, allTargets, emulatorName, matchesHeader } from './targets'
import { ProbeResult, runProbe } from './verify'

/**
 * What this run sets out to do: which requested targets the runner runs
 * natively (reported, not registered) and which need an emulator. With
 * `platforms: all` the targets are known only once the source says what it has.
 */
export class Plan {
  constructor(
    readonly host: Host,
    readonly selection: PlatformSelection,
    /** host-family targets that ran natively when tried */
    readonly native: readonly Target[],
  ) {}

  isNative(t: Target): boolean {
    return t === this.host.target || this.native.includes(t)
  }

  /** Requested targets the runner runs itself. */
  requestedNative(): Target[] {
    return this.selection.kind === 'list' ? this.selection.targets.filter(t => this.isNative(t)) : []
  }

  /** Targets to register, given the emulator names the source has. */
  foreignTargets(available: readonly string[]): Target[] {
    if (this.selection.kind === 'all') return allTargets().filter(t => !this.isNative(t) && available.includes(emulatorName(t)))
    return this.selection.targets.filter(t => !this.isNative(t))
  }

  /** What to ask the source for: every foreign emulator for `all`, else exactly the list's. */
  emulatorWant(): EmulatorWant {
    if (this.selection.kind === 'all') return { names: emulatorNames(allTargets().filter(t => !this.isNative(t))), required: false }
    return { names: emulatorNames(this.foreignTargets([])), required: true }
  }

  /** The selection as cache keys name it: 'all', or the sorted emulator names. */
  selectionKey(): string {
    if (this.selection.kind === 'all') return 'all'
    return emulatorNames(this.foreignTargets([])).sort().join(',')
  }
}

/** Which emulators a run wants, as data handed to fetch (nothing flows back through it). */
export interface EmulatorWant {
  /** emulator names (QEMU targets whose binary is qemu-<name>) */
  readonly names: readonly string[]
  /** true for a platform list: every name must be provided; false for `all`: those the source has */
  readonly required: boolean
}

/** The emulators to use, given what the source offers (undefined: not known without reading it). */
export function pickEmulators(want: EmulatorWant, offered: readonly string[] | undefined): string[] | undefined {
  if (want.required) return [...want.names]
  return offered ? want.names.filter(n => offered.includes(n)) : undefined
}

export function emulatorNames(targets: readonly Target[]): string[] {
  return [...new Set(targets.map(emulatorName))]
}

/** What native detection found, and the probes it ran (they also tell whether programs may run from `dir`). */
export interface NativeDetection {
  readonly native: Target[]
  readonly tried: ProbeResult[]
}

/**
 * Which of the host's related targets run without QEMU: tried, not assumed. A
 * target that an existing binfmt entry would take over cannot be tried, and is
 * treated as foreign.
 */
export async function detectNative(
  host: Host,
  reader: BinfmtReader,
  dir: string,
  runner: ProcessRunner,
  log: (m: string) => void,
): Promise<Target[]> {
  return (await probeNative(host, reader, dir, runner, log)).native
}

/** detectNative, with the probes it ran. */
export async function probeNative(
  host: Host,
  reader: BinfmtReader,
  dir: string,
  runner: ProcessRunner,
  log: (m: string) => void,
): Promise<NativeDetection> {
  const entries = reader.mounted() ? reader.list().filter(e => e.enabled) : []
  const results = await Promise.all(
    host.nativeCandidates.map(async target => {
      const header = buildProbe(target)
      const taker = entries.find(e => matchesHeader(e.magic, e.mask, header, e.offset))
      if (taker) {
        log(`${target.name}: not tried natively, binfmt entry ${taker.name} would run it`)
        return undefined
      }
      const r = await runProbe(target, dir, runner)
      log(`${target.name}: ${r.ok ? 'runs natively' : `does not run natively (${r.detail})`}`)
      return r
    }),
  )
  const tried = results.filter((r): r is ProbeResult => r !== undefined)
  return { native: tried.filter(r => r.ok).map(r => r.target), tried }
}
