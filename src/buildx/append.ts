// The `append` input: a YAML list of extra builder nodes, e.g.
//
//   - name: arm64-node
//     endpoint: tcp://10.0.0.5:1234
//     platforms: linux/arm64,linux/arm/v7
//     driver-opts:
//       - env.BUILDKIT_STEP_LOG_MAX_SIZE=10485760
//
// No YAML library ships with the action, and this one shape is all the input
// takes, so this is a small strict parser: a list of maps whose values are
// scalars, lists of scalars or `|` block text. Anything else is an error that
// says which item and what is wrong, rather than a guess.

import { ActionError } from '../errors'
import { AppendNode } from './types'

const KEYS = ['name', 'endpoint', 'platforms', 'driver-opts'] as const
type Key = (typeof KEYS)[number]

interface Line {
  /** 1-based line number in the input, for messages */
  no: number
  indent: number
  text: string
}

type Value = { kind: 'scalar'; text: string } | { kind: 'list'; items: string[] }

export function parseAppend(yamlText: string): AppendNode[] {
  const lines = meaningfulLines(yamlText)
  if (lines.length === 0) return []
  if (lines.length === 1 && lines[0].text === '[]') return []

  const base = lines[0].indent
  const items: Line[][] = []
  for (const line of lines) {
    if (line.indent < base) fail(`line ${line.no} is indented less than the list above it`)
    if (line.indent === base) {
      if (!isItemMarker(line.text)) {
        fail(`expected a YAML list of nodes, each item starting with '- endpoint: ...'; line ${line.no} is '${clip(line.text)}'`)
      }
      items.push([line])
    } else {
      items[items.length - 1].push(line)
    }
  }
  return items.map((item, i) => parseItem(item, i + 1))
}

function parseItem(lines: Line[], n: number): AppendNode {
  const [marker, ...rest] = lines
  const first = marker.text.replace(/^-/, '')
  const body: Line[] = []
  if (first.trim() !== '') {
    // `- key: value`: the key sits where the text after the dash starts
    const lead = first.length - first.trimStart().length
    body.push({ no: marker.no, indent: marker.indent + 1 + lead, text: first.trim() })
  }
  body.push(...rest)
  if (body.length === 0) fail(`item ${n} is empty; give it at least an endpoint`)

  const keyIndent = body[0].indent
  const seen = new Map<Key, Value>()
  let i = 0
  while (i < body.length) {
    const line = body[i]
    if (line.indent !== keyIndent) fail(`item ${n}: line ${line.no} is not aligned with the keys above it`)
    const m = /^([A-Za-z][A-Za-z0-9_-]*)[ \t]*:(?:[ \t]+(.*))?$/.exec(line.text)
    if (!m) {
      fail(`item ${n} must be a map of name, endpoint, platforms, driver-opts; line ${line.no} is '${clip(line.text)}'`)
    }
    const key = m[1]
    if (!(KEYS as readonly string[]).includes(key)) {
      fail(`item ${n} has unknown key '${key}'; use ${KEYS.join(', ')}`)
    }
    if (seen.has(key as Key)) fail(`item ${n} has '${key}' twice`)
    const inline = stripComment(m[2] ?? '')
    let j = i + 1
    // A list under a key may sit at the key's own column (`key:` then `- item`), as YAML allows.
    const compact = inline === '' && j < body.length && body[j].indent === keyIndent && isItemMarker(body[j].text)
    while (j < body.length && (body[j].indent > keyIndent || (compact && body[j].indent === keyIndent && isItemMarker(body[j].text)))) j++
    seen.set(key as Key, parseValue(inline, body.slice(i + 1, j), n, key))
    i = j
  }

  const endpoint = scalar(seen.get('endpoint'), n, 'endpoint')
  if (!endpoint) fail(`item ${n} has no endpoint; set endpoint to a docker context name or an address such as tcp://host:1234`)
  const node: AppendNode = {
    endpoint,
    platforms: splitPlatforms(seen.get('platforms')),
    driverOpts: splitDriverOpts(seen.get('driver-opts')),
  }
  const name = scalar(seen.get('name'), n, 'name')
  if (name) node.name = name
  return node
}

