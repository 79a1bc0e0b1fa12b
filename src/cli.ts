// setup-qemu-binfmt as a command, for any Linux machine or CI: the action's
// engine (fetch, check, register with F, prove) behind subcommands. `install`
// runs the action's main phase itself, with the flags as its inputs, and shows
// its log as plain lines; the other subcommands read and change binfmt_misc
// directly.
import { setMaxListeners } from 'events'
import * as fs from 'fs'
import * as os from 'os'
import * as path from 'path'
import { BinfmtReader } from './binfmt'
import { chooseWriter, readerFor } from './access'
import { errorMessage, untrusted, untrustedLines } from './errors'
import { detectHost, nativePlatforms } from './host'
import { HostLock } from './lock'
import { run as runMain } from './main'
import { readInputs } from './inputs'
import { ChildProcessRunner, cleanUpOnSignal } from './process'
import { isQemuEntry, stagedBy, unstaged } from './register'
import { stagingOf } from './staging'
import { Target, dockerPlatforms, emulatorName, findTarget } from './targets'
import { LOCK_WAIT_MS } from './timeouts'
import { passFile } from './fetch/emulator-file'
import { DEFAULT_LIMITS } from './fetch/limits'
import { ProbeHost, probeNative, runProbes, shellProbes } from './verify'
import { securePathForRoot } from './search-path'
import { NewNamespace, USERNS_PID_ENV, usernsView } from './userns'

const VERSION = '1.0.0'
/** run's own failure, as env(1) and docker run report theirs: distinct from the usual statuses of a command */
const RUN_FAILED = 125

/** What the command prints: as safe as the action's log (see untrusted), since a CI step's runner reads it too. */
const print = (stream: NodeJS.WriteStream, text: string): boolean => stream.write(untrustedLines(text))

/** A usage error: exit status 2. */
class UsageError extends Error {}

type Kind = 'value' | 'multi' | 'flag' | 'negated'
/** install's flags: each names the action input it sets. */
const INSTALL_FLAGS: Readonly<Record<string, { input: string; kind: Kind }>> = {
  platforms: { input: 'platforms', kind: 'value' },
  'qemu-version': { input: 'qemu-version', kind: 'value' },
  'qemu-url': { input: 'qemu-url', kind: 'value' },
  'qemu-sha256': { input: 'qemu-sha256', kind: 'multi' },
  'install-mode': { input: 'install-mode', kind: 'value' },
  'docker-image': { input: 'docker-image', kind: 'value' },
  reset: { input: 'reset', kind: 'flag' },
  'no-preserve-argv0': { input: 'preserve-argv0', kind: 'negated' },
  'no-credential': { input: 'credential', kind: 'negated' },
  'lock-timeout': { input: 'lock-timeout', kind: 'value' },
  buildx: { input: 'buildx', kind: 'value' },
  'builder-name': { input: 'builder-name', kind: 'value' },
  driver: { input: 'driver', kind: 'value' },
  endpoint: { input: 'endpoint', kind: 'value' },
  'driver-opt': { input: 'driver-opts', kind: 'multi' },
  'buildkitd-flags': { input: 'buildkitd-flags', kind: 'value' },
  'buildkitd-config-inline': { input: 'buildkitd-config-inline', kind: 'value' },
  'no-use': { input: 'use', kind: 'negated' },
  append: { input: 'append', kind: 'value' },
}
const COMMON = new Set(['json', 'quiet', 'help', 'version', 'verbose'])

const HELP = `setup-qemu-binfmt ${VERSION}: run foreign-architecture programs and containers on this Linux machine

usage: setup-qemu-binfmt [install] [--platforms LIST] [options]
       setup-qemu-binfmt run [--platforms LIST] [options] -- COMMAND [ARG...]
       setup-qemu-binfmt status | verify [--json]
       setup-qemu-binfmt uninstall [TARGET...|all] [--json]

install (the default) downloads static QEMU emulators, checks them, registers them in binfmt_misc with
the fix-binary flag (as root, through sudo -n, or through a privileged Docker container) and proves each
by running a tiny program of its architecture. Options mirror the GitHub Action's inputs:
  --platforms LIST          linux/arm64,linux/arm/v7,riscv64,... or all (default all)
  --qemu-version V          --qemu-url TEMPLATE   --qemu-sha256 'SHA256  FILE' (repeatable)
  --install-mode auto|direct|docker|userns   --docker-image IMAGE   --reset   --lock-timeout SECONDS
  --no-preserve-argv0       --no-credential
  --buildx true|auto|false  (default false)  --builder-name N  --driver D  --driver-opt K=V (repeatable)
  --endpoint E              --buildkitd-flags F   --buildkitd-config-inline TOML  --no-use  --append YAML
run         no privilege needed (Linux 6.7+): runs COMMAND in a new user namespace whose own binfmt_misc has
            the emulators, registered and proven there; COMMAND runs as that namespace's root (your own
            uid outside), e.g. a foreign chroot; the host's binfmt_misc is not touched. The log goes to
            stderr; the exit status is COMMAND's, or 125 when the namespace could not be set up
--userns    (status, verify, uninstall) the table of rootless Docker's or Podman's user namespace instead of the host's
status      the qemu-* entries: target, platforms, interpreter, flags, enabled, whether it runs a program now;
            a staging entry (qemu-T.staged-PID) names its run, and whether that run is gone
verify      runs the test program of every registered qemu-* entry; exit 1 if one fails
uninstall   removes the qemu-* entries of the given QEMU targets (or all of them), with the staging entries of
            runs that are gone; a running run's staging entries and every non-qemu entry are left
common:     --json (one JSON document on stdout)  --quiet  --verbose  --help  --version
Emulators are cached in $XDG_CACHE_HOME/setup-qemu-binfmt (default ~/.cache/setup-qemu-binfmt).
Exit status: 0 success, 1 failure, 2 usage error; run: the command's status, or 125 when it could not be set up.`

