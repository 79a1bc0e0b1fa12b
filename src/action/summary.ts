import { loadCore } from './core'
import { BuilderResult } from '../buildx/types'
import { untrusted } from '../errors'
import { Outcome, checksumRows, reportRows } from '../report'
import { emulatorName } from '../targets'

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
  const core = await loadCore()
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
