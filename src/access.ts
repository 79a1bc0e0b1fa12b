import { BinfmtReader } from './binfmt'
import { dockerAccess } from './docker/daemon'
import { verifyInContainer, verifyInDaemon } from './docker/verify'
import { DockerWriter } from './docker/writer'
import { ActionError, errorMessage } from './errors'
import { InstallMode } from './inputs'
import { KernelWriter, directAccess } from './kernel'
import { ProcessRunner } from './process'
import { Registration } from './register'
import { MountRefused, UsernsWriter, usernsAccess } from './userns'
import { ProbeHost, ProbeResult, shellProbes, verifyRegistrations } from './verify'

export interface AccessLog {
  info(m: string): void
  debug(m: string): void
}

/**
 * The way to change binfmt_misc that `mode` allows: auto tries direct (root or
 * sudo -n) first, then Docker, then a rootless engine's user namespace; else
 * one error listing each way tried and why.
 */
export async function chooseWriter(
  mode: InstallMode,
  dockerImage: string,
  runner: ProcessRunner,
  log: AccessLog,
  doing = 'register emulators',
): Promise<KernelWriter> {
  const tried: string[] = []
  if (mode === 'auto' || mode === 'direct') {
    const direct = await directAccess(runner)
    if (direct.writer) {
      log.info(`Registering directly ${direct.writer.how}`)
      return direct.writer
    }
    tried.push(`direct: ${direct.reason}`)
    if (mode === 'auto') log.info(`Direct registration is not possible (${direct.reason}); trying Docker`)
  }
  if (mode === 'auto' || mode === 'docker') {
    const docker = await dockerAccess(runner, dockerImage, log)
    if (docker.writer) {
      log.info(`Registering ${docker.writer.how}`)
      return docker.writer
    }
    tried.push(`${docker.reason}`)
    if (mode === 'auto') log.info(`Registering through Docker is not possible (${docker.reason}); trying a rootless engine's user namespace`)
  }
  if (mode === 'auto' || mode === 'userns') {
    let userns
    try {
      // Under auto, nothing of Podman's is started: only a Podman already in use is chosen.
      userns = await usernsAccess(runner, mode === 'userns')
    } catch (e) {
      // Asked for by name, its own error says it best; under auto it is one reason among the others.
      if (mode === 'userns' || !(e instanceof ActionError)) throw e
      userns = { reason: `userns: ${e instanceof MountRefused ? e.reason : errorMessage(e)}` }
    }
    if (userns.writer) {
      log.info(`Registering ${userns.writer.how}: its processes and containers get the emulators; this runner's own processes do not`)
      return userns.writer
    }
    tried.push(`${userns.reason}`)
  }
  throw new ActionError(
    `cannot ${doing} (install-mode: ${mode}): ${tried.join('; ')}; ` +
      (mode === 'userns'
        ? `run rootless Docker (DOCKER_HOST at its socket) or rootless Podman, or name a process of a user namespace in SETUP_QEMU_BINFMT_USERNS_PID (Linux 6.7+)`
        : `run as root, allow passwordless sudo, give the runner access to a Docker daemon, or run rootless Docker or Podman on Linux 6.7+ (install-mode: userns)`),
  )
}

/** The table as `writer` sees it: the runner's own, a user namespace's, or, when the runner cannot see the one the daemon's containers change, as they saw it. */
export function readerFor(writer: KernelWriter): BinfmtReader {
  if (writer instanceof UsernsWriter) return writer.view
  return hiddenDocker(writer)?.view ?? new BinfmtReader()
}

/** The Docker writer when this runner cannot see the table its containers change (then containers also verify). */
export function hiddenDocker(writer: KernelWriter): DockerWriter | undefined {
  return writer instanceof DockerWriter && writer.hidden ? writer : undefined
}

/** Where test programs run to see what `writer`'s entries serve: inside its user namespace, else on this runner. */
export function probesFor(writer: KernelWriter, runner: ProcessRunner): ProbeHost {
  return shellProbes(writer instanceof UsernsWriter ? writer.probes : runner)
}

/** Whose processes `writer`'s entries serve, when not this runner's (for the summary). */
export function scopeOf(writer: KernelWriter): string | undefined {
  return writer instanceof UsernsWriter ? `${writer.ns.label}; this runner's own processes are not covered` : undefined
}

export type Verifier = (registrations: readonly Registration[], dir: string) => Promise<ProbeResult[]>

/**
 * How to prove the entries where they apply: on this runner; in a container of
 * a daemon whose table the runner cannot see; or inside a user namespace and
 * then in a container of the rootless engine that runs there.
 */
export function verifierFor(writer: KernelWriter, runner: ProcessRunner, dockerImage: string, log: AccessLog): Verifier {
  const hidden = hiddenDocker(writer)
  if (hidden) return (registrations, dir) => verifyInContainer(hidden, registrations, dir)
  if (!(writer instanceof UsernsWriter)) return (registrations, dir) => verifyRegistrations(registrations, new BinfmtReader(), dir, shellProbes(runner))
  return async (registrations, dir) => {
    const inside = await verifyRegistrations(registrations, writer.view, dir, shellProbes(writer.probes))
    const engine = writer.ns.engine
    if (!engine) return inside
    const passed = registrations.filter((_, i) => inside[i].ok)
    if (!passed.length) return inside
    const inContainer = await verifyInDaemon(runner, engine, dockerImage, log, passed, writer.view, dir)
    const byTarget = new Map(inContainer.map(p => [p.target.name, p]))
    return inside.map(p => {
      const c = byTarget.get(p.target.name)
      if (!c || c.ok) return p
      return { ...c, detail: `in a container of the engine in ${writer.ns.label}: ${c.detail}` }
    })
  }
}