function parseValue(inline: string, nested: Line[], n: number, key: string): Value {
  if (/^[|][+-]?$/.test(inline)) return { kind: 'scalar', text: blockText(nested) }
  if (/^>[+-]?$/.test(inline)) fail(`item ${n}: '${key}' uses a folded block (>); use a list or a '|' block`)
  if (inline !== '') {
    if (nested.length) fail(`item ${n}: '${key}' has a value and also indented lines under it (line ${nested[0].no})`)
    if (inline.startsWith('[')) return { kind: 'list', items: flowList(inline, n, key) }
    if (inline.startsWith('{') || inline.startsWith('&') || inline.startsWith('*') || inline.startsWith('!')) {
      fail(`item ${n}: '${key}' must be a plain value or a list, not '${clip(inline)}'`)
    }
    return { kind: 'scalar', text: unquote(inline, n, key) }
  }
  if (nested.length === 0) return { kind: 'scalar', text: '' }
  const items: string[] = []
  const listIndent = nested[0].indent
  for (const line of nested) {
    if (line.indent !== listIndent || !isItemMarker(line.text)) {
      fail(`item ${n}: '${key}' must be a value on the same line or a list of '- value' lines; line ${line.no} is '${clip(line.text)}'`)
    }
    const v = stripComment(line.text.replace(/^-/, '').trim())
    if (/^[A-Za-z][A-Za-z0-9_-]*[ \t]*:([ \t]|$)/.test(v)) {
      fail(`item ${n}: '${key}' list items must be plain values, not maps (line ${line.no})`)
    }
    if (v.startsWith('[') || v.startsWith('{')) fail(`item ${n}: '${key}' list items must be plain values (line ${line.no})`)
    items.push(unquote(v, n, key))
  }
  return { kind: 'list', items }
}

function scalar(v: Value | undefined, n: number, key: string): string {
  if (!v) return ''
  if (v.kind === 'list') fail(`item ${n}: '${key}' must be a single value, not a list`)
  return v.text.trim()
}

/** `linux/arm64,linux/arm/v7` or a list (whose items may themselves hold commas). */
function splitPlatforms(v: Value | undefined): string[] {
  if (!v) return []
  const parts = v.kind === 'list' ? v.items : [v.text]
  return dedupe(parts.flatMap(p => p.split(/[,\n]/)).map(p => p.trim()).filter(Boolean))
}

/** A list, or text with one option per line. Commas stay: buildx reads each --driver-opt as CSV itself. */
function splitDriverOpts(v: Value | undefined): string[] {
  if (!v) return []
  const parts = v.kind === 'list' ? v.items : v.text.split('\n')
  return parts.map(p => p.trim()).filter(Boolean)
}

function meaningfulLines(text: string): Line[] {
  const out: Line[] = []
  text.split('\n').forEach((raw, idx) => {
    const line = raw.replace(/\r$/, '')
    const t = line.trim()
    if (t === '' || t.startsWith('#') || t === '---' || t === '...') return
    const lead = /^[ \t]*/.exec(line)![0]
    if (lead.includes('\t')) fail(`line ${idx + 1} is indented with a tab; YAML needs spaces`)
    out.push({ no: idx + 1, indent: lead.length, text: line.slice(lead.length).trimEnd() })
  })
  return out
}

/** Lines of a `|` block, with the block's own indentation removed. */
function blockText(nested: Line[]): string {
  if (nested.length === 0) return ''
  const indent = Math.min(...nested.map(l => l.indent))
  return nested.map(l => ' '.repeat(l.indent - indent) + l.text).join('\n')
}

function isItemMarker(text: string): boolean {
  return text === '-' || text.startsWith('- ')
}

/** A plain scalar ends at ` #`; quoted ones are handled by unquote. */
function stripComment(text: string): string {
  const t = text.trim()
  if (t.startsWith('"') || t.startsWith("'")) return t
  if (t.startsWith('#')) return ''
  return t.replace(/[ \t]+#.*$/, '').trim()
}

function unquote(text: string, n: number, key: string): string {
  const t = text.trim()
  const q = t[0]
  if (q !== '"' && q !== "'") return t
  let end = -1
  for (let k = 1; k < t.length; k++) {
    if (q === '"' && t[k] === '\\') {
      k++
      continue
    }
    if (t[k] === q) {
      if (q === "'" && t[k + 1] === "'") {
        k++
        continue
      }
      end = k
      break
    }
  }
  if (end < 0) fail(`item ${n}: '${key}' has an unterminated ${q === '"' ? 'double' : 'single'}-quoted value`)
  const after = t.slice(end + 1).trim()
  if (after && !after.startsWith('#')) fail(`item ${n}: '${key}' has text after its quoted value: '${clip(after)}'`)
  const inner = t.slice(1, end)
  if (q === "'") return inner.replace(/''/g, "'")
  try {
    return JSON.parse(`"${inner.replace(/\\'/g, "'")}"`) as string
  } catch {
    fail(`item ${n}: '${key}' has an escape sequence this parser does not take; use single quotes`)
  }
}

function flowList(text: string, n: number, key: string): string[] {
  if (!text.endsWith(']')) fail(`item ${n}: '${key}' starts a [list] that does not end on the same line`)
  const inner = text.slice(1, -1)
  if (/[[\]{}]/.test(inner)) fail(`item ${n}: '${key}' must be a flat list of values`)
  if (inner.trim() === '') return []
  // Quoted items containing commas are rare here; a split on commas is what users mean.
  return inner.split(',').map(s => unquote(s, n, key)).filter(Boolean)
}

function dedupe(items: string[]): string[] {
  return [...new Set(items)]
}

function clip(text: string): string {
  return text.length > 60 ? `${text.slice(0, 57)}...` : text
}

function fail(message: string): never {
  throw new ActionError(`append: ${message}`)
}
