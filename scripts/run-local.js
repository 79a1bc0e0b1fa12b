#!/usr/bin/env node
// Runs the bundled action (dist/index.js) on this machine the way a GitHub
// runner does: main phase, then post phase, with INPUT_* from the command line
// and the runner's files (GITHUB_OUTPUT, GITHUB_STATE, GITHUB_STEP_SUMMARY) in
// a temporary directory.
//
//   npm run local -- [name=value ...]
//   sudo npm run local -- platforms=linux/arm64,linux/riscv64 qemu-url=/usr/bin buildx=false
//
// Registrations the action makes stay in binfmt_misc (as on a runner).
'use strict'

const { spawn } = require('child_process')
const fs = require('fs')
const os = require('os')
const path = require('path')

const { ROOT, SCRIPT, ensureDist, inputEnvName, parseKeyValueFile } = require('./action-env')

function usage(code) {
  const text = `usage: npm run local -- [name=value ...]

Runs dist/index.js (main, then post) like a GitHub runner, with each
name=value as the input <name> (INPUT_<NAME>). Examples:
  sudo npm run local -- platforms=linux/arm64 qemu-url=/usr/bin buildx=false
  sudo RUNNER_DEBUG=1 npm run local -- platforms=all cache=false

Environment: RUNNER_TOOL_CACHE (default ~/.cache/setup-qemu-binfmt/tool-cache),
RUNNER_TEMP (default a temporary directory), RUNNER_DEBUG=1 for debug lines.
Builds dist/ first (npm run build) when dist/index.js is missing.
`
  ;(code ? process.stderr : process.stdout).write(text)
  process.exit(code)
}

function parseArgs(argv) {
  const inputs = []
  for (const arg of argv) {
    if (arg === '-h' || arg === '--help') usage(0)
    const eq = arg.indexOf('=')
    if (eq <= 0) {
      process.stderr.write(`run-local: '${arg}' is not name=value\n`)
      usage(2)
    }
    inputs.push([arg.slice(0, eq).trim(), arg.slice(eq + 1)])
  }
  return inputs
}

/** Rough HTML -> text for the step summary: table cells joined by ' | ', one row per line. */
function htmlToText(html) {
  // Split rows on opening cell tags: core.summary leaves empty cells unclosed (<td>).
  const row = inner =>
    inner
      .split(/<t[hd](?:\s[^>]*)?>/i)
      .slice(1)
      .map(c => c.replace(/<[^>]*>/g, '').trim() || '-')
      .join(' | ')
  return html
    .replace(/<tr[^>]*>([\s\S]*?)<\/tr>/gi, (_, inner) => `${row(inner)}\n`)
    .replace(/<br\s*\/?>/gi, '\n')
    .replace(/<\/(tr|h\d|p|div|li|table|pre)>/gi, '\n')
    .replace(/<h(\d)[^>]*>/gi, (_, n) => `${'#'.repeat(Number(n))} `)
    .replace(/<[^>]*>/g, '')
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&quot;/g, '"')
    .replace(/&#39;|&apos;/g, "'")
    .replace(/&nbsp;/g, ' ')
    .replace(/&amp;/g, '&')
    .replace(/[ \t]+\n/g, '\n')
    .replace(/\n{3,}/g, '\n\n')
    .trim()
}

function readOr(file, fallback = '') {
  try {
    return fs.readFileSync(file, 'utf8')
  } catch {
    return fallback
  }
}

let child
let interrupted = false
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => {
    // A terminal's Ctrl-C reaches the action too; pass on signals sent only to us. The post phase still runs.
    interrupted = true
    if (child && child.exitCode === null && child.signalCode === null) child.kill(sig)
  })
}

function runPhase(phase, env) {
  return new Promise((resolve, reject) => {
    child = spawn(process.execPath, [SCRIPT], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'inherit'] })
    // Like the runner, show ::debug:: lines only with RUNNER_DEBUG=1.
    const debug = env.RUNNER_DEBUG === '1'
    let partial = ''
    child.stdout.setEncoding('utf8')
    child.stdout.on('data', chunk => {
      const lines = (partial + chunk).split('\n')
      partial = lines.pop()
      const shown = lines.filter(l => debug || !l.startsWith('::debug::'))
      if (shown.length) process.stdout.write(`${shown.join('\n')}\n`)
    })
    child.stdout.on('end', () => {
      if (partial && (debug || !partial.startsWith('::debug::'))) process.stdout.write(`${partial}\n`)
    })
    child.on('error', reject)
    child.on('close', (code, signal) => {
      child = undefined
      resolve(code !== null ? code : 128 + (os.constants.signals[signal] || 1))
    })
  })
}

