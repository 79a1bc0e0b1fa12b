// How long each kind of program this action runs may take before it counts as
// stuck and is killed (with everything it started). One place, so that the
// bounds can be read side by side.

const SECOND = 1000
const MINUTE = 60 * SECOND

/** Any program whose caller names no bound. */
export const PROGRAM_MS = 5 * MINUTE
/** `sudo -n true`: sudo answers at once or not at all. */
export const SUDO_CHECK_MS = 10 * SECOND
/** A test program runs in milliseconds. */
export const PROBE_MS = 20 * SECOND
/** A docker command that only asks the daemon something or changes its bookkeeping (version, image inspect, create, rm). */
export const DOCKER_ANSWER_MS = 20 * SECOND
/** Entering a user namespace to mount its binfmt_misc; `podman unshare true`, which may start Podman's pause process. */
export const USERNS_MS = 20 * SECOND
/** `docker pull` of the registering image. */
export const DOCKER_PULL_MS = 5 * MINUTE
/** `docker cp` into a container, and the container's whole run. */
export const CONTAINER_MS = 2 * MINUTE
/** docker buildx: bookkeeping or one RPC; creating (or removing) a builder; booting it, which pulls moby/buildkit. */
export const BUILDX_MS = { quick: MINUTE, create: 5 * MINUTE, bootstrap: 15 * MINUTE } as const
/** The host lock where no lock-timeout input sets it: the post step and the command. */
export const LOCK_WAIT_MS = 5 * MINUTE

/** Waits `ms`, or less if `cancel` fires first; never rejects (a caller that must stop checks the signal after). */
export function pause(ms: number, cancel?: AbortSignal): Promise<void> {
  // Aborted already: its abort event has fired and will not again.
  if (cancel?.aborted) return Promise.resolve()
  return new Promise(resolve => {
    const t = setTimeout(done, ms)
    function done(): void {
      clearTimeout(t)
      cancel?.removeEventListener('abort', done)
      resolve()
    }
    cancel?.addEventListener('abort', done, { once: true })
  })
}

/** After SIGINT/SIGTERM, how long the clean-up may take before the process exits regardless. */
export const CANCEL_GRACE_MS = 3 * SECOND
