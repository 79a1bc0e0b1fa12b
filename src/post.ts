import * as core from '@actions/core'
import { log } from './log'
import { specOf } from './binfmt'
import { cleanupBuilder } from './buildx/builder'
import { dockerAccess } from './docker/daemon'
import { readerFor } from './access'
import { usernsAccess } from './userns'
import { errorMessage } from './errors'
import { readInputs } from './inputs'
import { saveEntry } from './fetch/actions-cache'
import { KernelOp, directAccess } from './kernel'
import { HostLock } from './lock'
import { ChildProcessRunner } from './process'
import { isQemuEntry, stagingName } from './register'
import { UninstallState, stepState } from './state'
import { LOCK_WAIT_MS } from './timeouts'
import { UsageRecords, tableOf } from './usage'

/**
 * The post phase: removes the buildx builder the main phase created and, with
 * `uninstall: true`, the entries it registered. Nothing here fails the job;
 * problems are warnings.
 */
export async function post(): Promise<void> {
  // Emulators this job downloaded go to the Actions cache here, off the main step's clock.
  const pending = stepState.cachePending()
  if (pending) await saveEntry(pending, log)
  try {
    const saved = stepState.builder()
    if (saved) await cleanupBuilder(saved, new ChildProcessRunner(), log)
    else log.debug('post: no builder to clean up')
  } catch (e) {
    log.warning(`post: builder cleanup failed: ${errorMessage(e)}`)
  }
  // The saved state alone never makes this step change the kernel: the step's own input must ask for it.
  if (wantsUninstall()) {
    try {
      const uninstall = stepState.uninstall()
      if (uninstall) await uninstallEntries(uninstall)
    } catch (e) {
      log.warning(`uninstall: ${errorMessage(e)}; the entries stay registered`)
    }
  }
}

/** The step's `uninstall` input, read as main read it; inputs main refused (it then changed nothing) ask for nothing. */
function wantsUninstall(): boolean {
  try {
    return readInputs(name => core.getInput(name)).uninstall
  } catch (e) {
    log.debug(`post: not uninstalling: ${errorMessage(e)}`)
    return false
  }
}

/**
 * Removes the entries the main step added and puts back the ones it replaced,
 * except those another live job on this host still uses, and those someone
 * changed since. A replaced entry that cannot be put back (its interpreter is
 * gone) is left as this step made it: a working entry beats none.
 */
async function uninstallEntries(state: UninstallState): Promise<void> {
  const runner = new ChildProcessRunner()
  const access =
    state.method === 'docker'
      ? await dockerAccess(runner, state.dockerImage, log)
      : state.method === 'userns'
        ? await usernsAccess(runner, false)
        : await directAccess(runner)
  if (!access.writer) throw new Error(`cannot change binfmt_misc any more (${access.reason})`)
  const writer = access.writer
  const reader = readerFor(writer)
  const records = new UsageRecords(tableOf(reader.root))
  const lock = await HostLock.acquire({ timeoutMs: LOCK_WAIT_MS, log: log.info })
  try {
    for (const { spec, previous } of state.entries) {
      // Only ever qemu-* entries, and an entry is only ever put back under its own name.
      if (!isQemuEntry(spec.name) || (previous && previous.name !== spec.name)) {
        log.warning(`uninstall: ignoring a saved entry that is not a qemu-* entry of its own name (${spec.name})`)
        continue
      }
      let users
      try {
        users = records.users(spec.name, state.job)
      } catch (e) {
        // Records that cannot be trusted could hide a live job (or one that could not write its record): keep.
        log.warning(`uninstall: ${spec.name} kept: which jobs use it cannot be told (${errorMessage(e)})`)
        continue
      }
      if (users.length) {
        log.info(`uninstall: ${spec.name} kept: still used by the running job of process ${users.map(u => u.pid).join(', ')}`)
        continue
      }
      const now = reader.read(spec.name)
      if (!now) {
        log.info(`uninstall: ${spec.name} is already gone`)
        continue
      }
      if (now.interpreter !== spec.interpreter) {
        log.info(`uninstall: ${spec.name} kept: it was changed since this step (interpreter ${now.interpreter})`)
        continue
      }
      if (!previous) {
        await writer.apply([{ kind: 'remove', name: spec.name }])
        log.info(`uninstall: removed ${spec.name}`)
        continue
      }
      // The old entry comes back beside ours first: if the kernel refuses it, ours stays.
      const staged = stagingName(previous.name)
      const old = specOf(previous)
      try {
        await writer.apply([{ kind: 'register', spec: { ...old, name: staged } }])
      } catch (e) {
        log.warning(`uninstall: ${spec.name} kept: the entry it replaced cannot be put back (${errorMessage(e)})`)
        continue
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
    if (state.job && !records.problem()) records.remove(state.job)
  } finally {
    await lock.release()
  }
}
