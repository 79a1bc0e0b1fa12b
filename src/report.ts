import { BuilderResult } from './buildx/types'
import { Emulator } from './fetch'
import { KernelWriter } from './kernel'
import { FileDigest, Pinning, checksumLine, pinnedStatus } from './fetch/pins'
import { ProbeResult } from './verify'
import { Registration } from './register'
import { Target, dockerPlatforms } from './targets'

/** One row of the job summary: a native platform or a registered emulator. */
interface ReportRow {
  readonly platforms: readonly string[]
  readonly emulator: string
  readonly qemuVersion: string
  readonly flags: string
  readonly source: string
  readonly verified: string
  readonly ms?: number
}

export interface Outcome {
  readonly nativePlatforms: readonly string[]
  readonly registrations: readonly Registration[]
  readonly emulators: ReadonlyMap<string, Emulator>
  readonly probes: readonly ProbeResult[]
  readonly qemuVersion: string
  readonly cacheHit: boolean
  readonly method: KernelWriter['method']
  /** whose processes the entries serve, when not this runner's */
  readonly scope?: string
  /** the files the emulators came from, with digests */
  readonly files: readonly FileDigest[]
  readonly pinning: Pinning
}

/** One line of the summary's file list: the paste-ready qemu-sha256 line and whether the file was checked. */
interface ChecksumRow {
  readonly line: string
  readonly pinned: string
}

export function checksumRows(files: readonly FileDigest[], p: Pinning): ChecksumRow[] {
  return [...files].sort((a, b) => a.name.localeCompare(b.name)).map(f => ({ line: checksumLine(f), pinned: pinnedStatus(p, f) }))
}

/** Platforms that run after the step: native ones first, then every verified emulated one. */
export function availablePlatforms(o: Outcome): string[] {
  const verified = new Set(o.probes.filter(p => p.ok).map(p => p.target))
  const out = [...o.nativePlatforms]
  for (const r of o.registrations) {
    if (!verified.has(r.target)) continue
    for (const p of dockerPlatforms(r.target)) if (!out.includes(p)) out.push(p)
  }
  return out
}

/** The run's answer: the action's outputs, the command's --json. With a builder, its platforms are the ones that run. */
export function outputs(o: Outcome, builder?: BuilderResult): Record<string, string> {
  const platforms = builder?.platforms ?? availablePlatforms(o)
  const out: Record<string, string> = {
    platforms: platforms.join(','),
    // The same list, ready for a matrix: fromJSON(steps.<id>.outputs.platforms-json).
    'platforms-json': JSON.stringify(platforms),
    emulators: o.registrations.map(r => r.target.name).join(','),
    'qemu-version': o.qemuVersion,
    'cache-hit': String(o.cacheHit),
    method: o.method,
    sha256: checksumRows(o.files, o.pinning)
      .map(r => r.line)
      .join('\n'),
  }
  if (builder) {
    out.builder = builder.name
    out.nodes = JSON.stringify(
      builder.nodes.map(n => ({
        name: n.name,
        endpoint: n.endpoint,
        status: n.status,
        buildkit: n.buildkit,
        platforms: n.platforms,
        remote: n.remote === true,
      })),
    )
  }
  return out
}

export function reportRows(o: Outcome, emulatorOf: (t: Target) => string): ReportRow[] {
  const rows: ReportRow[] = o.nativePlatforms.map(p => ({
    platforms: [p],
    emulator: 'native',
    qemuVersion: '',
    flags: '',
    source: 'runner',
    verified: 'yes (native)',
  }))
  for (const r of o.registrations) {
    const probe = o.probes.find(p => p.target === r.target)
    const emu = o.emulators.get(emulatorOf(r.target))
    rows.push({
      platforms: dockerPlatforms(r.target).length ? dockerPlatforms(r.target) : [`(${r.target.name})`],
      emulator: `${r.spec.name} (${r.action})`,
      qemuVersion: emu?.reportedVersion?.replace(/^qemu-\S+ version /, '') || o.qemuVersion,
      flags: r.spec.flags,
      source: emu?.origin ?? '',
      verified: probe?.ok ? 'yes' : `no: ${probe?.detail ?? 'not run'}`,
      ms: probe?.ms,
    })
  }
  return rows
}
