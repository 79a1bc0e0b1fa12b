import * as core from '@actions/core'
import { BuilderState } from '../buildx/types'
import { PendingSave, parsePending } from '../fetch/actions-cache'
import { Handoff } from '../setup'
import { UninstallState } from '../teardown'

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

  /** the engine's handoff, saved as the step state */
  handoff: {
    cacheSave: (pending: PendingSave): void => core.saveState(CACHE, JSON.stringify(pending)),
    builder: (state: BuilderState | undefined): void => core.saveState(BUILDER, state ? JSON.stringify(state) : ''),
    uninstall: (state: UninstallState): void => core.saveState(UNINSTALL, JSON.stringify(state)),
  } satisfies Handoff,

  cacheSave: (): PendingSave | undefined => parsePending(core.getState(CACHE)),
  /** throws when the saved state cannot be read */
  builder: (): BuilderState | undefined => readJson<BuilderState>(BUILDER),
  /** throws when the saved state cannot be read */
  uninstall: (): UninstallState | undefined => readJson<UninstallState>(UNINSTALL),
}
