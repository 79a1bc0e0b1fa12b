import * as fs from 'fs'
import * as os from 'os'
import * as path from 'path'
import { BinfmtReader, effectiveFlags } from './binfmt'
import { PROBE_ARGS, amd64LevelOf, argumentsProblem, buildAmd64LevelProbe, buildProbe } from './test-programs'
import { CancelledError, ProcessRunner, RunResult, describeRun } from './process'
import { Registration } from './register'
import { Host } from './host'
import { BinfmtEntry } from './binfmt'
import { Target, matchesHeader } from './targets'
import { PROBE_MS } from './timeouts'

export interface ProbeResult {
  readonly target: Target
  readonly ok: boolean
  /** what happened, in words, when not ok */
  readonly detail: string
  readonly ms: number
}

/**
 * Where test programs run: this runner, a user namespace, or a container. All
 * of a batch run at once, through one small shell rather than one spawn of
 * this (large) process each: the cost is then the programs' own start.
 */
export interface ProbeHost {
  /** Runs the programs `names` in `dir`, each with PROBE_ARGS: how each ended, or the error starting it gave (code ENOEXEC, ...). */
  runAll(dir: string, names: readonly string[]): Promise<Map<string, RunResult | Error>>
}

/**
 * Starts every program named after the directory ($1) in the background, and
 * prints for each, as it ends, one line: `@@probe <name> <status> <first line
 * of its stderr>` (one write, so lines of programs ending together do not mix).
 */
export const PROBE_SCRIPT = `d=$1; shift
for p in "$@"; do
  ( "$d/$p" ${PROBE_ARGS.join(' ')} >/dev/null 2>"$d/$p.err"; s=$?; e=
    [ -s "$d/$p.err" ] && e=$(head -c 300 "$d/$p.err" | head -n 1)
    printf '@@probe %s %s %s\\n' "$p" "$s" "$e" ) &
done
wait
`

/** The exit status of a program killed by a signal, as a shell reports it (128 + n), back to the signal's name. */
function signalOf(status: number): NodeJS.Signals | undefined {
  if (status <= 128) return undefined
  const found = Object.entries(os.constants.signals).find(([, n]) => n === status - 128)
  return found?.[0] as NodeJS.Signals | undefined
}

function startError(status: number, stderr: string): { code: string; what: string } | undefined {
  if (/syntax error|cannot execute binary|exec format error/i.test(stderr)) return { code: 'ENOEXEC', what: 'exec format error' }
  if (status === 126 && /permission denied/i.test(stderr)) return { code: 'EACCES', what: 'permission denied' }
  if (status === 127 && /not found|no such file/i.test(stderr)) return { code: 'ENOENT', what: 'not found' }
  return undefined
}

/** Reads what PROBE_SCRIPT printed into what running each program on its own would have given. */
export function parseProbes(stdout: string, names: readonly string[]): Map<string, RunResult | Error> {
  const out = new Map<string, RunResult | Error>()
  for (const line of stdout.split('\n')) {
    const m = /^@@probe (\S+) (\d+) ?(.*)$/.exec(line)
    if (!m || !names.includes(m[1])) continue
    const [, name, text, stderr] = m
    const status = Number(text)
    // The shell's words for a program it could not start, as the errors starting it directly would give.
    // (A shell may also run a file the kernel refused as a script, which fails on its binary content.)
    const refused = status === 0 ? undefined : startError(status, stderr)
    if (refused) {
      out.set(name, Object.assign(new Error(`${refused.what} (${stderr})`), { code: refused.code }))
      continue
    }
    const signal = signalOf(status)
    out.set(name, { code: signal ? null : status, signal: signal ?? null, stdout: '', stderr })
  }
  return out
}

