// The engine's clean-up after a run (the action's post step): saves downloaded emulators to the
// Actions cache, removes the builder the run created and, when asked, the entries it registered.
// Nothing here fails: problems are warnings, since the job's own work is done by now.
import { Access, accessAgain } from './access'
import { BinfmtEntry, EntrySpec, specOf } from './binfmt'
import { cleanupBuilder } from './buildx/builder'
import { BuilderState } from './buildx/types'
import { errorMessage } from './errors'
import { PendingSave, saveEntry } from './fetch/actions-cache'
import { KernelOp, KernelWriter } from './kernel'
import { HostLock } from './lock'
import { Log } from './log'
import { ChildProcessRunner } from './process'
import { isQemuEntry, stagingName } from './register'
import { LOCK_WAIT_MS } from './timeouts'
import { JobId, UsageRecords, tableOf } from './job-records'

/** What `uninstall: true` undoes: the entries the run added or replaced. */
export interface UninstallState {
  readonly method: KernelWriter['method']
  readonly dockerImage: string
  /** the job these entries were recorded for */
  readonly job?: JobId
  readonly entries: readonly UninstallEntry[]
}

interface UninstallEntry {
  readonly spec: EntrySpec
  /** the entry of the same name the run replaced */
  readonly previous?: BinfmtEntry
}

/** What the run handed over (see setup's Handoff); each part is undefined when the run made none of it. */
export interface Handed {
  readonly cacheSave?: PendingSave
  readonly builder?: BuilderState
  /** only given when the clean-up's own input asks for uninstall: saved state alone never changes the kernel */
  readonly uninstall?: UninstallState
}

export async function teardown(handed: Handed, env: NodeJS.ProcessEnv, log: Log): Promise<void> {
  if (handed.cacheSave) await saveEntry(handed.cacheSave, log)
  try {
    if (handed.builder) await cleanupBuilder(handed.builder, new ChildProcessRunner(), log)
    else log.debug('post: no builder to clean up')
  } catch (e) {
    log.warning(`post: builder cleanup failed: ${errorMessage(e)}`)
  }
  if (!handed.uninstall) return
  try {
    await uninstallEntries(handed.uninstall, env, log)
  } catch (e) {
    log.warning(`uninstall: ${errorMessage(e)}; the entries stay registered`)
  }
}

/**
 * Removes the entries the run added and puts back the ones it replaced,
 * except those another live job on this host still uses, and those someone
 * changed since. A replaced entry that cannot be put back (its interpreter is
 * gone) is left as the run made it: a working entry beats none.
 */
async function uninstallEntries(state: UninstallState, env: NodeJS.ProcessEnv, log: Log): Promise<void> {
  const access = await accessAgain(state.method, state.dockerImage, new ChildProcessRunner(), env, log)
  const records = new UsageRecords(tableOf(access.reader.root))
  const lock = await HostLock.acquire({ timeoutMs: LOCK_WAIT_MS, log: log.info })
  try {
    for (const entry of state.entries) {
      if (keep(entry, access, records, state.job, log)) continue
      if (entry.previous) await putBack(entry.spec, entry.previous, access.writer, log)
      else {
        await access.writer.apply([{ kind: 'remove', name: entry.spec.name }])
        log.info(`uninstall: removed ${entry.spec.name}`)
      }
    }
    if (state.job && !records.problem()) records.remove(state.job)
  } finally {
    await lock.release()
  }
}

/** Whether an entry stays as it is, and why (logged): not ours to touch, used by a live job, gone, or changed since. */
function keep({ spec, previous }: UninstallEntry, access: Access, records: UsageRecords, job: JobId | undefined, log: Log): boolean {
  // Only ever qemu-* entries, and an entry is only ever put back under its own name.
  if (!isQemuEntry(spec.name) || (previous && previous.name !== spec.name)) {
    log.warning(`uninstall: ignoring a saved entry that is not a qemu-* entry of its own name (${spec.name})`)
    return true
  }
  let users
  try {
    users = records.users(spec.name, job)
  } catch (e) {
    // Records that cannot be trusted could hide a live job (or one that could not write its record): keep.
    log.warning(`uninstall: ${spec.name} kept: which jobs use it cannot be told (${errorMessage(e)})`)
    return true
  }
  if (users.length) {
    log.info(`uninstall: ${spec.name} kept: still used by the running job of process ${users.map(u => u.pid).join(', ')}`)
    return true
  }
  const now = access.reader.read(spec.name)
  if (!now) {
    log.info(`uninstall: ${spec.name} is already gone`)
    return true
  }
  if (now.interpreter !== spec.interpreter) {
    log.info(`uninstall: ${spec.name} kept: it was changed since this step (interpreter ${now.interpreter})`)
    return true
  }
  return false
}

/** The replaced entry comes back beside ours first: if the kernel refuses it, ours stays. */
async function putBack(spec: EntrySpec, previous: BinfmtEntry, writer: KernelWriter, log: Log): Promise<void> {
  const staged = stagingName(previous.name)
  const old = specOf(previous)
  try {
    await writer.apply([{ kind: 'register', spec: { ...old, name: staged } }])
  } catch (e) {
    log.warning(`uninstall: ${spec.name} kept: the entry it replaced cannot be put back (${errorMessage(e)})`)
    return
  }
  const ops: KernelOp[] = [
    { kind: 'remove', name: spec.name },
    { kind: 'register', spec: old },
    ...(previous.enabled ? [] : [{ kind: 'disable' as const, name: previous.name }]),
    { kind: 'remove', name: staged },
  ]
  await writer.apply(ops)
  log.info(
    `uninstall: put back ${previous.name} (interpreter ${previous.interpreter}, flags ${previous.flags || 'none'}${previous.enabled ? '' : ', disabled'})`,
  )
}
