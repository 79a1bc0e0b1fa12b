import * as fs from 'fs'
import * as os from 'os'
import { BuilderState } from '../buildx/types'
import { PendingSave, parsePending } from '../fetch/actions-cache'
import { Handoff } from '../setup'
import { UninstallState } from '../teardown'
import { savedState, withCore } from './core'

// The runner's step state is the only channel from main to post; these are its names, used nowhere else.
const IS_POST = 'isPost'
const BUILDER = 'builder'
const CACHE = 'emulator-cache'
const UNINSTALL = 'uninstall'

/** Saved for the post step (written once @actions/core is loaded: before the main step ends). */
function save(name: string, value: string): void {
  withCore(core => core.saveState(name, value))
}

/** JSON saved by this action's own main step; undefined when nothing was saved, an error when it cannot be read. */
function readJson<T>(name: string): T | undefined {
  const raw = savedState(name)
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
  isPost: (): boolean => savedState(IS_POST) === 'true',
  /**
   * Written at once, not when @actions/core is loaded: a main step stopped in its first milliseconds (a
   * cancelled job's SIGINT) must still leave its post step knowing it is the post step, not run main again.
   * `name=value` is the runner's one-line file-command format; without the file, core's command is queued.
   */
  markMainRan: (): void => {
    const file = process.env.GITHUB_STATE
    if (file) fs.appendFileSync(file, `${IS_POST}=true${os.EOL}`)
    else save(IS_POST, 'true')
  },

  /** the engine's handoff, saved as the step state */
  handoff: {
    cacheSave: (pending: PendingSave): void => save(CACHE, JSON.stringify(pending)),
    builder: (state: BuilderState | undefined): void => save(BUILDER, state ? JSON.stringify(state) : ''),
    uninstall: (state: UninstallState): void => save(UNINSTALL, JSON.stringify(state)),
  } satisfies Handoff,

  cacheSave: (): PendingSave | undefined => parsePending(savedState(CACHE)),
  /** throws when the saved state cannot be read */
  builder: (): BuilderState | undefined => readJson<BuilderState>(BUILDER),
  /** throws when the saved state cannot be read */
  uninstall: (): UninstallState | undefined => readJson<UninstallState>(UNINSTALL),
}
