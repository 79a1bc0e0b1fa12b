import { Host } from './host'
import { PlatformSelection } from './platform'
import { Target, allTargets, emulatorName } from './targets'

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
