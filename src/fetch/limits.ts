import * as path from 'path'
import { ActionError, errorMessage } from '../errors'

/**
 * Sizes nothing legitimate comes near (a static QEMU emulator is 5-30 MB, a
 * release archive of all of them under 200 MB, Debian's package 371 MB
 * unpacked): beyond them, an archive or server is refused before the bytes
 * reach the disk.
 */
export interface SizeLimits {
  /** one downloaded file */
  readonly download: number
  /** one emulator (an archive member, counted at its declared, for sparse members full, size) */
  readonly emulator: number
  /** everything an archive declares, members we skip included */
  readonly archive: number
}

const MiB = 1024 * 1024
export const DEFAULT_LIMITS: SizeLimits = { download: 1024 * MiB, emulator: 256 * MiB, archive: 4096 * MiB }

/** ENOSPC and friends as a user reads them: which directory is full. */
export function diskError(e: unknown, file: string): Error {
  const code = (e as NodeJS.ErrnoException).code
  const dir = path.dirname(file)
  if (code === 'ENOSPC' || code === 'EDQUOT') {
    return new ActionError(`the disk holding ${dir} is full (${code}); free some space or point RUNNER_TEMP / RUNNER_TOOL_CACHE elsewhere`)
  }
  if (code === 'EROFS' || code === 'EACCES' || code === 'EPERM') {
    return new ActionError(
      `cannot write in ${dir} (${code}: ${code === 'EROFS' ? 'read-only file system' : 'permission denied'}); make it writable for this user or point RUNNER_TOOL_CACHE / RUNNER_TEMP at a writable directory`,
    )
  }
  return e instanceof Error ? e : new Error(errorMessage(e))
}

export function throwIfAborted(signal?: AbortSignal): void {
  if (signal?.aborted) throw signal.reason ?? new Error('aborted')
}

/**
 * Runs jobs side by side; the first to fail aborts `stop` (so the others end early) and is what this rejects with,
 * but only once every job has settled: a sibling still writing must not race its caller's clean-up.
 */
export async function settleAll<T>(jobs: readonly Promise<T>[], stop: AbortController): Promise<T[]> {
  let first: { error: unknown } | undefined
  const settled = await Promise.allSettled(
    jobs.map(j =>
      j.catch((e: unknown) => {
        first ??= { error: e }
        stop.abort(e)
        throw e
      }),
    ),
  )
  if (first) throw first.error
  return settled.map(s => (s as PromiseFulfilledResult<T>).value)
}
