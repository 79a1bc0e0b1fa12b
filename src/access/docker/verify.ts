import * as fs from 'fs'
import * as path from 'path'
import { ActionError } from '../../errors'
import { writeTar } from '../../fetch/tar'
import { ProcessRunner, describeRun } from '../../process'
import { Registration } from '../../register'
import { CONTAINER_MS } from '../../timeouts'
import { PROBE_SCRIPT, ProbeHost, ProbeResult, parseProbes, verifyRegistrations } from '../../verify'
import { BinfmtReader } from '../../binfmt'
import { Docker, DockerLog, EngineCli } from '../../docker/command'
import { runContainer } from '../../docker/container'
import { ensureImage } from './daemon'
import { DockerWriter } from './writer'

// Verification for a runner that cannot see the table the daemon's containers
// change: the test programs run in an ordinary container of the same daemon.

const PROBE_DIR = '/setup-qemu-binfmt-probes'

/** Test programs run in one ordinary container of the writer's daemon: what running them on the runner would give. */
function containerProbes(writer: DockerWriter): ProbeHost {
  return {
    async runAll(dir, names) {
      const archive = writeTar(names.map(n => ({ name: `${PROBE_DIR.slice(1)}/${n}`, data: fs.readFileSync(path.join(dir, n)), mode: 0o755 })))
      const r = await runContainer(writer.docker, [writer.image, 'sh', '-c', PROBE_SCRIPT, 'sh', PROBE_DIR, ...names], archive)
      if (r.code !== 0 || r.signal) throw new ActionError(`the verification container (${writer.image}) ${describeRun(r, CONTAINER_MS)}`)
      return parseProbes(r.stdout, names)
    },
  }
}

/**
 * verifyRegistrations for a runner that cannot see the table the daemon's
 * containers change (writer.hidden): the entries are checked as the registering
 * container left them, the test programs run in one container of the same daemon.
 */
export function verifyInContainer(writer: DockerWriter, registrations: readonly Registration[], dir: string): Promise<ProbeResult[]> {
  return probeInContainer(writer, registrations, writer.view, dir)
}

function probeInContainer(writer: DockerWriter, registrations: readonly Registration[], reader: BinfmtReader, dir: string): Promise<ProbeResult[]> {
  return verifyRegistrations(registrations, reader, dir, containerProbes(writer))
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
