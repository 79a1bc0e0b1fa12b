import { setMaxListeners } from 'events'
import * as fs from 'fs'
import * as os from 'os'
import * as path from 'path'
import { chooseAccess } from '../access'
import { BinfmtReader } from '../binfmt'
import { passFile } from '../fetch/emulator-file'
import { DEFAULT_LIMITS } from '../fetch/limits'
import { detectHost, nativePlatforms } from '../host'
import { DEFAULT_DOCKER_IMAGE } from '../inputs'
import { HostLock } from '../lock'
import { silentLog } from '../log'
import { ChildProcessRunner, cleanUpOnSignal } from '../process'
import { isQemuEntry, stagedBy, unstaged } from '../register'
import { stagingOf } from '../staging'
import { Target, dockerPlatforms, emulatorName, findTarget } from '../targets'
import { LOCK_WAIT_MS } from '../timeouts'
import { usernsView } from '../access/userns'
import { ProbeHost, probeNative, runProbes, shellProbes } from '../verify'
import { Parsed, UsageError } from './args'
import { print } from './output'

// The commands that read and change binfmt_misc's table as it is, without the engine: status, verify, uninstall.

interface EntryStatus {
  name: string
  target: string | null
  platforms: string[]
  interpreter: string
  flags: string
  enabled: boolean
  /** the version the emulator file reports, when the file is on this machine */
  qemuVersion: string | null
  verified: boolean
  detail: string
  /** for a staging entry (qemu-T.staged-<pid>): the run that staged it; else null */
  stagedBy: number | null
  /** a staging entry whose run is gone (killed before it could remove it): uninstall removes it */
  abandoned: boolean
}

/** The QEMU version an emulator file carries (read from its bytes, never by running it), when the file is on this machine. */
async function emulatorVersion(file: string, target: Target): Promise<string | null> {
  try {
    if (!fs.statSync(file).isFile()) return null
    const f = await passFile(file, emulatorName(target), undefined, detectHost().arch, file, DEFAULT_LIMITS.emulator)
    return /version (\S+)/.exec(f.reportedVersion ?? '')?.[1] ?? null
  } catch {
    return null
  }
}

/** The qemu-* entries and whether each runs its test program now (all programs at once). */
async function entryStatuses(reader: BinfmtReader, dir: string, probes: ProbeHost): Promise<EntryStatus[]> {
  if (!reader.mounted()) return []
  // Staging entries too: one a killed run left behind works (F) like any other, until something removes it.
  const entries = reader
    .list()
    .filter(e => isQemuEntry(e.name))
    .map(e => ({ e, target: findTarget(unstaged(e.name).slice('qemu-'.length)) }))
  // One test program per target, all at once: the kernel runs each through the newest entry that matches.
  const tried = [...new Set(entries.filter(x => x.target && x.e.enabled).map(x => x.target as Target))]
  const results = await runProbes(tried, dir, probes)
  return Promise.all(
    entries.map(async ({ e, target }) => {
      const staged = stagingOf(reader, e.name)
      const probe = target && e.enabled ? results[tried.indexOf(target)] : undefined
      return {
        name: e.name,
        target: target?.name ?? null,
        platforms: target ? [...dockerPlatforms(target)] : [],
        interpreter: e.interpreter,
        flags: e.flags,
        enabled: e.enabled,
        qemuVersion: target ? await emulatorVersion(e.interpreter, target) : null,
        verified: probe?.ok ?? false,
        detail: probe ? probe.detail : target ? 'disabled' : 'not a QEMU target this tool knows',
        stagedBy: staged?.pid ?? null,
        abandoned: staged?.running === false,
      }
    }),
  )
}

