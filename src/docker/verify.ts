import * as fs from 'fs'
import * as os from 'os'
import * as path from 'path'
import { ActionError } from '../errors'
import { writeTar } from '../fetch/tar'
import { PROBE_ARGS } from '../probe'
import { ProcessRunner, RunResult, describeRun } from '../process'
import { Registration } from '../register'
import { CONTAINER_MS } from '../timeouts'
import { ProbeResult, verifyRegistrations } from '../verify'
import { BinfmtReader } from '../binfmt'
import { Docker, DockerLog, EngineCli } from './command'
import { runContainer } from './container'
import { ensureImage } from './daemon'
import { DockerWriter } from './writer'

// Verification for a runner that cannot see the table the daemon's containers
// change: the test programs run in an ordinary container of the same daemon.

const PROBE_DIR = '/setup-qemu-binfmt-probes'

/** Runs each test program named by the arguments (with PROBE_ARGS) and prints `@@probe <name> <status>` and its first stderr line. */
export const PROBE_SCRIPT = `
cd ${PROBE_DIR} || exit 1
for p in "$@"; do
  ./"$p" ${PROBE_ARGS.join(' ')} >/dev/null 2>"$p.err"
  echo "@@probe $p $?"
  head -n 1 "$p.err"
done
`

/** The exit status of a program killed by a signal, as a shell reports it (128 + n), back to the signal's name. */
function signalOf(status: number): NodeJS.Signals | undefined {
  if (status <= 128) return undefined
  const found = Object.entries(os.constants.signals).find(([, n]) => n === status - 128)
  return found?.[0] as NodeJS.Signals | undefined
}

/**
 * Collects the test programs verifyRegistrations asks to run, then runs them all
 * in one container. A program asked for after the batch left runs in a batch of its own.
 */
class ProbeBatch implements ProcessRunner {
  private queued: { file: string; resolve: (r: RunResult) => void; reject: (e: Error) => void }[] = []
  private flushed = false

  constructor(private readonly exec: (files: string[]) => Promise<Map<string, RunResult | Error>>) {}

  run(command: string): Promise<RunResult> {
    const result = new Promise<RunResult>((resolve, reject) => this.queued.push({ file: command, resolve, reject }))
    if (this.flushed) void this.drain()
    return result
  }

  async flush(): Promise<void> {
    await new Promise(resolve => setImmediate(resolve))
    this.flushed = true
    await this.drain()
  }

  private async drain(): Promise<void> {
    const calls = this.queued.splice(0)
    if (!calls.length) return
    try {
      const results = await this.exec(calls.map(c => c.file))
      for (const c of calls) {
        const r = results.get(c.file) ?? new Error('the verification container did not run it')
        if (r instanceof Error) c.reject(r)
        else c.resolve(r)
      }
    } catch (e) {
      for (const c of calls) c.reject(e instanceof Error ? e : new Error(String(e)))
    }
  }
}

/** Reads what PROBE_SCRIPT printed into what running each file on the runner would have given. */
export function parseProbes(stdout: string, files: readonly string[]): Map<string, RunResult | Error> {
  const byName = new Map(files.map(f => [path.basename(f), f]))
  const out = new Map<string, RunResult | Error>()
  const lines = stdout.split('\n')
  for (let i = 0; i < lines.length; i++) {
    const m = /^@@probe (\S+) (\d+)$/.exec(lines[i])
    const file = m && byName.get(m[1])
    if (!m || !file) continue
    const status = Number(m[2])
    const stderr = lines[i + 1] !== undefined && !lines[i + 1].startsWith('@@probe ') ? lines[++i] : ''
    // A file the kernel cannot execute is run by the shell as a script (POSIX), which fails on its binary content.
    if (status !== 0 && /syntax error|cannot execute binary|exec format error/i.test(stderr)) {
      out.set(file, Object.assign(new Error(`exec format error (${stderr})`), { code: 'ENOEXEC' }))
      continue
    }
    const signal = signalOf(status)
    out.set(file, { code: signal ? null : status, signal: signal ?? null, stdout: '', stderr })
  }
  return out
}

/** Runs test programs in one ordinary container of the writer's daemon: what running them on the runner would give. */
async function runProbes(writer: DockerWriter, files: readonly string[]): Promise<Map<string, RunResult | Error>> {
  const archive = writeTar(files.map(f => ({ name: `${PROBE_DIR.slice(1)}/${path.basename(f)}`, data: fs.readFileSync(f), mode: 0o755 })))
  const r = await runContainer(writer.docker, [writer.image, 'sh', '-c', PROBE_SCRIPT, 'sh', ...files.map(f => path.basename(f))], archive)
  if (r.code !== 0 || r.signal) throw new ActionError(`the verification container (${writer.image}) ${describeRun(r, CONTAINER_MS)}`)
  return parseProbes(r.stdout, files)
}

/**
 * verifyRegistrations for a runner that cannot see the table the daemon's
 * containers change (writer.hidden): the entries are checked as the registering
 * container left them, the test programs run in one container of the same daemon.
 */
export function verifyInContainer(writer: DockerWriter, registrations: readonly Registration[], dir: string): Promise<ProbeResult[]> {
  return probeInContainer(writer, registrations, writer.view, dir)
}

async function probeInContainer(writer: DockerWriter, registrations: readonly Registration[], reader: BinfmtReader, dir: string): Promise<ProbeResult[]> {
  const batch = new ProbeBatch(files => runProbes(writer, files))
  const results = verifyRegistrations(registrations, reader, dir, batch)
  await batch.flush()
  return results
}

/**
 * Runs the test programs in an ordinary container of a rootless engine, with
 * `image` (pulled when missing): the proof that the entries registered in the
 * engine's user namespace (`reader` shows its table) reach its containers.
 */
export async function verifyInDaemon(
  runner: ProcessRunner,
  engine: EngineCli,
  image: string,
  log: DockerLog,
  registrations: readonly Registration[],
  reader: BinfmtReader,
  dir: string,
): Promise<ProbeResult[]> {
  const docker = new Docker(runner, log, engine)
  await ensureImage(docker, image, log)
  return probeInContainer(new DockerWriter(docker, image), registrations, reader, dir)
}