interface Parsed {
  command: 'install' | 'run' | 'status' | 'verify' | 'uninstall'
  inputs: Record<string, string>
  positional: string[]
  json: boolean
  quiet: boolean
  verbose: boolean
  /** status, verify, uninstall: the table of rootless Docker's (or Podman's) user namespace instead of the host's */
  userns: boolean
}

export function parseArgs(argv: readonly string[]): Parsed | 'help' | 'version' {
  const args = [...argv]
  const commands = ['install', 'run', 'status', 'verify', 'uninstall'] as const
  let command: Parsed['command'] = 'install'
  if (args[0] && !args[0].startsWith('-')) {
    if (!(commands as readonly string[]).includes(args[0])) throw new UsageError(`unknown command '${args[0]}'; use install, run, status, verify or uninstall`)
    command = args.shift() as Parsed['command']
  }
  const parsed: Parsed = { command, inputs: {}, positional: [], json: false, quiet: false, verbose: false, userns: false }
  const multi: Record<string, string[]> = {}
  while (args.length) {
    const arg = args.shift() as string
    if (arg === '--') {
      const rest = args.splice(0)
      // Only run takes a command and uninstall targets: anything else after -- would be silently dropped.
      if (rest.length && command !== 'run' && command !== 'uninstall')
        throw new UsageError(`unexpected argument '${rest[0]}' after --: ${command} takes none; put its options before --, or use run -- COMMAND`)
      parsed.positional.push(...rest)
      break
    }
    if (!arg.startsWith('--')) {
      if (command === 'run') throw new UsageError(`put the command after --: setup-qemu-binfmt run [options] -- ${arg} ...`)
      if (command !== 'uninstall') throw new UsageError(`unexpected argument '${arg}'; see --help`)
      parsed.positional.push(arg)
      continue
    }
    const eq = arg.indexOf('=')
    const name = arg.slice(2, eq < 0 ? undefined : eq)
    if (name === 'userns' && (command === 'status' || command === 'verify' || command === 'uninstall')) {
      if (eq >= 0) throw new UsageError(`--${name} takes no value`)
      parsed.userns = true
      continue
    }
    if (COMMON.has(name)) {
      if (eq >= 0) throw new UsageError(`--${name} takes no value`)
      if (name === 'help') return 'help'
      if (name === 'version') return 'version'
      parsed[name as 'json' | 'quiet' | 'verbose'] = true
      continue
    }
    const installs = command === 'install' || command === 'run'
    const flag = installs ? INSTALL_FLAGS[name] : undefined
    if (!flag) throw new UsageError(`unknown option --${name}${installs ? '' : ` for ${command}`}; see --help`)
    if (flag.kind === 'flag' || flag.kind === 'negated') {
      if (eq >= 0) throw new UsageError(`--${name} takes no value`)
      parsed.inputs[flag.input] = flag.kind === 'flag' ? 'true' : 'false'
      continue
    }
    const value = eq >= 0 ? arg.slice(eq + 1) : args.shift()
    if (value === undefined) throw new UsageError(`--${name} needs a value; see --help`)
    if (flag.kind === 'multi') (multi[flag.input] ??= []).push(value)
    else parsed.inputs[flag.input] = value
  }
  for (const [input, values] of Object.entries(multi)) parsed.inputs[input] = values.join('\n')
  if (command === 'run') {
    if (!parsed.positional.length)
      throw new UsageError('run needs a command after --, e.g. setup-qemu-binfmt run --platforms linux/arm64 -- chroot ROOTFS /bin/sh')
    if (parsed.json) throw new UsageError("--json does not go with run: stdout is the command's")
    for (const name of ['install-mode', 'buildx'] as const) {
      if (parsed.inputs[name] !== undefined)
        throw new UsageError(`--${name} does not go with run, which registers in a namespace of its own and sets up no builder`)
    }
    parsed.inputs['install-mode'] = 'userns'
  }
  // Every value is checked as the action checks its inputs: a bad one is a usage error.
  try {
    readInputs(name => parsed.inputs[name] ?? '')
  } catch (e) {
    throw new UsageError(errorMessage(e).replace(/^([\w-]+): /, '--$1: '))
  }
  return parsed
}