export async function statusOrVerify(parsed: Parsed): Promise<number> {
  const cancel = new AbortController()
  // One listener per test program, all at once.
  setMaxListeners(0, cancel.signal)
  const processes = new ChildProcessRunner(cancel.signal)
  let reader = new BinfmtReader()
  let probes = shellProbes(processes)
  if (parsed.userns) {
    // The namespace's own table and programs run inside it; without a table of its own it uses the host's, as shown.
    const { writer, own } = await usernsView(processes)
    if (own) reader = writer.view
    probes = shellProbes(writer.probes)
    if (!parsed.quiet) print(process.stderr, `${writer.how}${own ? '' : " (no binfmt_misc of its own: the host's applies)"}\n`)
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'setup-qemu-binfmt-cli-'))
  // ^C or SIGTERM while test programs run: each leads a process group of its own, out of the terminal's
  // reach, so they are killed here (and `dir` removed) before the signal takes its course.
  const stopWatching = cleanUpOnSignal(signal => {
    cancel.abort(signal)
    fs.rmSync(dir, { recursive: true, force: true })
  })
  try {
    const entries = await entryStatuses(reader, dir, probes)
    const ok = entries.every(e => e.verified || !e.enabled)
    if (parsed.command === 'verify') {
      if (parsed.json)
        print(process.stdout, `${JSON.stringify({ ok, entries: entries.map(e => ({ name: e.name, verified: e.verified, detail: e.detail })) })}\n`)
      else for (const e of entries) print(process.stdout, `${e.name}: ${e.verified ? 'ok' : e.detail}\n`)
      if (!entries.length && !parsed.json) print(process.stdout, 'no qemu-* entries are registered\n')
      return ok ? 0 : 1
    }
    const host = detectHost()
    const found = await probeNative(host, reader, dir, probes, () => undefined)
    const native = nativePlatforms(host, found.native, found.amd64Level)
    if (parsed.json) {
      print(process.stdout, `${JSON.stringify({ mounted: reader.mounted(), enabled: reader.enabled(), native, entries })}\n`)
    } else {
      print(process.stdout, `binfmt_misc: ${reader.mounted() ? (reader.enabled() ? 'mounted, enabled' : 'mounted, DISABLED') : 'not mounted'}\n`)
      print(process.stdout, `native: ${native.join(', ')}\n`)
      for (const e of entries) {
        print(
          process.stdout,
          `${e.name}: ${e.platforms.join(', ') || '-'}; ${e.interpreter}; flags ${e.flags || 'none'}; ${e.enabled ? 'enabled' : 'disabled'}; ` +
            `QEMU ${e.qemuVersion ?? 'unknown'}; ${e.verified ? 'verified' : `not verified: ${e.detail}`}${stagingNote(e)}\n`,
        )
      }
    }
    return 0
  } finally {
    stopWatching()
    fs.rmSync(dir, { recursive: true, force: true })
  }
}

function stagingNote(e: EntryStatus): string {
  if (e.stagedBy === null) return ''
  if (e.abandoned) return `; left by run ${e.stagedBy}, which is no longer running (setup-qemu-binfmt uninstall removes it)`
  return `; staged by run ${e.stagedBy}, still running (not verified by it yet)`
}

export async function uninstall(parsed: Parsed): Promise<number> {
  const wanted = parsed.positional.length ? parsed.positional : ['all']
  const all = wanted.some(w => w.toLowerCase() === 'all')
  const names = all ? [] : wanted.map(w => w.replace(/^qemu-/, ''))
  const unknown = names.filter(n => !findTarget(n))
  if (unknown.length) throw new UsageError(`unknown QEMU target ${unknown.map(n => `'${n}'`).join(', ')}; name targets such as aarch64, arm, riscv64, or all`)
  const runner = new ChildProcessRunner()
  const log = { info: (m: string) => void (parsed.quiet || print(process.stderr, `${m}\n`)) }
  // Which way it found is the action's log line; the command says only what it removed.
  const { writer, reader } = await chooseAccess({
    mode: parsed.userns ? 'userns' : 'auto',
    dockerImage: DEFAULT_DOCKER_IMAGE,
    writes: runner,
    runs: runner,
    env: process.env,
    log: silentLog,
    doing: 'change binfmt_misc',
  })
  const lock = await HostLock.acquire({ timeoutMs: LOCK_WAIT_MS, log: log.info })
  try {
    const present = reader.mounted() ? reader.names().filter(n => isQemuEntry(n)) : []
    const matching = all ? present : present.filter(n => names.includes(unstaged(n).slice('qemu-'.length)))
    // A live run's staging entry is its run's to remove or put in place; one whose run is gone is anybody's.
    const kept = matching.filter(n => stagingOf(reader, n)?.running === true)
    const remove = matching.filter(n => !kept.includes(n))
    if (remove.length) await writer.apply(remove.map(name => ({ kind: 'remove', name })))
    if (parsed.json) print(process.stdout, `${JSON.stringify({ ok: true, removed: remove, kept })}\n`)
    else if (!parsed.quiet) {
      print(process.stdout, remove.length ? `removed ${remove.join(', ')}\n` : 'no matching qemu-* entries\n')
      for (const n of kept) print(process.stdout, `kept ${n}: run ${stagedBy(n)}, which staged it, is still running\n`)
    }
    return 0
  } finally {
    await lock.release()
  }
}
