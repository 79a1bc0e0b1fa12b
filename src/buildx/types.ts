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
   * Platforms that work on this runner (docker names). Not passed to create (BuildKit
   * detects them when it starts); used to warn when a builder does not list them.
   */
  platforms: string[]
  tempDir: string
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
  /** BuildKit daemon flags, as buildx prints them */
  flags?: string
  /** why buildx could not load or start this node */
  error?: string
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