/** Test programs run by `runner` (this runner's processes, or a user namespace's), through /bin/sh. */
export function shellProbes(runner: ProcessRunner, timeoutMs = PROBE_MS): ProbeHost {
  return {
    async runAll(dir, names) {
      const r = await runner.run('/bin/sh', ['-c', PROBE_SCRIPT, 'sh', dir, ...names], { timeoutMs })
      const out = parseProbes(r.stdout, names)
      // The shell and every program still running were stopped together: those are the ones that hang.
      const stopped: RunResult = { code: null, signal: r.signal ?? 'SIGKILL', stdout: '', stderr: '', ...(r.timedOut ? { timedOut: true } : {}) }
      for (const n of names)
        if (!out.has(n)) out.set(n, r.timedOut || r.signal ? stopped : new Error(`the shell running the test programs ${describeRun(r, timeoutMs)}`))
      return out
    },
  }
}

/** A test program: its file name in the batch's directory and its bytes. */
interface Program {
  readonly name: string
  readonly bytes: Buffer
}

const probeProgram = (target: Target): Program => ({ name: `probe-${target.name}`, bytes: buildProbe(target) })

/** Writes the programs into `dir` and runs them all at once on `host`; how each ended, and the batch's time. */
async function runBatch(programs: readonly Program[], dir: string, host: ProbeHost): Promise<{ ended: Map<string, RunResult | Error>; ms: number }> {
  if (!programs.length) return { ended: new Map(), ms: 0 }
  for (const p of programs) fs.writeFileSync(path.join(dir, p.name), p.bytes, { mode: 0o755 })
  const start = performance.now()
  let ended: Map<string, RunResult | Error>
  try {
    ended = await host.runAll(
      dir,
      programs.map(p => p.name),
    )
  } catch (e) {
    if (e instanceof CancelledError) throw e
    // Nothing ran (a container that failed to start): each program failed with that reason.
    const failed = e instanceof Error ? e : new Error(String(e))
    ended = new Map(programs.map(p => [p.name, failed]))
  }
  return { ended, ms: performance.now() - start }
}

/** What one test program's end says: ok when it ran and its arguments arrived intact. */
function probeResult(target: Target, ended: RunResult | Error | undefined, ms: number): ProbeResult {
  if (!ended) return { target, ok: false, detail: 'the test program was not run', ms }
  if (ended instanceof Error) {
    const code = (ended as NodeJS.ErrnoException).code
    const detail =
      code === 'ENOEXEC' ? 'exec format error: no binfmt_misc entry took the test program' : `the test program could not be started (${code ?? ended.message})`
    return { target, ok: false, detail, ms }
  }
  const problem = ended.code === null ? undefined : argumentsProblem(ended.code)
  const ok = !ended.signal && ended.code !== null && !problem
  const said = ended.stderr.trim() ? ` (${ended.stderr.trim().split('\n')[0]})` : ''
  const detail = ended.timedOut
    ? `the test program did not finish within ${PROBE_MS / 1000} s (the emulator hangs) and was stopped`
    : ended.signal
      ? `the test program was killed by ${ended.signal}${said}`
      : ok
        ? 'ok'
        : `${problem}${said}`
  return { target, ok, detail, ms }
}

/** Runs the test programs of `targets` at once: the kernel picks each one's interpreter (or runs it natively). */
export async function runProbes(targets: readonly Target[], dir: string, host: ProbeHost): Promise<ProbeResult[]> {
  const programs = targets.map(probeProgram)
  const { ended, ms } = await runBatch(programs, dir, host)
  return targets.map((t, i) => probeResult(t, ended.get(programs[i].name), ms))
}

/**
 * Proves each registration: the kernel shows the entry enabled with F, and a
 * tiny program of that architecture runs through it and reports, in its exit
 * status, that its arguments arrived intact.
 */
