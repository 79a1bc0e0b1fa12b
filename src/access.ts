import { BinfmtReader } from './binfmt'
import { dockerAccess } from './docker/daemon'
import { DockerWriter } from './docker/writer'
import { ActionError } from './errors'
import { InstallMode } from './inputs'
import { KernelWriter, directAccess } from './kernel'
import { ProcessRunner } from './process'

export interface AccessLog {
  info(m: string): void
  debug(m: string): void
}

/**
 * The way to change binfmt_misc that `mode` allows: auto tries direct (root or
 * sudo -n) first, then Docker; else one error listing each way tried and why.
 */
export async function chooseWriter(
  mode: InstallMode,
  dockerImage: string,
  runner: ProcessRunner,
  log: AccessLog,
  doing = 'register emulators',
): Promise<KernelWriter> {
  const tried: string[] = []
  if (mode !== 'docker') {
    const direct = await directAccess(runner)
    if (direct.writer) {
      log.info(`Registering directly ${direct.writer.how}`)
      return direct.writer
    }
    tried.push(`direct: ${direct.reason}`)
    if (mode === 'auto') log.info(`Direct registration is not possible (${direct.reason}); trying Docker`)
  }
  if (mode !== 'direct') {
    const docker = await dockerAccess(runner, dockerImage, log)
    if (docker.writer) {
      log.info(`Registering ${docker.writer.how}`)
      return docker.writer
    }
    tried.push(`${docker.reason}`)
  }
  throw new ActionError(
    `cannot ${doing} (install-mode: ${mode}): ${tried.join('; ')}; ` +
      `run as root, allow passwordless sudo, or give the runner access to a Docker daemon`,
  )
}

/** The table as `writer` sees it: the runner's own, or, when the runner cannot see the one the daemon's containers change, as they saw it. */
export function readerFor(writer: KernelWriter): BinfmtReader {
  return hiddenDocker(writer)?.view ?? new BinfmtReader()
}

/** The Docker writer when this runner cannot see the table its containers change (then containers also verify). */
export function hiddenDocker(writer: KernelWriter): DockerWriter | undefined {
  return writer instanceof DockerWriter && writer.hidden ? writer : undefined
}
