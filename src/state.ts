import * as core from '@actions/core'
import { BinfmtEntry, EntrySpec } from './binfmt'
import { BuilderState } from './buildx/types'
import { PendingSave, parsePending } from './fetch/actions-cache'
import { KernelWriter } from './kernel'
import { JobId } from './usage'

/** What `uninstall: true` undoes in the post step: the entries this step added or replaced. */
export interface UninstallState {
  readonly method: KernelWriter['method']
  readonly dockerImage: string
  /** the job these entries were recorded for */
  readonly job?: JobId
  readonly entries: readonly { readonly spec: EntrySpec; readonly previous?: BinfmtEntry }[]
}

// The runner's step state is the only channel from main to post; these are its names, used nowhere else.
const IS_POST = 'isPost'
const BUILDER = 'builder'
const CACHE = 'emulator-cache'
const UNINSTALL = 'uninstall'

/** JSON saved by this action's own main step; undefined when nothing was saved, an error when it cannot be read. */
function readJson<T>(name: string): T | undefined {
  const raw = core.getState(name)
  if (!raw) return undefined
  try {
    return JSON.parse(raw) as T
  } catch {
    throw new Error(`the state '${name}' the main step saved is not JSON`)
  }
}

/** What the main step hands the post step, typed: the one place that reads or writes the step state. */
export const stepState = {
  /** action.yml runs the same file for both phases: true in the post phase (main marked it). */
  isPost: (): boolean => core.getState(IS_POST) === 'true',
  markMainRan: (): void => core.saveState(IS_POST, 'true'),

  saveBuilder: (state: BuilderState): void => core.saveState(BUILDER, JSON.stringify(state)),
  /** throws when the saved state cannot be read */
  builder: (): BuilderState | undefined => readJson<BuilderState>(BUILDER),

  saveCachePending: (pending: PendingSave): void => core.saveState(CACHE, JSON.stringify(pending)),
  cachePending: (): PendingSave | undefined => parsePending(core.getState(CACHE)),

  saveUninstall: (state: UninstallState): void => core.saveState(UNINSTALL, JSON.stringify(state)),
  /** throws when the saved state cannot be read */
  uninstall: (): UninstallState | undefined => readJson<UninstallState>(UNINSTALL),
}
