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

/**
 * One way into binfmt_misc, with everything that follows from it: the writer,
 * the table as that way sees it, where test programs run, how entries are
 * proven, and whose processes they serve. Made once by `accessVia`; the only
 * place that tells the kinds of writer apart.
 */
export interface Access {
  readonly writer: KernelWriter
  /** the table as the writer sees it: the runner's own, a user namespace's, or as the daemon's containers saw it */
  readonly reader: BinfmtReader
  /** set when this runner cannot see the table the daemon's containers change (containers then also verify) */
  readonly hidden: boolean
  /** where test programs run to see what the entries serve: inside a user namespace, else on this runner */
  readonly probes: ProbeHost
  /** proves entries where they apply */
  readonly verify: Verifier
  /** whose processes the entries serve, when not this runner's (for the summary) */
  readonly scope?: string
}

export type Verifier = (registrations: readonly Registration[], dir: string) => Promise<ProbeResult[]>

/** The table as `writer` sees it (for steps that only change entries: the post step, the command's uninstall). */
export function readerFor(writer: KernelWriter): BinfmtReader {
  return writer instanceof UsernsWriter || (writer instanceof DockerWriter && writer.hidden) ? writer.view : new BinfmtReader()
}

/** Everything that follows from `writer`; `runner` runs this runner's programs, `dockerImage` is the image for verification containers. */
export function accessVia(writer: KernelWriter, runner: ProcessRunner, dockerImage: string, log: AccessLog): Access {
  if (writer instanceof UsernsWriter) {
    const probes = shellProbes(writer.probes)
    return {
      writer,
      reader: writer.view,
      hidden: false,
      probes,
      verify: usernsVerifier(writer, probes, runner, dockerImage, log),
      scope: `${writer.ns.label}; this runner's own processes are not covered`,
    }
  }
  const probes = shellProbes(runner)
  const reader = readerFor(writer)
  if (writer instanceof DockerWriter && writer.hidden) {
    return { writer, reader, hidden: true, probes, verify: (registrations, dir) => verifyInContainer(writer, registrations, dir) }
  }
  return { writer, reader, hidden: false, probes, verify: (registrations, dir) => verifyRegistrations(registrations, reader, dir, probes) }
}

/**
 * Inside the user namespace, then in a container of the rootless engine that
 * runs there (the proof that its containers get the entries).
 */
function usernsVerifier(writer: UsernsWriter, probes: ProbeHost, runner: ProcessRunner, dockerImage: string, log: AccessLog): Verifier {
  return async (registrations, dir) => {
    const inside = await verifyRegistrations(registrations, writer.view, dir, probes)
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
