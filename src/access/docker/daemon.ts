import * as fs from 'fs'
import * as path from 'path'
import { BINFMT_ROOT } from '../../binfmt'
import { errorMessage, readOr } from '../../errors'
import { ProcessRunner, describeRun, failureReason } from '../../process'
import { DOCKER_ANSWER_MS, DOCKER_PULL_MS } from '../../timeouts'
import { Docker, DockerLog } from '../../docker/command'
import { ContainerTable, DockerWriter } from './writer'

// Before anything is planned: does the daemon answer, run this runner's
// architecture, have the image, and can its privileged containers reach the
// host's binfmt_misc; and does this runner see the table they change.

/** The inode number of the initial user namespace (PROC_USER_INIT_INO), as readlink shows it. */
export const INIT_USER_NS = 'user:[4026531837]'

/** What this runner's own process sees of the kernel. */
export interface RunnerNamespace {
  readonly bootId?: string
  readonly userns?: string
  readonly binfmtMounted: boolean
}

function runnerNamespace(): RunnerNamespace {
  return {
    bootId: readOr(() => fs.readFileSync('/proc/sys/kernel/random/boot_id', 'utf8'), undefined)?.trim(),
    userns: readOr(() => fs.readlinkSync('/proc/self/ns/user'), undefined),
    binfmtMounted: fs.existsSync(path.join(BINFMT_ROOT, 'register')),
  }
}

/** Why the runner does not see the table `table` came from, or undefined when it does. */
export function hiddenFromRunner(table: ContainerTable, self: RunnerNamespace): string | undefined {
  if (table.bootId && self.bootId && table.bootId !== self.bootId) {
    return 'the Docker daemon runs on another kernel than this runner (a remote DOCKER_HOST or a VM)'
  }
  if (!self.binfmtMounted) return `binfmt_misc is not mounted in this runner's namespace (${BINFMT_ROOT} is empty)`
  if (self.userns && self.userns !== INIT_USER_NS) {
    return `this runner runs in a user namespace (${self.userns}), which may have a binfmt_misc of its own`
  }
  return undefined
}

/** Go's names for Node's architectures, as `docker version` prints the daemon's. */
const GO_ARCH: Readonly<Record<string, string>> = {
  x64: 'amd64',
  arm64: 'arm64',
  ia32: '386',
  arm: 'arm',
  ppc64: 'ppc64le',
  s390x: 's390x',
  riscv64: 'riscv64',
}

/** The daemon answers, runs Linux containers on this runner's architecture; else throws why not. */
async function checkDaemon(docker: Docker, log: DockerLog, nodeArch: string): Promise<void> {
  const r = await docker.run(['version', '--format', '{{.Server.Os}}/{{.Server.Arch}} {{.Server.Version}}'], { timeoutMs: DOCKER_ANSWER_MS })
  if (r.signal) throw new Error(`the daemon did not answer within ${DOCKER_ANSWER_MS / 1000} s`)
  if (r.code !== 0) {
    const denied = /permission denied while trying to connect to the Docker daemon socket at (\S+?):\s/i.exec(r.stderr)
    if (denied) throw new Error(`permission denied on the daemon's socket ${denied[1]} (is the user in the docker group?)`)
    const down = /Cannot connect to the Docker daemon at (\S+?)\.?\s+Is the docker daemon running/i.exec(r.stderr)
    if (down) throw new Error(`cannot connect to the daemon at ${down[1]} (is it running?)`)
    throw new Error(`docker version ${describeRun(r, DOCKER_ANSWER_MS)}`)
  }
  const [platform, version] = r.stdout.trim().split(' ')
  const [daemonOs, daemonArch] = platform.split('/')
  if (daemonOs !== 'linux') throw new Error(`the daemon runs ${daemonOs} containers, not Linux ones`)
  const mine = GO_ARCH[nodeArch]
  if (mine && daemonArch !== mine) throw new Error(`the daemon runs on ${daemonArch}, this runner on ${mine}: its emulators would not run there`)
  log.info(`Docker daemon ${version} (${platform})`)
}

/** The image is on the daemon, pulled when it is not; else throws why not. */
export async function ensureImage(docker: Docker, image: string, log: DockerLog): Promise<void> {
  const have = await docker.run(['image', 'inspect', '--format', '{{.Id}}', image], { timeoutMs: DOCKER_ANSWER_MS })
  if (have.code === 0) return
  if (!/no such image/i.test(have.stderr)) throw new Error(`docker image inspect ${image} ${describeRun(have, DOCKER_ANSWER_MS)}`)
  log.info(`Pulling ${image}`)
  const pull = await docker.run(['pull', image], { timeoutMs: DOCKER_PULL_MS })
  if (pull.code !== 0 || pull.signal) {
    throw new Error(
      `image ${image} is not on the daemon and pulling it failed (${failureReason(pull, DOCKER_PULL_MS)}); ` +
        `set docker-image to an image the daemon has or can pull`,
    )
  }
}

/**
 * The fallback path: a KernelWriter that registers through `docker create --privileged`
 * with `image`, or the reason it cannot. Tries it for real: one privileged
 * container mounts binfmt_misc and reads the table before anything is planned.
 */
export async function dockerAccess(
  runner: ProcessRunner,
  image: string,
  log: DockerLog,
  self: RunnerNamespace = runnerNamespace(),
  nodeArch: string = process.arch,
): Promise<{ readonly writer?: DockerWriter; readonly reason?: string }> {
  const docker = new Docker(runner, log)
  try {
    await checkDaemon(docker, log, nodeArch)
    await ensureImage(docker, image, log)
    const writer = new DockerWriter(docker, image)
    let table: ContainerTable
    try {
      table = await writer.run([])
    } catch (e) {
      throw new Error(`a privileged container cannot use binfmt_misc: ${errorMessage(e)}`)
    }
    if (table.userns && table.userns !== INIT_USER_NS) {
      throw new Error(
        `the daemon's containers run in a user namespace (${table.userns}; rootless Docker or userns-remap), ` +
          `where binfmt_misc entries do not reach the host and go with the container`,
      )
    }
    writer.hidden = hiddenFromRunner(table, self)
    if (writer.hidden) {
      log.info(
        `This runner cannot see the entries the daemon's containers register: ${writer.hidden}. They are read and verified in containers of the daemon instead.`,
      )
    }
    return { writer }
  } catch (e) {
    return { reason: `docker: ${errorMessage(e)}` }
  }
}
