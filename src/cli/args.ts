import { errorMessage } from '../errors'
import { readInputs } from '../inputs'

export const VERSION = '1.0.0'

/** A usage error: exit status 2. */
export class UsageError extends Error {}

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
/**
 * Where the command's defaults differ from the action's: no builder unless asked (a command on a
 * workstation has no job to build in), and nothing for a post step that never comes.
 */
export const COMMAND_DEFAULTS: Readonly<Record<string, string>> = { buildx: 'false', cache: 'false', cleanup: 'false' }
const COMMON = new Set(['json', 'quiet', 'help', 'version', 'verbose'])
const COMMANDS = ['install', 'run', 'status', 'verify', 'uninstall'] as const

export const HELP = `setup-qemu-binfmt ${VERSION}: run foreign-architecture programs and containers on this Linux machine

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

export type Command = (typeof COMMANDS)[number]

export interface Parsed {
  command: Command
  /** the action inputs the flags set, as the action's runner would pass them */
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
  const parsed: Parsed = { command: takeCommand(args), inputs: {}, positional: [], json: false, quiet: false, verbose: false, userns: false }
  const multi: Record<string, string[]> = {}
  while (args.length) {
    const arg = args.shift() as string
    if (arg === '--') {
      takeRest(parsed, args.splice(0))
      break
    }
    if (!arg.startsWith('--')) takePositional(parsed, arg)
    else {
      const asked = takeOption(parsed, arg, args, multi)
      if (asked) return asked
    }
  }
  for (const [input, values] of Object.entries(multi)) parsed.inputs[input] = values.join('\n')
  if (parsed.command === 'run') checkRun(parsed)
  // Every value is checked as the action checks its inputs: a bad one is a usage error.
  try {
    readInputs(name => parsed.inputs[name] ?? '')
  } catch (e) {
    throw new UsageError(errorMessage(e).replace(/^([\w-]+): /, '--$1: '))
  }
  return parsed
}

/** The subcommand, when the first argument names one; install otherwise. */
function takeCommand(args: string[]): Command {
  if (!args[0] || args[0].startsWith('-')) return 'install'
  if (!(COMMANDS as readonly string[]).includes(args[0])) throw new UsageError(`unknown command '${args[0]}'; use install, run, status, verify or uninstall`)
  return args.shift() as Command
}

/** What follows `--`: run's command, uninstall's targets; anything else would be silently dropped. */
function takeRest(parsed: Parsed, rest: string[]): void {
  if (rest.length && parsed.command !== 'run' && parsed.command !== 'uninstall')
    throw new UsageError(`unexpected argument '${rest[0]}' after --: ${parsed.command} takes none; put its options before --, or use run -- COMMAND`)
  parsed.positional.push(...rest)
}

function takePositional(parsed: Parsed, arg: string): void {
  if (parsed.command === 'run') throw new UsageError(`put the command after --: setup-qemu-binfmt run [options] -- ${arg} ...`)
  if (parsed.command !== 'uninstall') throw new UsageError(`unexpected argument '${arg}'; see --help`)
  parsed.positional.push(arg)
}

/** One `--name[=value]` (its value may be the next argument); 'help' or 'version' when one of those is asked for. */
function takeOption(parsed: Parsed, arg: string, args: string[], multi: Record<string, string[]>): 'help' | 'version' | undefined {
  const eq = arg.indexOf('=')
  const name = arg.slice(2, eq < 0 ? undefined : eq)
  const noValue = (): void => {
    if (eq >= 0) throw new UsageError(`--${name} takes no value`)
  }
  const { command } = parsed
  if (name === 'userns' && (command === 'status' || command === 'verify' || command === 'uninstall')) {
    noValue()
    parsed.userns = true
    return undefined
  }
  if (COMMON.has(name)) {
    noValue()
    if (name === 'help' || name === 'version') return name
    parsed[name as 'json' | 'quiet' | 'verbose'] = true
    return undefined
  }
  const installs = command === 'install' || command === 'run'
  const flag = installs ? INSTALL_FLAGS[name] : undefined
  if (!flag) throw new UsageError(`unknown option --${name}${installs ? '' : ` for ${command}`}; see --help`)
  if (flag.kind === 'flag' || flag.kind === 'negated') {
    noValue()
    parsed.inputs[flag.input] = flag.kind === 'flag' ? 'true' : 'false'
    return undefined
  }
  const value = eq >= 0 ? arg.slice(eq + 1) : args.shift()
  if (value === undefined) throw new UsageError(`--${name} needs a value; see --help`)
  if (flag.kind === 'multi') (multi[flag.input] ??= []).push(value)
  else parsed.inputs[flag.input] = value
  return undefined
}

/** run registers in a namespace of its own, sets up no builder, and its stdout is the command's. */
function checkRun(parsed: Parsed): void {
  if (!parsed.positional.length)
    throw new UsageError('run needs a command after --, e.g. setup-qemu-binfmt run --platforms linux/arm64 -- chroot ROOTFS /bin/sh')
  if (parsed.json) throw new UsageError("--json does not go with run: stdout is the command's")
  for (const name of ['install-mode', 'buildx'] as const) {
    if (parsed.inputs[name] !== undefined)
      throw new UsageError(`--${name} does not go with run, which registers in a namespace of its own and sets up no builder`)
  }
  parsed.inputs['install-mode'] = 'userns'
}
