import { Log } from '../log'
import { ProcessRunner, RunResult } from '../process'

/** The CLI that talks to a container engine, and the environment that points it at the engine. */
export interface EngineCli {
  /** podman takes the same commands */
  readonly cli: 'docker' | 'podman'
  readonly env?: Readonly<Record<string, string>>
  /** the buildx plugin, run directly (standalone) for `buildx ...` commands instead of through docker (findBuildxPlugin) */
  readonly buildx?: string
}

/** What docker commands say: the command lines they run. */
export type DockerLog = Pick<Log, 'info' | 'debug'>

interface DockerRunOptions {
  readonly timeoutMs: number
  /** written to docker's stdin */
  readonly input?: Buffer
  /** log the command line at info level (a step the user waits for), not debug */
  readonly loud?: boolean
}

/** The docker command line as a shell would take it; a script argument (several lines) is shown as <script>. */
export function commandLine(args: readonly string[], cli = 'docker'): string {
  const shown = args.map(a => (a.includes('\n') ? '<script>' : /^[A-Za-z0-9_./:=,@%+-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`))
  return [cli, ...shown].join(' ')
}

/** No docker command on PATH; `code` stays ENOENT. */
class DockerMissing extends Error {
  readonly code = 'ENOENT'
  constructor(cli: string) {
    super(`not installed (no ${cli} command on PATH)`)
  }
}

/**
 * Every docker command goes through here: the ProcessRunner, the command line
 * logged (a step the user waits for as the toolkit's exec shows it,
 * `[command]docker ...`; the rest at debug level), a failure's output at debug level.
 */
export class Docker {
  constructor(
    private readonly runner: ProcessRunner,
    private readonly log: DockerLog,
    readonly engine: EngineCli = { cli: 'docker' },
  ) {}

  async run(args: readonly string[], options: DockerRunOptions): Promise<RunResult> {
    const [program, argv] = this.engine.buildx && args[0] === 'buildx' ? [this.engine.buildx, args.slice(1)] : [this.engine.cli, args]
    // What runs, as it runs: a buildx run standalone is shown as such.
    const line = commandLine(argv, program)
    if (options.loud) this.log.info(`[command]${line}`)
    else this.log.debug(line)
    let r: RunResult
    try {
      r = await this.runner.run(program, argv, { timeoutMs: options.timeoutMs, input: options.input, env: this.engine.env })
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT' && program === this.engine.cli) throw new DockerMissing(this.engine.cli)
      throw e
    }
    if (r.code !== 0) this.log.debug(`${line} -> ${r.code ?? r.signal}: ${r.stderr.trim()}`)
    return r
  }
}