function phaseFiles(dir, phase) {
  const files = {
    GITHUB_OUTPUT: path.join(dir, `${phase}-output`),
    GITHUB_STATE: path.join(dir, `${phase}-state`),
    GITHUB_STEP_SUMMARY: path.join(dir, `${phase}-summary`),
    GITHUB_ENV: path.join(dir, `${phase}-env`),
    GITHUB_PATH: path.join(dir, `${phase}-path`),
  }
  for (const f of Object.values(files)) fs.writeFileSync(f, '')
  return files
}

function printSummary(file, title) {
  const text = htmlToText(readOr(file))
  if (text) process.stdout.write(`\n${title}\n${text}\n`)
}

async function main() {
  const inputs = parseArgs(process.argv.slice(2))
  if (!ensureDist(m => process.stderr.write(`run-local: ${m}\n`))) {
    process.stderr.write('run-local: npm run build failed; fix the build and retry\n')
    process.exit(1)
  }

  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'setup-qemu-binfmt-local-'))
  try {
    const base = {}
    // Nothing stale from the calling shell: inputs and state come from this run only.
    for (const [k, v] of Object.entries(process.env)) if (!/^(INPUT_|STATE_)/.test(k)) base[k] = v
    Object.assign(base, {
      CI: 'true',
      GITHUB_ACTIONS: 'true',
      RUNNER_OS: 'Linux',
      RUNNER_ARCH: process.arch === 'arm64' ? 'ARM64' : 'X64',
      RUNNER_TEMP: process.env.RUNNER_TEMP || path.join(dir, 'temp'),
      RUNNER_TOOL_CACHE: process.env.RUNNER_TOOL_CACHE || path.join(os.homedir(), '.cache', 'setup-qemu-binfmt', 'tool-cache'),
    })
    fs.mkdirSync(base.RUNNER_TEMP, { recursive: true })
    fs.mkdirSync(base.RUNNER_TOOL_CACHE, { recursive: true })
    for (const [name, value] of inputs) base[inputEnvName(name)] = value

    const mainFiles = phaseFiles(dir, 'main')
    process.stderr.write(`run-local: main phase (RUNNER_TOOL_CACHE=${base.RUNNER_TOOL_CACHE})\n`)
    const status = await runPhase('main', { ...base, ...mainFiles })

    const outputs = parseKeyValueFile(readOr(mainFiles.GITHUB_OUTPUT))
    process.stdout.write('\nOutputs:\n')
    for (const [k, v] of Object.entries(outputs)) process.stdout.write(`${k}=${v}\n`)
    if (Object.keys(outputs).length === 0) process.stdout.write('(none)\n')
    printSummary(mainFiles.GITHUB_STEP_SUMMARY, 'Summary:')

    // The runner hands main's saved state to the post step as STATE_<name>.
    const state = parseKeyValueFile(readOr(mainFiles.GITHUB_STATE))
    const postEnv = { ...base, ...phaseFiles(dir, 'post') }
    for (const [k, v] of Object.entries(state)) postEnv[`STATE_${k}`] = v
    process.stderr.write('\nrun-local: post phase\n')
    const postStatus = await runPhase('post', postEnv)
    if (postStatus !== 0) process.stderr.write(`run-local: post phase exited with ${postStatus}\n`)
    printSummary(postEnv.GITHUB_STEP_SUMMARY, 'Post summary:')

    process.stderr.write(`\nrun-local: main phase ${status === 0 ? 'succeeded' : `failed (exit ${status})`}${interrupted ? ' (interrupted)' : ''}\n`)
    return status
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
}

main().then(
  code => process.exit(code),
  e => {
    process.stderr.write(`run-local: ${e && e.stack ? e.stack : e}\n`)
    process.exit(1)
  },
)
