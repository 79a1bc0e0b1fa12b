import { BinfmtReader } from '../binfmt'
import { dockerAccess } from './docker/daemon'
import { verifyInContainer, verifyInDaemon } from './docker/verify'
import { DockerWriter } from './docker/writer'
import { ActionError, errorMessage } from '../errors'
import { InstallMode } from '../inputs'
import { KernelWriter, directAccess } from '../kernel'
import { Log } from '../log'
import { ProcessRunner } from '../process'
import { Registration } from '../register'
import { MountRefused, UsernsWriter, usernsAccess } from './userns'
import { ProbeHost, ProbeResult, shellProbes, verifyRegistrations } from '../verify'

/**
 * One way into binfmt_misc, with everything that follows from it: the writer,
 * the table as that way sees it, where test programs run, how entries are
 * proven, and whose processes they serve. Each way makes its own (directWay,
 * dockerWay, usernsWay): nothing else tells the kinds of writer apart.
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

/** What the ways in need besides the mode. */
export interface AccessRequest {
  readonly mode: InstallMode
  /** the image of registering and verifying containers */
  readonly dockerImage: string
  /** runs the programs that change the kernel: never cancelled, so that a rollback can finish */
  readonly writes: ProcessRunner
  /** runs test programs and containers: stops on cancellation */
  readonly runs: ProcessRunner
  /** where rootless engines and SETUP_QEMU_BINFMT_USERNS_PID are looked up */
  readonly env: NodeJS.ProcessEnv
  readonly log: Pick<Log, 'info' | 'debug'>
  /** for the error: what could not be done */
  readonly doing?: string
}

/** This runner's own table, changed as root or through sudo -n. */
function directWay(writer: KernelWriter, runs: ProcessRunner): Access {
  const reader = new BinfmtReader()
  const probes = shellProbes(runs)
  return { writer, reader, hidden: false, probes, verify: (registrations, dir) => verifyRegistrations(registrations, reader, dir, probes) }
}

/** The daemon's host table, through privileged containers; proven in containers when this runner cannot see it. */
function dockerWay(writer: DockerWriter, runs: ProcessRunner): Access {
  if (!writer.hidden) return { ...directWay(writer, runs), writer }
  return { writer, reader: writer.view, hidden: true, probes: shellProbes(runs), verify: (registrations, dir) => verifyInContainer(writer, registrations, dir) }
}

/**
 * A user namespace's own table: proven inside it, then in a container of the rootless
 * engine that runs there (the proof that its containers get the entries).
 */
function usernsWay(writer: UsernsWriter, runs: ProcessRunner, dockerImage: string, log: Pick<Log, 'info' | 'debug'>): Access {
  const probes = shellProbes(writer.probes)
  const verify: Verifier = async (registrations, dir) => {
    const inside = await verifyRegistrations(registrations, writer.view, dir, probes)
    const engine = writer.ns.engine
    if (!engine) return inside
    const passed = registrations.filter((_, i) => inside[i].ok)
    if (!passed.length) return inside
    const inContainer = await verifyInDaemon(runs, engine, dockerImage, log, passed, writer.view, dir)
    const byTarget = new Map(inContainer.map(p => [p.target.name, p]))
    return inside.map(p => {
      const c = byTarget.get(p.target.name)
      if (!c || c.ok) return p
      return { ...c, detail: `in a container of the engine in ${writer.ns.label}: ${c.detail}` }
    })
  }
  return { writer, reader: writer.view, hidden: false, probes, verify, scope: `${writer.ns.label}; this runner's own processes are not covered` }
}

/**
 * The way to change binfmt_misc that `mode` allows: auto tries direct (root or
 * sudo -n) first, then Docker, then a rootless engine's user namespace; else
 * one error listing each way tried and why.
 */
export async function chooseAccess(req: AccessRequest): Promise<Access> {
  const { mode, log } = req
  const tried: string[] = []
  if (mode === 'auto' || mode === 'direct') {
    const direct = await directAccess(req.writes)
    if (direct.writer) {
      log.info(`Registering directly ${direct.writer.how}`)
      return directWay(direct.writer, req.runs)
    }
    tried.push(`direct: ${direct.reason}`)
    if (mode === 'auto') log.info(`Direct registration is not possible (${direct.reason}); trying Docker`)
  }
  if (mode === 'auto' || mode === 'docker') {
    const docker = await dockerAccess(req.writes, req.dockerImage, log)
    if (docker.writer) {
      log.info(`Registering ${docker.writer.how}`)
      return dockerWay(docker.writer, req.runs)
    }
    tried.push(`${docker.reason}`)
    if (mode === 'auto') log.info(`Registering through Docker is not possible (${docker.reason}); trying a rootless engine's user namespace`)
  }
  if (mode === 'auto' || mode === 'userns') {
    let userns
    try {
      // Under auto, nothing of Podman's is started: only a Podman already in use is chosen.
      userns = await usernsAccess(req.writes, mode === 'userns', req.env)
    } catch (e) {
      // Asked for by name, its own error says it best; under auto it is one reason among the others.
      if (mode === 'userns' || !(e instanceof ActionError)) throw e
      userns = { reason: `userns: ${e instanceof MountRefused ? e.reason : errorMessage(e)}` }
    }
    if (userns.writer) {
      log.info(`Registering ${userns.writer.how}: its processes and containers get the emulators; this runner's own processes do not`)
      return usernsWay(userns.writer, req.runs, req.dockerImage, log)
    }
    tried.push(`${userns.reason}`)
  }
  throw new ActionError(
    `cannot ${req.doing ?? 'register emulators'} (install-mode: ${mode}): ${tried.join('; ')}; ` +
      (mode === 'userns'
        ? `run rootless Docker (DOCKER_HOST at its socket) or rootless Podman, or name a process of a user namespace in SETUP_QEMU_BINFMT_USERNS_PID (Linux 6.7+)`
        : `run as root, allow passwordless sudo, give the runner access to a Docker daemon, or run rootless Docker or Podman on Linux 6.7+ (install-mode: userns)`),
  )
}

/**
 * The way a main step used, again (for the post step, which puts its entries back): only that one, since
 * its entries are in that way's table. Throws when it is not possible any more.
 */
export async function accessAgain(
  method: KernelWriter['method'],
  dockerImage: string,
  runner: ProcessRunner,
  env: NodeJS.ProcessEnv,
  log: Pick<Log, 'info' | 'debug'>,
): Promise<Access> {
  const gone = (reason?: string): Error => new Error(`cannot change binfmt_misc any more (${reason})`)
  if (method === 'docker') {
    const docker = await dockerAccess(runner, dockerImage, log)
    if (!docker.writer) throw gone(docker.reason)
    return dockerWay(docker.writer, runner)
  }
  if (method === 'userns') {
    const userns = await usernsAccess(runner, false, env)
    if (!userns.writer) throw gone(userns.reason)
    return usernsWay(userns.writer, runner, dockerImage, log)
  }
  const direct = await directAccess(runner)
  if (!direct.writer) throw gone(direct.reason)
  return directWay(direct.writer, runner)
}
