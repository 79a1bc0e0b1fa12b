// argv for the `docker buildx` commands the builder step runs (the program is `docker`).
// Pure so the exact command lines can be asserted in tests. Positional values (builder
// names, endpoints) always follow `--`, so none can be read as an option whatever it holds.

import { AppendNode, BuilderOptions } from './types'

type CreateOptions = Pick<BuilderOptions, 'name' | 'driver' | 'endpoint' | 'driverOpts' | 'buildkitdFlags' | 'use'>

export function versionArgs(): string[] {
  return ['buildx', 'version']
}

/**
 * The first node's name, given to create rather than left to buildx, so that what it makes is
 * known before it exists: the docker-container driver names its container and state volume
 * after the node (containerName), and a cancelled step removes them by those names.
 */
export function firstNodeName(builder: string): string {
  return `${builder}0`
}

/** The docker-container driver's container for a node, and its state volume (`<container>_state`). */
export function containerName(node: string): string {
  return `buildx_buildkit_${node}`
}

/**
 * `create` for the first node, at `endpoint` when one is given (after `--`). No --platform: BuildKit detects the platforms the
 * registered emulators provide when it starts, and a fixed list would hide new ones.
 * `--config` is accepted by every release (newer ones keep it as a hidden alias of --buildkitd-config).
 * `bootstrap`: create also boots it (where no node is appended first).
 */
export function createArgs(opts: CreateOptions, configFile?: string, bootstrap = false): string[] {
  const args = ['buildx', 'create', '--name', opts.name, '--node', firstNodeName(opts.name), '--driver', opts.driver]
  for (const o of opts.driverOpts) args.push('--driver-opt', o)
  if (opts.buildkitdFlags) args.push('--buildkitd-flags', opts.buildkitdFlags)
  if (configFile) args.push('--config', configFile)
  if (opts.use) args.push('--use')
  if (bootstrap) args.push('--bootstrap')
  if (opts.endpoint) args.push('--', opts.endpoint)
  return args
}

/** Removes a leftover docker-container node container with its anonymous volumes. */
export function containerRmArgs(node: string): string[] {
  return ['rm', '--force', '--volumes', '--', containerName(node)]
}

export function volumeRmArgs(node: string): string[] {
  return ['volume', 'rm', '--force', '--', `${containerName(node)}_state`]
}

/** `create --append` adds a node; the driver is the builder's, so it is not repeated. */
export function appendArgs(name: string, node: AppendNode): string[] {
  const args = ['buildx', 'create', '--append', '--name', name]
  if (node.name) args.push('--node', node.name)
  if (node.platforms.length) args.push('--platform', node.platforms.join(','))
  for (const o of node.driverOpts) args.push('--driver-opt', o)
  args.push('--', node.endpoint)
  return args
}

export function bootstrapArgs(name: string): string[] {
  return ['buildx', 'inspect', '--bootstrap', '--builder', name]
}

/** Without a name: the current builder (for the `docker` driver, the context's own). */
export function inspectArgs(name?: string): string[] {
  return name ? ['buildx', 'inspect', '--', name] : ['buildx', 'inspect']
}

export function lsJsonArgs(): string[] {
  return ['buildx', 'ls', '--format', 'json']
}

export function useArgs(name: string): string[] {
  return ['buildx', 'use', '--', name]
}

export function rmArgs(name: string): string[] {
  return ['buildx', 'rm', '--', name]
}
