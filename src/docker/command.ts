import { ProcessRunner, RunResult } from '../process'

export interface DockerLog {
  info(m: string): void
  debug(m: string): void
}

interface DockerRunOptions {
  readonly timeoutMs: number
  /** written to docker's stdin */
  readonly input?: Buffer
  /** log the command line at info level (a step the user waits for), not debug */
  readonly loud?: boolean
}

/** The docker command line as a shell would take it; a script argument (several lines) is shown as <script>. */
export function commandLine(args: readonly string[]): string {
  const shown = args.map(a => (a.includes('\n') ? '<script>' : /^[A-Za-z0-9_./:=,@%+-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`))
  return ['docker', ...shown].join(' ')
}

/** No docker command on PATH; `code` stays ENOENT. */
class DockerMissing extends Error {
  readonly code = 'ENOENT'
  constructor() {
    super('not installed (no docker command on PATH)')
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
  ) {}

  async run(args: readonly string[], options: DockerRunOptions): Promise<RunResult> {
    const line = commandLine(args)
    if (options.loud) this.log.info(`[command]${line}`)
    else this.log.debug(line)
    let r: RunResult
    try {
      r = await this.runner.run('docker', args, { timeoutMs: options.timeoutMs, input: options.input })
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw new DockerMissing()
      throw e
    }
    if (r.code !== 0) this.log.debug(`${line} -> ${r.code ?? r.signal}: ${r.stderr.trim()}`)
    return r
  }
}