/** The action's log as a person reads it: workflow commands become plain lines, errors go to stderr. */
function plainLog(parsed: Parsed): () => void {
  const write = process.stdout.write.bind(process.stdout)
  const err = process.stderr.write.bind(process.stderr)
  // With --json stdout holds the one JSON document, with run it is the command's: the log goes to stderr.
  const out = parsed.json || parsed.command === 'run' ? err : write
  const unescape = (s: string): string => s.replace(/%0D/g, '\r').replace(/%0A/g, '\n').replace(/%3A/g, ':').replace(/%2C/g, ',').replace(/%25/g, '%')
  let pending = ''
  // On a terminal, download progress lines become one bar redrawn in place.
  const tty = !parsed.json && !parsed.quiet && process.stdout.isTTY === true
  let bar = false
  const line = (l: string): void => {
    const progress = tty ? progressBar(l) : undefined
    if (progress) {
      out(`\r${progress}`)
      bar = true
      return
    }
    if (bar) {
      out('\n')
      bar = false
    }
    const m = /^::(\w[\w-]*)(?: [^:]*)?::(.*)$/.exec(l)
    if (!m) {
      if (!parsed.quiet) out(`${untrusted(l)}\n`)
      return
    }
    const [, cmd, escaped] = m
    // Unescaped, a message may have lines again: each is printed as safe as the action's log.
    const msg = untrustedLines(unescape(escaped))
    if (cmd === 'error') err(`error: ${msg}\n`)
    else if (cmd === 'warning') err(`warning: ${msg}\n`)
    else if (cmd === 'notice' && !parsed.quiet) out(`notice: ${msg}\n`)
    else if (cmd === 'group' && !parsed.quiet) out(`${msg}\n`)
    else if (cmd === 'debug' && parsed.verbose) out(`debug: ${msg}\n`)
  }
  process.stdout.write = ((chunk: string | Uint8Array): boolean => {
    pending += typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString()
    let nl: number
    while ((nl = pending.indexOf('\n')) >= 0) {
      line(pending.slice(0, nl).replace(/\r$/, ''))
      pending = pending.slice(nl + 1)
    }
    return true
  }) as typeof process.stdout.write
  return () => {
    if (pending) line(pending)
    process.stdout.write = write
  }
}

/** A download progress line (see fetch/download.ts progressLine) as a terminal bar, or undefined for any other line. */
export function progressBar(line: string, width = 30): string | undefined {
  const m = /^Downloading (\S+): ([\d.]+) of ([\d.]+|\?) MB$/.exec(line)
  if (!m) return undefined
  const [, url, done, total] = m
  const name = url.slice(url.lastIndexOf('/') + 1)
  if (total === '?') return `${name} ${done} MB`
  const share = Math.min(1, Number(done) / Number(total))
  const filled = Math.round(share * width)
  return `${name} [${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ${Math.round(share * 100)}% ${done}/${total} MB`
}

function cacheHome(): string {
  return path.join(process.env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache'), 'setup-qemu-binfmt')
}

/** install: the action's main phase, with the flags as its inputs and files in place of the runner's. */
async function install(parsed: Parsed): Promise<number> {
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'setup-qemu-binfmt-cli-'))
  const outputFile = path.join(work, 'outputs')
  fs.writeFileSync(outputFile, '')
  fs.writeFileSync(path.join(work, 'state'), '')
  const defaults: Record<string, string> = { buildx: 'false', cache: 'false', cleanup: 'false' }
  for (const [k, v] of Object.entries({ ...defaults, ...parsed.inputs })) process.env[`INPUT_${k.toUpperCase()}`] = v
  process.env.GITHUB_OUTPUT = outputFile
  process.env.GITHUB_STATE = path.join(work, 'state')
  delete process.env.GITHUB_STEP_SUMMARY
  process.env.RUNNER_TOOL_CACHE = path.join(cacheHome(), 'tool-cache')
  process.env.RUNNER_TEMP = work
  if (parsed.verbose) process.env.RUNNER_DEBUG = '1'
  const restore = plainLog(parsed)
  // Should a cancelled run's clean-up overrun its deadline, main ends the process with process.exit: this goes too.
  const removeWork = (): void => fs.rmSync(work, { recursive: true, force: true })
  process.once('exit', removeWork)
  try {
    await runMain()
  } finally {
    restore()
  }
  const failed = process.exitCode === 1
  const outputs = readOutputs(fs.readFileSync(outputFile, 'utf8'))
  process.off('exit', removeWork)
  removeWork()
  if (parsed.json) {
    print(
      process.stdout,
      `${JSON.stringify({
        ok: !failed,
        platforms: outputs.platforms ? outputs.platforms.split(',') : [],
        emulators: outputs.emulators ? outputs.emulators.split(',') : [],
        qemuVersion: outputs['qemu-version'] ?? null,
        method: outputs.method ?? null,
        cacheHit: outputs['cache-hit'] === 'true',
        sha256: outputs.sha256 ? outputs.sha256.split('\n').filter(Boolean) : [],
        builder: outputs.builder || null,
      })}\n`,
    )
  } else if (!failed && !parsed.quiet) {
    print(parsed.command === 'run' ? process.stderr : process.stdout, `platforms: ${outputs.platforms ?? ''}\n`)
  }
  return failed ? 1 : 0
}

