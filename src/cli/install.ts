import * as os from 'os'
import { errorMessage } from '../errors'
import { readInputs } from '../inputs'
import { localToolCache, runSetup } from '../setup'
import { NewNamespace, USERNS_PID_ENV } from '../access/userns'
import { COMMAND_DEFAULTS, Parsed } from './args'
import { commandIO, print } from './output'

/** run's own failure, as env(1) and docker run report theirs: distinct from the usual statuses of a command */
const RUN_FAILED = 125

/** install: the engine, with the flags as its inputs and the user's cache as its tool cache. */
export async function install(parsed: Parsed, env: NodeJS.ProcessEnv = process.env): Promise<number> {
  const voice = { json: parsed.json, quiet: parsed.quiet, verbose: parsed.verbose, quietStdout: parsed.command === 'run' }
  const { io, log } = commandIO(voice)
  // parseArgs checked every value already.
  const inputs = readInputs(name => parsed.inputs[name] ?? COMMAND_DEFAULTS[name] ?? '')
  const result = await runSetup(inputs, { tempRoot: os.tmpdir(), toolCache: localToolCache(env), env }, io, log.error)
  const outputs = result?.outputs ?? {}
  const failed = result === undefined
  if (parsed.json) print(process.stdout, `${JSON.stringify(answer(outputs, failed))}\n`)
  else if (!failed && !parsed.quiet) print(parsed.command === 'run' ? process.stderr : process.stdout, `platforms: ${outputs.platforms ?? ''}\n`)
  return failed ? 1 : 0
}

/** install --json: the outputs as one document (empty when the run failed). */
function answer(outputs: Record<string, string>, failed: boolean): Record<string, unknown> {
  const list = (v: string | undefined, sep: string): string[] => (v ? v.split(sep).filter(Boolean) : [])
  return {
    ok: !failed,
    platforms: list(outputs.platforms, ','),
    emulators: list(outputs.emulators, ','),
    qemuVersion: outputs['qemu-version'] ?? null,
    method: outputs.method ?? null,
    cacheHit: outputs['cache-hit'] === 'true',
    sha256: list(outputs.sha256, '\n'),
    builder: outputs.builder || null,
  }
}

/** run: a new user namespace gets the emulators (install, with install-mode userns), then runs the command. */
export async function runCommand(parsed: Parsed): Promise<number> {
  let space: NewNamespace
  try {
    space = await NewNamespace.start(parsed.positional)
  } catch (e) {
    print(process.stderr, `setup-qemu-binfmt: ${errorMessage(e)}\n`)
    return RUN_FAILED
  }
  // The namespace is named to the engine as a user would name one: by its first process.
  const installed = await install(parsed, { ...process.env, [USERNS_PID_ENV]: String(space.ns.pid) }).catch(async e => {
    await space.abandon()
    throw e
  })
  if (installed !== 0) {
    await space.abandon()
    return RUN_FAILED
  }
  return space.go()
}
