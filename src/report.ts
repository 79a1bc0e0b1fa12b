import * as core from '@actions/core'
import { BuilderResult } from './buildx/builder'
import { Emulator } from './fetch'
import { KernelWriter } from './kernel'
import { FileDigest, Pinning, checksumLine, pinnedStatus } from './pins'
import { ProbeResult } from './verify'
import { Registration } from './register'
import { Target, dockerPlatforms, emulatorName } from './targets'
import { untrusted } from './errors'

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
function availablePlatforms(o: Outcome): string[] {
  const verified = new Set(o.probes.filter(p => p.ok).map(p => p.target))
  const out = [...o.nativePlatforms]
  for (const r of o.registrations) {
    if (!verified.has(r.target)) continue
    for (const p of dockerPlatforms(r.target)) if (!out.includes(p)) out.push(p)
  }
  return out
}

export function outputs(o: Outcome): Record<string, string> {
  const platforms = availablePlatforms(o)
  return {
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

function escapeHtml(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;')
}

/**
 * A summary cell: node names, endpoints, BuildKit versions, QEMU versions and probe details come from programs
 * and servers, so as text (escaped), and never '' (core.summary leaves an empty cell unclosed).
 */
const cell = (s: string): string => escapeHtml(untrusted(s)) || '-'

/** The job summary: the builder's nodes, the emulators, and the files they came from as paste-ready qemu-sha256 lines. */
export async function writeSummary(o: Outcome, builder?: BuilderResult): Promise<void> {
  if (!process.env.GITHUB_STEP_SUMMARY) return
  const rows = reportRows(o, emulatorName)
  if (builder) {
    core.summary.addHeading(`buildx builder ${escapeHtml(untrusted(builder.name))}`, 3).addTable([
      [
        { data: 'node', header: true },
        { data: 'endpoint', header: true },
        { data: 'status', header: true },
        { data: 'BuildKit', header: true },
        { data: 'platforms', header: true },
        { data: 'platforms are', header: true },
      ],
      ...builder.nodes.map(n =>
        [
          n.name,
          n.endpoint,
          n.status,
          n.buildkit,
          n.platforms.join(', '),
          n.remote
            ? 'as the remote node declares them'
            : `checked on this runner${n.notRunning?.length ? ` (listed but not running here: ${n.notRunning.join(', ')})` : ''}`,
        ].map(cell),
      ),
    ])
  }
  core.summary
    .addHeading('QEMU emulators', 3)
    .addTable([
      [
        { data: 'platform', header: true },
        { data: 'emulator', header: true },
        { data: 'QEMU version', header: true },
        { data: 'flags', header: true },
        { data: 'source', header: true },
        { data: 'verified', header: true },
        { data: 'time', header: true },
      ],
      ...rows.map(r =>
        [r.platforms.join(', '), r.emulator, r.qemuVersion, r.flags, r.source, r.verified, r.ms === undefined ? '' : `${r.ms.toFixed(1)} ms`].map(cell),
      ),
    ])
    .addRaw(`\nmethod: ${o.method}${o.scope ? ` (${escapeHtml(untrusted(o.scope))})` : ''}, cache hit: ${o.cacheHit}\n`)
  const sums = checksumRows(o.files, o.pinning)
  if (sums.length) {
    // Paste-ready: each line as the qemu-sha256 input takes it.
    core.summary.addHeading('Files the emulators came from', 3).addTable([
      [
        { data: 'qemu-sha256 line', header: true },
        { data: 'checked', header: true },
      ],
      // The file name comes from qemu-url: escaped, so it shows as text.
      ...sums.map(r => [`<code>${cell(r.line)}</code>`, cell(r.pinned)]),
    ])
  }
  await core.summary.write()
}