export async function verifyRegistrations(registrations: readonly Registration[], reader: BinfmtReader, dir: string, host: ProbeHost): Promise<ProbeResult[]> {
  const checked = registrations.map((r): ProbeResult | undefined => {
    const entry = reader.read(r.staged)
    if (!entry) return { target: r.target, ok: false, detail: `${r.staged} is not in binfmt_misc after registering it`, ms: 0 }
    if (!entry.enabled) return { target: r.target, ok: false, detail: `${r.staged} is disabled`, ms: 0 }
    if (effectiveFlags(entry.flags) !== effectiveFlags(r.spec.flags)) {
      return { target: r.target, ok: false, detail: `${r.staged} has flags ${entry.flags}, expected ${effectiveFlags(r.spec.flags)}`, ms: 0 }
    }
    return undefined
  })
  const toRun = registrations.filter((_, i) => !checked[i]).map(r => r.target)
  const ran = await runProbes(toRun, dir, host)
  return registrations.map((r, i) => checked[i] ?? ran[toRun.indexOf(r.target)])
}

/** What native detection found, and the probes it ran (they also tell whether programs may run from `dir`). */
export interface NativeDetection {
  readonly native: Target[]
  /** the x86-64 level (1..4) the CPU runs, on an amd64 host; undefined where unknown or not amd64 */
  readonly amd64Level?: number
  readonly tried: ProbeResult[]
}

/**
 * Which of the host's related targets run without QEMU, and the x86-64 level
 * of an amd64 CPU: tried, not assumed. A target that an existing binfmt entry
 * would take over cannot be tried, and is treated as foreign.
 */
export async function probeNative(host: Host, reader: BinfmtReader, dir: string, probes: ProbeHost, log: (m: string) => void): Promise<NativeDetection> {
  const entries = reader.mounted() ? reader.list().filter(e => e.enabled) : []
  const candidates = host.nativeCandidates.filter(target => {
    const taker = takerOf(entries, buildProbe(target))
    if (taker) log(`${target.name}: not tried natively, binfmt entry ${taker.name} would run it`)
    return !taker
  })
  const level = host.arch === 'amd64' ? levelProgram(entries, log) : undefined
  const programs = [...candidates.map(probeProgram), ...(level ? [level] : [])]
  const { ended, ms } = await runBatch(programs, dir, probes)
  const tried = candidates.map((t, i) => probeResult(t, ended.get(programs[i].name), ms))
  for (const r of tried) log(`${r.target.name}: ${r.ok ? 'runs natively' : `does not run natively (${r.detail})`}`)
  const amd64Level = level ? levelOf(ended.get(level.name), log) : undefined
  return { native: tried.filter(r => r.ok).map(r => r.target), amd64Level, tried }
}

const takerOf = (entries: readonly BinfmtEntry[], header: Buffer): BinfmtEntry | undefined =>
  entries.find(e => matchesHeader(e.magic, e.mask, header, e.offset))

/** The x86-64 level probe, unless an entry would take it (its answer would then be an emulator's). */
function levelProgram(entries: readonly BinfmtEntry[], log: (m: string) => void): Program | undefined {
  const bytes = buildAmd64LevelProbe()
  const taker = takerOf(entries, bytes)
  if (!taker) return { name: 'probe-amd64-level', bytes }
  log(`x86-64 level: not tried, binfmt entry ${taker.name} would run the level probe; listing no linux/amd64/v2..v4`)
  return undefined
}

/** The x86-64 level the level probe reported (CPUID, as glibc decides); undefined when it cannot tell. */
function levelOf(ended: RunResult | Error | undefined, log: (m: string) => void): number | undefined {
  const level = ended && !(ended instanceof Error) ? amd64LevelOf(ended.code) : undefined
  if (level !== undefined) {
    log(`x86-64 level: v${level} (CPUID)`)
    return level
  }
  const how =
    !ended || ended instanceof Error
      ? `could not be started (${(ended as NodeJS.ErrnoException | undefined)?.code ?? ended?.message ?? 'not run'})`
      : ended.signal
        ? `was killed by ${ended.signal}`
        : `exited with status ${ended.code}`
  log(`x86-64 level unknown: the level probe ${how}; listing no linux/amd64/v2..v4`)
  return undefined
}
