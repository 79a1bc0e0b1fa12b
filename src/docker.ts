import { DirectAccess } from './kernel'
import { ProcessRunner } from './process'

export interface DockerLog {
  info(m: string): void
  debug(m: string): void
}

/**
 * The fallback path: a KernelWriter that registers through `docker run --privileged`
 * with `image`, or the reason it cannot.
 */
export async function dockerAccess(_runner: ProcessRunner, _image: string, _log: DockerLog): Promise<DirectAccess> {
  return { reason: 'docker: the Docker path is not implemented yet' }
}
