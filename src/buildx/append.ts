// The `append` input: a YAML list of extra builder nodes, e.g.
//
//   - name: arm64-node
//     endpoint: tcp://10.0.0.5:1234
//     platforms: linux/arm64,linux/arm/v7
//     driver-opts:
//       - env.BUILDKIT_STEP_LOG_MAX_SIZE=10485760
//
// Parsed with js-yaml (as docker/setup-buildx-action does), with the failsafe schema so
// every scalar stays the text the user wrote (no `on` -> true, no `0777` -> 511). Then
// each value is checked, because each one ends up on a docker command line: anything
// that could be read as an option, or is not what buildx takes, is a one-line error
// naming the item.

import * as yaml from 'js-yaml'
import { ActionError, untrusted } from '../errors'
import { AppendNode } from './types'

const KEYS = ['name', 'endpoint', 'platforms', 'driver-opts'] as const
// Far more than any real list of nodes; keeps a hostile input from costing time.
const MAX_TEXT = 64 * 1024
// Node names as buildx takes them (it rejects others itself, later and less clearly).
const NODE_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/
// os/arch[/variant], as docker spells platforms.
const PLATFORM = /^[a-z0-9_]+\/[a-z0-9_]+(\/[a-z0-9_.]+)?$/
// key=value, the key as buildx's driver options spell them (image, network, env.X, ...).
const DRIVER_OPT = /^[A-Za-z0-9][A-Za-z0-9_.-]*=/

export function parseAppend(yamlText: string): AppendNode[] {
  if (yamlText.length > MAX_TEXT) fail(`the input is ${yamlText.length} characters; keep it under ${MAX_TEXT}`)
  let doc: unknown
  try {
    doc = yaml.load(yamlText, { schema: yaml.FAILSAFE_SCHEMA, filename: 'append' })
  } catch (e) {
    if (e instanceof yaml.YAMLException) {
      const line = e.mark ? `line ${e.mark.line + 1}: ` : ''
      fail(`${line}${e.reason || 'not valid YAML'}; give a YAML list of nodes, each item starting with '- endpoint: ...'`)
    }
    throw e
  }
  if (doc === undefined || doc === null) return []
  if (!Array.isArray(doc)) fail("expected a YAML list of nodes, each item starting with '- endpoint: ...'")
  return doc.map((item, i) => parseItem(item, i + 1))
}

function parseItem(item: unknown, n: number): AppendNode {
  if (item === null || item === undefined) fail(`item ${n} is empty; give it at least an endpoint`)
  if (typeof item !== 'object' || Array.isArray(item)) {
    fail(`item ${n} must be a map of ${KEYS.join(', ')}; it is '${untrusted(String(item), 60)}'`)
  }
  const map = item as Record<string, unknown>
  for (const key of Object.keys(map)) {
    if (!(KEYS as readonly string[]).includes(key)) fail(`item ${n} has unknown key '${untrusted(key, 60)}'; use ${KEYS.join(', ')}`)
  }

  const endpoint = scalar(map.endpoint, n, 'endpoint')
  if (!endpoint) fail(`item ${n} has no endpoint; set endpoint to a docker context name or an address such as tcp://host:1234`)
  // Passed after `--` too; an endpoint never starts with '-', and whitespace means a mistake.
  if (endpoint.startsWith('-'))
    fail(`item ${n}: endpoint '${untrusted(endpoint, 60)}' starts with '-'; give a docker context name or an address such as tcp://host:1234`)
  if (/[\s\x00-\x1f\x7f]/.test(endpoint)) fail(`item ${n}: endpoint '${untrusted(endpoint, 60)}' contains whitespace or control characters`)

  const node: AppendNode = {
    endpoint,
    platforms: platforms(map.platforms, n),
    driverOpts: driverOpts(map['driver-opts'], n),
  }
  const name = scalar(map.name, n, 'name')
  if (name) {
    if (!NODE_NAME.test(name))
      fail(`item ${n}: name '${untrusted(name, 60)}' is not a valid node name; use letters, digits, '.', '_' and '-', starting with a letter or digit`)
    node.name = name
  }
  return node
}

function scalar(v: unknown, n: number, key: string): string {
  if (v === undefined || v === null) return ''
  if (Array.isArray(v)) fail(`item ${n}: '${key}' must be a single value, not a list`)
  if (typeof v === 'object') fail(`item ${n}: '${key}' must be a single value, not a map`)
  return String(v).trim()
}

/** Plain values of a list, or the lines of one value; maps and nested lists are errors. */
function values(v: unknown, n: number, key: string): string[] {
  if (v === undefined || v === null) return []
  if (typeof v === 'object' && !Array.isArray(v)) fail(`item ${n}: '${key}' must be a plain value or a list, not a map`)
  const items = Array.isArray(v) ? v : [v]
  return items.map(x => {
    if (x !== null && typeof x === 'object') fail(`item ${n}: '${key}' list items must be plain values, not ${Array.isArray(x) ? 'lists' : 'maps'}`)
    return x === null || x === undefined ? '' : String(x)
  })
}

/** `linux/arm64,linux/arm/v7`, a list (whose items may themselves hold commas) or block text. */
function platforms(v: unknown, n: number): string[] {
  const out: string[] = []
  for (const p of values(v, n, 'platforms')
    .flatMap(s => s.split(/[,\n]/))
    .map(s => s.trim())) {
    if (!p) continue
    if (!PLATFORM.test(p)) fail(`item ${n}: platform '${untrusted(p, 60)}' is not os/arch[/variant] such as linux/arm64`)
    if (!out.includes(p)) out.push(p)
  }
  return out
}

/** A list, or text with one option per line. Commas stay: buildx reads each --driver-opt as CSV itself. */
function driverOpts(v: unknown, n: number): string[] {
  const out: string[] = []
  for (const o of values(v, n, 'driver-opts')
    .flatMap(s => s.split('\n'))
    .map(s => s.trim())) {
    if (!o) continue
    if (!DRIVER_OPT.test(o)) fail(`item ${n}: driver-opts entry '${untrusted(o, 60)}' is not key=value (e.g. image=..., network=host, env.NAME=value)`)
    out.push(o)
  }
  return out
}

function fail(message: string): never {
  throw new ActionError(`append: ${message}`)
}
