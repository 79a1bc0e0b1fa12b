import { spawnSync } from 'child_process'
import { randomBytes } from 'crypto'
import { RunResult, cleanUpOnSignal, describeRun } from '../process'
import { CONTAINER_MS, DOCKER_ANSWER_MS } from '../timeouts'
import { Docker, EngineCli } from './command'

/** Every container this action creates carries it, so that one left behind can be recognised. */
export const CONTAINER_LABEL = 'setup-qemu-binfmt'

/**
 * Removes the container when the action is cancelled while it exists (the runner
 * sends SIGINT, then SIGTERM), then lets the signal take its course.
 */
function removeOnSignal(id: string, engine: EngineCli): () => void {
  return cleanUpOnSignal(() => removeNow(id, engine))
}

/** Removes a container at once, whatever the run's cancellation: the engine's own CLI, not the cancellable runner. */
function removeNow(id: string, engine: EngineCli): void {
  // With the engine's own CLI and environment (rootless Docker's socket; Podman, whose containers `docker` cannot see);
  // Podman's rm -f would first wait 10 s for the container to stop, docker's kills it at once.
  const args = engine.cli === 'podman' ? ['rm', '-f', '-t', '0', id] : ['rm', '-f', id]
  spawnSync(engine.cli, args, { stdio: 'ignore', timeout: DOCKER_ANSWER_MS, env: { ...process.env, ...engine.env } })
}

/**
 * One container: `docker create` (auto-removed), `docker cp -` of `archive`,
 * `docker start -a`, and always `docker rm -f`. Nothing is bind-mounted, so the
 * daemon need not share the runner's file system.
 */
export async function runContainer(
  docker: Docker,
  createArgs: readonly string[],
  archive: Buffer | undefined,
  /** false for a container that changes binfmt_misc: killed halfway (say, a rollback on the runner's second signal) it would leave unverified entries */
  removeOnCancel = true,
): Promise<RunResult> {
  // Named up front: a create cut short (cancelled, timed out) may still leave the container, and it has no id yet.
  const name = `${CONTAINER_LABEL}-${process.pid}-${randomBytes(6).toString('hex')}`
  let created: RunResult
  try {
    created = await docker.run(['create', '--rm', '--label', CONTAINER_LABEL, '--network', 'none', '--name', name, ...createArgs], {
      timeoutMs: DOCKER_ANSWER_MS,
    })
  } catch (e) {
    removeNow(name, docker.engine)
    throw e
  }
  if (created.code !== 0) {
    if (created.timedOut || created.signal) await docker.run(['rm', '-f', name], { timeoutMs: DOCKER_ANSWER_MS }).catch(() => undefined)
    throw new Error(`docker create ${describeRun(created, DOCKER_ANSWER_MS)}`)
  }
  // docker create prints the container's id last.
  const id = created.stdout.trim().split('\n').pop() ?? ''
  const off = removeOnCancel ? removeOnSignal(id, docker.engine) : () => undefined
  try {
    if (archive) {
      const cp = await docker.run(['cp', '-', `${id}:/`], { input: archive, timeoutMs: CONTAINER_MS })
      if (cp.code !== 0) throw new Error(`docker cp into the container ${describeRun(cp, CONTAINER_MS)}`)
    }
    return await docker.run(['start', '-a', id], { timeoutMs: CONTAINER_MS })
  } finally {
    // Already gone when it ran (--rm); this is for the other ways out.
    await docker.run(['rm', '-f', id], { timeoutMs: DOCKER_ANSWER_MS }).catch(() => undefined)
    off()
  }
}
