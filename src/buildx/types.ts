// Shapes shared by the buildx builder step, its parsers and the post step.

export interface AppendNode {
  /** --node; buildx generates one when absent */
  name?: string
  /** context name, docker host (tcp://, ssh://, unix://) or BuildKit address */
  endpoint: string
  /** fixed platforms for this node (--platform a,b); empty lets BuildKit detect them */
  platforms: string[]
  /** each becomes one --driver-opt */
  driverOpts: string[]
}

export interface BuilderOptions {
  /** input `buildx` */
  mode: 'true' | 'auto' | 'false'
  /** input `builder-name`; the caller passes a generated unique name when it is empty */
  name: string
  /** whether the user chose `name` (a chosen name may refer to a builder that already exists) */
  nameGiven: boolean
  /** input `driver`: 'docker-container' by default; 'docker' uses the current context's builder and creates nothing */
  driver: string
  /**
   * input `endpoint`: the first node's endpoint, the last argument of create ('' for the current
   * Docker context): a Docker context or host for docker-container, a BuildKit address for remote
   */
  endpoint: string
  /** input `driver-opts`: each becomes --driver-opt */
  driverOpts: string[]
  /** input `buildkitd-flags`: --buildkitd-flags when non-empty */
  buildkitdFlags: string
  /** input `buildkitd-config-inline`: written to a file in tempDir and passed as --config */
  configInline: string
  /** input `use`: --use */
  use: boolean
  /** input `append`, parsed with parseAppend */
  append: AppendNode[]
  /**
   * Platforms that run on this runner (docker names): native ones and verified emulated
   * ones. Not passed to create (BuildKit detects them when it starts, and again each time
   * its workers are listed: inspect and ls show emulators registered after it booted); what nodes on this
   * runner's daemon list is held against it, since a BuildKit may list platforms of
   * emulators that are no longer (or never were) usable here.
   */
  platforms: string[]
  /** The verified emulated subset of `platforms`: a builder that does not list one of them gets a notice. */
  emulated: string[]
  tempDir: string
  /** pause before the one retry of a transient bootstrap failure (default 5 s; tests shorten it) */
  retryDelayMs?: number
  /** the step's cancellation: ends that pause too */
  cancel?: AbortSignal
}

export interface BuilderNode {
  name: string
  endpoint: string
  /** running, inactive, stopped, error, ... ('' when buildx did not say) */
  status: string
  /** BuildKit version ('' when unknown, e.g. the node is not running) */
  buildkit: string
  /** platforms without the '*' marker, in buildx's order */
  platforms: string[]
  /** the subset of `platforms` set by the user at create time (marked '*' by buildx) */
  preferred?: string[]
  /** why buildx could not load or start this node */
  error?: string
  /**
   * Set by the builder step: true for a node appended at another endpoint, whose platforms
   * are reported as it declares them; false for a node on this runner's daemon, whose
   * platforms were held against what runs here.
   */
  remote?: boolean
  /** platforms this runner's node lists that do not run here (left out of `platforms`) */
  notRunning?: string[]
}

export interface BuilderResult {
  name: string
  driver: string
  created: boolean
  nodes: BuilderNode[]
  /** union over nodes; user-set (preferred) platforms first; no duplicates; no '*' */
  platforms: string[]
}

/** What the post step needs to clean up; the caller saves it with core.saveState as JSON. */
export interface BuilderState {
  name: string
  created: boolean
  driver: string
}
