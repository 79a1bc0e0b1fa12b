// @actions/core, loaded once the run is under way rather than with the action: loading it takes
// ~45 ms on a 2-core runner (it brings @actions/http-client, undici, tls and http2, for OIDC tokens
// this action never asks for), half of what stood between Node starting and the builder's first
// command. What the action says before it is loaded waits, in order; inputs and step state are read
// from the environment, where the runner puts them and where @actions/core reads them.

import type * as Core from '@actions/core'

type CoreModule = typeof Core

let loaded: CoreModule | undefined
let loading: Promise<CoreModule> | undefined
const waiting: ((core: CoreModule) => void)[] = []

/** Loads @actions/core (once); what waited for it is done first, in the order it was asked for. */
export function loadCore(): Promise<CoreModule> {
  loading ??= import('@actions/core').then(core => {
    loaded = core
    for (const f of waiting.splice(0)) {
      // One that fails (a file command the runner's disk refused) does not take the rest with it.
      try {
        f(core)
      } catch (e) {
        core.setFailed(`writing to the runner failed: ${e instanceof Error ? e.message : String(e)}`)
      }
    }
    return core
  })
  return loading
}

/** Does `f` with @actions/core now if it is loaded, else when loadCore has loaded it. */
export function withCore(f: (core: CoreModule) => void): void {
  if (loaded) f(loaded)
  else waiting.push(f)
}

/** An input as core.getInput reads it: INPUT_<NAME> (spaces as _, upper case), trimmed; '' when unset. */
export function input(name: string): string {
  return (process.env[`INPUT_${name.replace(/ /g, '_').toUpperCase()}`] ?? '').trim()
}

/** A value the main step saved, as core.getState reads it: STATE_<name>; '' when unset. */
export function savedState(name: string): string {
  return process.env[`STATE_${name}`] ?? ''
}
