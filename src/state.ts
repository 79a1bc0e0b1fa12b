import { BinfmtEntry, EntrySpec } from './binfmt'
import { KernelWriter } from './kernel'
import { JobId } from './usage'

/** What the main phase hands the post phase, by state name. */
export const STATE_UNINSTALL = 'uninstall'

/** After SIGINT/SIGTERM, how long the clean-up may take before the process exits regardless. */
export const CANCEL_GRACE_MS = 3000

/** What `uninstall: true` undoes in the post step: the entries this step added or replaced. */
export interface UninstallState {
  readonly method: KernelWriter['method']
  readonly dockerImage: string
  /** the job these entries were recorded for */
  readonly job?: JobId
  readonly entries: readonly { readonly spec: EntrySpec; readonly previous?: BinfmtEntry }[]
}
