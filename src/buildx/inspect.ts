// Parsers for what `docker buildx inspect` and `docker buildx ls --format json` print.
//
// inspect is tabwriter text: `Key:<spaces>value` lines, the builder first, then
// `Nodes:` and one block per node. Key names changed over buildx releases
// (`Flags` -> `BuildKit daemon flags`, `Buildkit` -> `BuildKit` -> `BuildKit version`),
// and nodes may carry indented sections (`Features:`, `Labels:`, `Devices:`,
// `GC Policy rule#N:`, `File#name:`) whose lines start with whitespace and can
// themselves contain `Name:` keys, so only unindented lines are read.

import { BuilderNode } from './types'

export interface ParsedBuilder {
  name: string
  driver: string
  nodes: BuilderNode[]
}

const KEY_LINE = /^([A-Za-z][^:]*):(?:[ \t]+(.*))?$/

export function parseInspect(text: string): ParsedBuilder {
  const out: ParsedBuilder = { name: '', driver: '', nodes: [] }
  let inNodes = false
  let node: BuilderNode | undefined
  for (const raw of text.split('\n')) {
    const line = raw.replace(/\r$/, '')
    // Indented lines belong to a section (labels, GC policy, devices...): never builder or node keys.
    if (line === '' || /^\s/.test(line)) continue
    const m = KEY_LINE.exec(line)
    if (!m) continue
    const key = m[1].trim().toLowerCase()
    const value = (m[2] ?? '').trim()
    if (!inNodes) {
      if (key === 'nodes') inNodes = true
      else if (key === 'name') out.name = value
      else if (key === 'driver') out.driver = value
      continue
    }
    if (key === 'name') {
      node = { name: value, endpoint: '', status: '', buildkit: '', platforms: [] }
      out.nodes.push(node)
      continue
    }
    if (!node) continue
    switch (key) {
      case 'endpoint':
        node.endpoint = value
        break
      case 'status':
        node.status = value
        break
      case 'error':
        // buildx prints Error instead of Status for a node it could not load
        node.error = value
        if (!node.status) node.status = 'error'
        break
      case 'buildkit version':
      case 'buildkit':
        node.buildkit = value
        break
      case 'platforms':
        setPlatforms(node, value.split(','))
        break
      // Flags, Driver Options, section headers and keys from future releases are not needed.
    }
  }
  return out
}

/**
 * One builder from `docker buildx ls --format json` (one JSON object per line).
 * buildx 0.13 printed the builder's object once for the builder and again for each
 * node, so repeated lines are expected; older or newer field spellings are tolerated.
 * Returns undefined when no line describes `name` (e.g. the output is not JSON).
 */
export function parseLsJson(text: string, name: string): ParsedBuilder | undefined {
  for (const obj of jsonObjects(text)) {
    if (str(obj.Name) !== name) continue
    const nodes = Array.isArray(obj.Nodes) ? obj.Nodes.filter(isObject).map(jsonNode) : []
    return { name, driver: str(obj.Driver), nodes }
  }
  return undefined
}

/** All platforms of all nodes: user-set (preferred) ones first, then in node order, each once. */
export function unionPlatforms(nodes: readonly BuilderNode[]): string[] {
  const seen = new Set<string>()
  const out: string[] = []
  const add = (p: string): void => {
    const q = stripMarker(p)
    if (q && !seen.has(q)) {
      seen.add(q)
      out.push(q)
    }
  }
  for (const n of nodes) for (const p of n.preferred ?? []) add(p)
  for (const n of nodes) for (const p of n.platforms) add(p)
  return out
}

function setPlatforms(node: BuilderNode, items: readonly string[]): void {
  const platforms: string[] = []
  const preferred: string[] = []
  for (const item of items) {
    const t = item.trim()
    if (!t) continue
    const p = stripMarker(t)
    if (!p || platforms.includes(p)) continue
    platforms.push(p)
    if (t.endsWith('*')) preferred.push(p)
  }
  node.platforms = platforms
  if (preferred.length) node.preferred = preferred
}

function stripMarker(p: string): string {
  return p.trim().replace(/\*+$/, '').trim()
}

type Json = Record<string, unknown>

function isObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

function str(v: unknown): string {
  return typeof v === 'string' ? v : typeof v === 'number' ? String(v) : ''
}

function jsonObjects(text: string): Json[] {
  const trimmed = text.trim()
  // Not what buildx prints today, but cheap to accept should it ever print an array.
  if (trimmed.startsWith('[')) {
    try {
      const arr: unknown = JSON.parse(trimmed)
      if (Array.isArray(arr)) return arr.filter(isObject)
    } catch {
      // fall through to line by line
    }
  }
  const out: Json[] = []
  for (const line of text.split('\n')) {
    const t = line.trim()
    if (!t.startsWith('{')) continue
    try {
      const v: unknown = JSON.parse(t)
      if (isObject(v)) out.push(v)
    } catch {
      // a stray non-JSON line (warning, progress) is not ours to judge
    }
  }
  return out
}

function jsonNode(n: Json): BuilderNode {
  const node: BuilderNode = {
    name: str(n.Name),
    endpoint: str(n.Endpoint),
    status: str(n.Status),
    buildkit: str(n.Version ?? n.BuildkitVersion ?? n.Buildkit),
    platforms: [],
  }
  const err = str(n.Err ?? n.Error)
  if (err) {
    node.error = err
    if (!node.status) node.status = 'error'
  }
  if (Array.isArray(n.Platforms)) setPlatforms(node, n.Platforms.map(platformString))
  else if (typeof n.Platforms === 'string') setPlatforms(node, n.Platforms.split(','))
  return node
}

/** "linux/arm/v7", or an OCI platform object {os, architecture, variant} from an older encoding. */
function platformString(p: unknown): string {
  if (typeof p === 'string') return p
  if (!isObject(p)) return ''
  const os = str(p.os ?? p.OS)
  const arch = str(p.architecture ?? p.Architecture)
  const variant = str(p.variant ?? p.Variant)
  if (!os || !arch) return ''
  return variant ? `${os}/${arch}/${variant}` : `${os}/${arch}`
}
