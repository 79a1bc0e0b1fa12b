import * as fs from 'fs'
import * as path from 'path'
import { BinfmtReader, effectiveFlags } from './binfmt'
import { PROBE_ARGS, amd64LevelOf, argumentsProblem, buildAmd64LevelProbe, buildProbe } from './probe'
import { ProcessRunner } from './process'
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

/** Writes the target's test program and executes it: the kernel picks the interpreter (or runs it natively). */
export async function runProbe(target: Target, dir: string, runner: ProcessRunner): Promise<ProbeResult> {
  const file = path.join(dir, `probe-${target.name}`)
  fs.writeFileSync(file, buildProbe(target), { mode: 0o755 })
  const start = performance.now()
  let ok = false
  let detail: string
  try {
    const r = await runner.run(file, PROBE_ARGS, { timeoutMs: PROBE_MS })
    const problem = r.code === null ? undefined : argumentsProblem(r.code)
    ok = !r.signal && r.code !== null && !problem
    const said = r.stderr.trim() ? ` (${r.stderr.trim().split('\n')[0]})` : ''
    detail = r.timedOut
      ? `the test program did not finish within ${PROBE_MS / 1000} s (the emulator hangs) and was stopped`
      : r.signal
        ? `the test program was killed by ${r.signal}${said}`
        : ok
          ? 'ok'
          : `${problem}${said}`
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code
    detail =
      code === 'ENOEXEC' ? 'exec format error: no binfmt_misc entry took the test program' : `the test program could not be started (${code ?? String(e)})`
  }
  return { target, ok, detail, ms: performance.now() - start }
}

/**
 * Proves each registration: the kernel shows the entry enabled with F, and a
 * tiny program of that architecture runs through it and reports, in its exit
 * status, that its arguments arrived intact.
 */
export async function verifyRegistrations(
  registrations: readonly Registration[],
  reader: BinfmtReader,
  dir: string,
  runner: ProcessRunner,
): Promise<ProbeResult[]> {
  return Promise.all(
    registrations.map(async r => {
      const entry = reader.read(r.staged)
      if (!entry) return { target: r.target, ok: false, detail: `${r.staged} is not in binfmt_misc after registering it`, ms: 0 }
      if (!entry.enabled) return { target: r.target, ok: false, detail: `${r.staged} is disabled`, ms: 0 }
      if (effectiveFlags(entry.flags) !== effectiveFlags(r.spec.flags)) {
        return { target: r.target, ok: false, detail: `${r.staged} has flags ${entry.flags}, expected ${effectiveFlags(r.spec.flags)}`, ms: 0 }
      }
      return runProbe(r.target, dir, runner)
    }),
  )
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
export async function probeNative(host: Host, reader: BinfmtReader, dir: string, runner: ProcessRunner, log: (m: string) => void): Promise<NativeDetection> {
  const entries = reader.mounted() ? reader.list().filter(e => e.enabled) : []
  const [amd64Level, ...results] = await Promise.all([
    host.arch === 'amd64' ? probeAmd64Level(entries, dir, runner, log) : undefined,
    ...host.nativeCandidates.map(async target => {
      const taker = takerOf(entries, buildProbe(target))
      if (taker) {
        log(`${target.name}: not tried natively, binfmt entry ${taker.name} would run it`)
        return undefined
      }
      const r = await runProbe(target, dir, runner)
      log(`${target.name}: ${r.ok ? 'runs natively' : `does not run natively (${r.detail})`}`)
      return r
    }),
  ])
  const tried = results.filter((r): r is ProbeResult => r !== undefined)
  return { native: tried.filter(r => r.ok).map(r => r.target), amd64Level, tried }
}

const takerOf = (entries: readonly BinfmtEntry[], header: Buffer): BinfmtEntry | undefined =>
  entries.find(e => matchesHeader(e.magic, e.mask, header, e.offset))

/** The x86-64 level the CPU runs, as the level probe reports it (CPUID, as glibc decides); undefined when it cannot tell. */
async function probeAmd64Level(entries: readonly BinfmtEntry[], dir: string, runner: ProcessRunner, log: (m: string) => void): Promise<number | undefined> {
  const program = buildAmd64LevelProbe()
  const taker = takerOf(entries, program)
  if (taker) {
    log(`x86-64 level: not tried, binfmt entry ${taker.name} would run the level probe; listing no linux/amd64/v2..v4`)
    return undefined
  }
  const file = path.join(dir, 'probe-amd64-level')
  fs.writeFileSync(file, program, { mode: 0o755 })
  try {
    const r = await runner.run(file, [], { timeoutMs: PROBE_MS })
    const level = amd64LevelOf(r.code)
    log(
      level !== undefined
        ? `x86-64 level: v${level} (CPUID)`
        : `x86-64 level unknown: the level probe ${r.signal ? `was killed by ${r.signal}` : `exited with status ${r.code}`}; listing no linux/amd64/v2..v4`,
    )
    return level
  } catch (e) {
    log(`x86-64 level unknown: the level probe could not be started (${(e as NodeJS.ErrnoException).code ?? String(e)}); listing no linux/amd64/v2..v4`)
    return undefined
  }
}