/** GITHUB_OUTPUT as @actions/core writes it: `name<<DELIM`, value lines, `DELIM`. */
function readOutputs(text: string): Record<string, string> {
  const out: Record<string, string> = {}
  const lines = text.split('\n')
  for (let i = 0; i < lines.length; i++) {
    const m = /^([^=<]+)<<(.+)$/.exec(lines[i])
    if (!m) continue
    const value: string[] = []
    for (i++; i < lines.length && lines[i] !== m[2]; i++) value.push(lines[i])
    out[m[1]] = value.join('\n')
  }
  return out
}

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

async function statusOrVerify(parsed: Parsed): Promise<number> {
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

/** run: a new user namespace gets the emulators (install, with install-mode userns), then runs the command. */
async function runCommand(parsed: Parsed): Promise<number> {
  let space: NewNamespace
  try {
    space = await NewNamespace.start(parsed.positional)
  } catch (e) {
    print(process.stderr, `setup-qemu-binfmt: ${errorMessage(e)}\n`)
    return RUN_FAILED
  }
  let installed = 1
  const before = process.env[USERNS_PID_ENV]
  process.env[USERNS_PID_ENV] = String(space.ns.pid)
  try {
    installed = await install(parsed)
  } finally {
    if (before === undefined) delete process.env[USERNS_PID_ENV]
    else process.env[USERNS_PID_ENV] = before
    if (installed !== 0) await space.abandon()
  }
  if (installed !== 0) return RUN_FAILED
  return space.go()
}

async function uninstall(parsed: Parsed): Promise<number> {
  const wanted = parsed.positional.length ? parsed.positional : ['all']
  const all = wanted.some(w => w.toLowerCase() === 'all')
  const names = all ? [] : wanted.map(w => w.replace(/^qemu-/, ''))
  const unknown = names.filter(n => !findTarget(n))
  if (unknown.length) throw new UsageError(`unknown QEMU target ${unknown.map(n => `'${n}'`).join(', ')}; name targets such as aarch64, arm, riscv64, or all`)
  const runner = new ChildProcessRunner()
  const log = { info: (m: string) => void (parsed.quiet || print(process.stderr, `${m}\n`)), debug: () => undefined }
  // Which way it found is the action's log line; the command says only what it removed.
  const writer = await chooseWriter(
    parsed.userns ? 'userns' : 'auto',
    'busybox:stable',
    runner,
    { info: () => undefined, debug: () => undefined },
    'change binfmt_misc',
  )
  const reader = readerFor(writer)
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

export async function main(argv: readonly string[]): Promise<number> {
  let parsed: Parsed | 'help' | 'version'
  try {
    parsed = parseArgs(argv)
  } catch (e) {
    print(process.stderr, `setup-qemu-binfmt: ${errorMessage(e)}\n`)
    return 2
  }
  if (parsed === 'help') {
    print(process.stdout, `${HELP}\n`)
    return 0
  }
  if (parsed === 'version') {
    print(process.stdout, `${VERSION}\n`)
    return 0
  }
  // install and run check again in the action's main phase; the warning is said once.
  securePathForRoot(m => void print(process.stderr, `setup-qemu-binfmt: warning: ${m}\n`))
  try {
    if (parsed.command === 'install') return await install(parsed)
    if (parsed.command === 'run') return await runCommand(parsed)
    if (parsed.command === 'uninstall') return await uninstall(parsed)
    return await statusOrVerify(parsed)
  } catch (e) {
    print(process.stderr, `setup-qemu-binfmt: ${errorMessage(e)}\n`)
    return e instanceof UsageError ? 2 : 1
  }
}
