#!/usr/bin/env node
// Benchmarks the whole action process (node dist/index.js) against a local
// HTTP server that serves a tonistiigi/binfmt-layout archive built from
// Debian's /usr/bin/qemu-<T>-static. Per scenario: one cold run (fresh
// RUNNER_TOOL_CACHE, no entries of ours in binfmt_misc) and N warm runs (same
// tool cache, entries already registered and kept).
//
//   sudo npm run bench [-- --runs N] [--json] [--platforms LIST] [--targets LIST] [--keep-cache] [--force]
//
// binfmt_misc is shared by everything on the machine. The bench removes, at the
// end (also on errors and Ctrl-C), only the entries that did not exist when it
// started and whose interpreter lies in its own temporary directory. It never
// writes to `status`, and by default refuses to start when an entry it would
// register already exists (it would be replaced and not put back).
'use strict'

const { execFileSync, spawn, spawnSync } = require('child_process')
const fs = require('fs')
const http = require('http')
const os = require('os')
const path = require('path')

const { SCRIPT, ensureDist, parseKeyValueFile } = require('./action-env')
const BINFMT = '/proc/sys/fs/binfmt_misc'
const QEMU_VERSION = '7.2.0-1'
/** the emulators of a tonistiigi/binfmt amd64 release */
const TONISTIIGI_TARGETS = ['aarch64', 'arm', 'riscv64', 'ppc64le', 's390x', 'mips64el', 'mips64', 'loongarch64', 'i386', 'x86_64']
const TARGET_WARM_ALL_WALL_MS = 300
const TARGET_REGISTER_VERIFY_MS = 50
/** cold runs against `curl | tar xz` of the same archive: all at most 1.3x, one platform at most 1.0x */
const TARGET_COLD_RATIO = { all: 1.3, one: 1.0 }
const METRICS = [
  ['download', 'download'],
  ['extract', 'extract'],
  ['register', 'register'],
  ['verify', 'verify'],
  ['registerVerify', 'register+verify'],
  ['fetch', 'fetch'],
  ['total', 'action total'],
  ['wall', 'whole process'],
]

// Docker/Go architecture names -> QEMU target (as src/platform.ts), to know which entries a platform list touches.
const ARCH_ALIASES = {
  amd64: 'x86_64', 'x86-64': 'x86_64', x64: 'x86_64', 386: 'i386', i686: 'i386', x86: 'i386',
  arm64: 'aarch64', armhf: 'arm', armel: 'arm', armv7: 'arm', armv7l: 'arm', armv6: 'arm', armv6l: 'arm',
  ppc64el: 'ppc64le', mips64le: 'mips64el', mipsle: 'mipsel', loong64: 'loongarch64', riscv: 'riscv64',
}

function usage(code) {
  const text = `usage: npm run bench -- [options]   (as root)

Times cold and warm runs of dist/index.js against a loopback HTTP server
serving a tonistiigi-layout archive (qemu-version ${QEMU_VERSION}) built from
/usr/bin/qemu-<T>-static. Scenarios: one (platforms=linux/arm64) and all
(platforms=all), inputs buildx=false cache=false.

  --runs N          warm runs per scenario (default 5)
  --cold N          cold runs per scenario, each alternating with a
                    \`curl | tar xz\` of the same archive (default 3)
  --json            print the results as JSON (progress goes to stderr)
  --platforms LIST  comma-separated platforms: scenario one uses the first,
                    scenario all the whole list (instead of platforms=all)
  --targets LIST    emulators in the archive (default: ${TONISTIIGI_TARGETS.join(',')});
                    'installed': every /usr/bin/qemu-<T>-static (Debian's 31)
  --keep-cache      keep the temporary directory (archive, tool caches)
  --force           run even when binfmt entries the bench would register
                    already exist (they get replaced and are not put back)
`
  ;(code ? process.stderr : process.stdout).write(text)
  process.exit(code)
}

function parseArgs(argv) {
  const opts = { runs: 5, cold: 3, json: false, platforms: undefined, targets: TONISTIIGI_TARGETS, keepCache: false, force: false }
  const list = v => v.split(/[\s,]+/).filter(Boolean)
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]
    const eq = arg.indexOf('=')
    const name = arg.startsWith('--') && eq > 0 ? arg.slice(0, eq) : arg
    const value = () => {
      if (arg.startsWith('--') && eq > 0) return arg.slice(eq + 1)
      if (i + 1 >= argv.length) fail(`${name} needs a value`)
      return argv[++i]
    }
    switch (name) {
      case '--runs':
        opts.runs = Number(value())
        if (!Number.isInteger(opts.runs) || opts.runs < 1) fail('--runs must be a positive integer')
        break
      case '--cold':
        opts.cold = Number(value())
        if (!Number.isInteger(opts.cold) || opts.cold < 1) fail('--cold must be a positive integer')
        break
      case '--json':
        opts.json = true
        break
      case '--platforms':
        opts.platforms = list(value())
        if (!opts.platforms.length) fail('--platforms needs at least one platform')
        break
      case '--targets':
        opts.targets = [...new Set(list(value()))]
        if (opts.targets.join() === 'installed') opts.targets = installedTargets()
        if (!opts.targets.length) fail('--targets needs at least one target')
        break
      case '--keep-cache':
        opts.keepCache = true
        break
      case '--force':
        opts.force = true
        break
      case '-h':
      case '--help':
        usage(0)
        break
      default:
        process.stderr.write(`bench: unknown option ${arg}\n`)
        usage(2)
    }
  }
  for (const t of opts.targets) if (!/^[a-z0-9_]+$/.test(t)) fail(`--targets: '${t}' is not a QEMU target name`)
  return opts
}

/** QEMU targets of the installed /usr/bin/qemu-<T>-static, minus names that are no target (e.g. debootstrap helpers). */
function installedTargets() {
  return fs
    .readdirSync('/usr/bin')
    .map(f => /^qemu-([a-z0-9_]+)-static$/.exec(f))
    .filter(Boolean)
    .map(m => m[1])
    .sort()
}

class BenchError extends Error {}
function fail(message) {
  throw new BenchError(message)
}

const progress = m => process.stderr.write(`bench: ${m}\n`)

// ---- binfmt_misc ----------------------------------------------------------

function binfmtMounted() {
  return fs.existsSync(path.join(BINFMT, 'register'))
}

/** Entry names (never `register` or `status`). */
function entryNames() {
  if (!binfmtMounted()) return []
  return fs.readdirSync(BINFMT).filter(n => n !== 'register' && n !== 'status')
}

function interpreterOf(name) {
  try {
    const m = /^interpreter (.*)$/m.exec(fs.readFileSync(path.join(BINFMT, name), 'utf8'))
    return m ? m[1] : ''
  } catch {
    return undefined
  }
}

/** binfmt entry names a platforms input may make the action register, given the archive's targets. */
function entriesFor(platforms, targets) {
  const names = new Set()
  const add = t => {
    names.add(`qemu-${t}`)
    if (t === 'i386') names.add('qemu-i486') // i486 runs on qemu-i386
  }
  if (platforms === 'all' || platforms.some(p => p.toLowerCase() === 'all')) {
    targets.forEach(add)
  } else {
    for (const p of platforms) {
      const parts = p.toLowerCase().split('/')
      if (parts[0] === 'linux') parts.shift()
      add(ARCH_ALIASES[parts[0]] || parts[0])
    }
  }
  return names
}

/**
 * Removes entries that were not there when the bench started, that the bench
 * may create, and whose interpreter is in the bench's directory. Writes only
 * `-1` to such an entry file; never to `status`. Returns what it removed.
 */
function removeOurEntries(state) {
  const removed = []
  const problems = []
  for (const name of entryNames()) {
    if (state.before.has(name) || !state.mayCreate.has(name)) continue
    const interp = interpreterOf(name)
    if (interp === undefined) continue
    if (!state.dirs.some(d => interp.startsWith(`${d}/`))) continue
    try {
      // 'r+': never create a file in binfmt_misc
      fs.writeFileSync(path.join(BINFMT, name), '-1', { flag: 'r+' })
      removed.push(name)
    } catch (e) {
      if (fs.existsSync(path.join(BINFMT, name))) problems.push(`${name}: ${e.message}`)
    }
  }
  if (problems.length) process.stderr.write(`bench: could not remove ${problems.join('; ')}\n`)
  return removed
}

// ---- archive and server -----------------------------------------------------

function buildArchive(dir, targets) {
  const qemu = QEMU_VERSION.replace(/-[^-]*$/, '')
  const stage = path.join(dir, 'stage')
  fs.mkdirSync(stage, { recursive: true })
  for (const t of targets) {
    const src = `/usr/bin/qemu-${t}-static`
    if (!fs.existsSync(src)) fail(`${src} does not exist; install qemu-user-static or change --targets`)
    fs.copyFileSync(src, path.join(stage, `qemu-${t}`))
    fs.chmodSync(path.join(stage, `qemu-${t}`), 0o755)
  }
  const rel = `releases/download/deploy/v${QEMU_VERSION}/qemu_v${qemu}_linux-amd64.tar.gz`
  const file = path.join(dir, 'www', rel)
  fs.mkdirSync(path.dirname(file), { recursive: true })
  execFileSync('tar', ['--owner=0', '--group=0', '--numeric-owner', '-czf', file, ...targets.map(t => `qemu-${t}`)], {
    cwd: stage,
    stdio: ['ignore', 'ignore', 'inherit'],
  })
  fs.rmSync(stage, { recursive: true, force: true })
  return { file, size: fs.statSync(file).size }
}

/** Serves `root` on 127.0.0.1 (ephemeral port); `%2F` in a path is a `/` on disk. */
function startServer(root) {
  const requests = []
  const server = http.createServer((req, res) => {
    requests.push(req.url)
    let rel
    try {
      rel = decodeURIComponent((req.url || '/').split('?')[0])
    } catch {
      rel = '/'
    }
    const file = path.join(root, rel)
    let st
    if (file.startsWith(root + path.sep)) st = fs.statSync(file, { throwIfNoEntry: false })
    if (!st || !st.isFile() || (req.method !== 'GET' && req.method !== 'HEAD')) {
      res.writeHead(404, { 'Content-Type': 'text/plain' })
      res.end('not found\n')
      return
    }
    res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Length': st.size })
    if (req.method === 'HEAD') res.end()
    else fs.createReadStream(file).on('error', () => req.socket.destroy()).pipe(res)
  })
  return new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => resolve({ server, port: server.address().port, requests }))
  })
}

// ---- running the action -------------------------------------------------------

let child
let interrupted


/** One `node dist/index.js` main phase with a runner-like, clean environment; wall clock measured around it. */
function runAction(dir, toolCache, inputs) {
  const files = {
    GITHUB_OUTPUT: path.join(dir, 'github_output'),
    GITHUB_STATE: path.join(dir, 'github_state'),
    GITHUB_STEP_SUMMARY: path.join(dir, 'step_summary'),
    GITHUB_ENV: path.join(dir, 'github_env'),
    GITHUB_PATH: path.join(dir, 'github_path'),
  }
  for (const f of Object.values(files)) fs.writeFileSync(f, '')
  const env = {
    PATH: process.env.PATH || '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
    HOME: os.homedir(),
    LANG: 'C.UTF-8',
    CI: 'true',
    GITHUB_ACTIONS: 'true',
    RUNNER_OS: 'Linux',
    RUNNER_ARCH: 'X64',
    RUNNER_DEBUG: '1',
    RUNNER_TEMP: path.join(dir, 'temp'),
    RUNNER_TOOL_CACHE: toolCache,
    ...files,
  }
  for (const [k, v] of Object.entries(inputs)) env[`INPUT_${k.replace(/ /g, '_').toUpperCase()}`] = v
  fs.mkdirSync(env.RUNNER_TEMP, { recursive: true })
  fs.mkdirSync(toolCache, { recursive: true })

  return new Promise((resolve, reject) => {
    const out = []
    const err = []
    const start = process.hrtime.bigint()
    let end
    child = spawn(process.execPath, [SCRIPT], { cwd: dir, env, stdio: ['ignore', 'pipe', 'pipe'], timeout: 300000 })
    child.stdout.on('data', d => out.push(d))
    child.stderr.on('data', d => err.push(d))
    child.on('error', reject)
    child.on('exit', () => (end = process.hrtime.bigint()))
    child.on('close', (code, signal) => {
      child = undefined
      const wall = Number((end || process.hrtime.bigint()) - start) / 1e6
      const stdout = Buffer.concat(out).toString()
      const line = stdout.split('\n').find(l => l.startsWith('::debug::timings '))
      let timings
      try {
        timings = line ? JSON.parse(line.slice('::debug::timings '.length)) : undefined
      } catch {
        timings = undefined
      }
      resolve({
        code,
        signal,
        wall,
        timings,
        stdout,
        stderr: Buffer.concat(err).toString(),
        outputs: parseKeyValueFile(fs.readFileSync(files.GITHUB_OUTPUT, 'utf8')),
        added: (stdout.match(/: registering /g) || []).length,
        replaced: (stdout.match(/: replacing the existing entry/g) || []).length,
        kept: (stdout.match(/; kept$/gm) || []).length,
      })
    })
  })
}

function checkInterrupted() {
  if (interrupted) throw new BenchError(`interrupted (${interrupted})`)
}

async function runScenario(state, scenario, opts, urlTemplate, requests) {
  const inputs = {
    platforms: scenario.platforms,
    'qemu-version': QEMU_VERSION,
    'qemu-url': urlTemplate,
    buildx: 'false',
    cache: 'false',
  }
  const toolCache = path.join(state.dir, `tool-cache-${scenario.name}`)
  fs.rmSync(toolCache, { recursive: true, force: true })
  // Cold also means: none of the bench's entries registered yet.
  removeOurEntries(state)
  const runs = []
  for (let i = 0; i <= opts.runs; i++) {
    checkInterrupted()
    const kind = i === 0 ? 'cold' : 'warm'
    const requestsBefore = requests.length
    const r = await runAction(state.dir, toolCache, inputs)
    checkInterrupted()
    if (r.code !== 0 || !r.timings) {
      const errors = r.stdout.split('\n').filter(l => l.startsWith('::error'))
      const tail = errors.length ? errors.join('\n') : `${r.stdout}\n${r.stderr}`.trim().split('\n').slice(-15).join('\n')
      fail(`${scenario.name} ${kind} run failed (exit ${r.code}${r.signal ? `, ${r.signal}` : ''}${r.timings ? '' : ', no timings line'}):\n${tail}`)
    }
    const t = r.timings
    const run = {
      kind,
      wall: r.wall,
      download: t.download ?? 0,
      extract: t.extract ?? 0,
      register: t.register ?? 0,
      verify: t.verify ?? 0,
      registerVerify: (t.register ?? 0) + (t.verify ?? 0),
      fetch: t.fetch ?? 0,
      total: t.total ?? 0,
      cacheHit: r.outputs['cache-hit'],
      emulators: r.outputs.emulators || '',
      entries: { added: r.added, replaced: r.replaced, kept: r.kept },
      httpRequests: requests.length - requestsBefore,
    }
    runs.push(run)
    {
      progress(
        `${scenario.name} ${kind}${kind === 'warm' ? ` ${i}/${opts.runs}` : ''}: ${run.wall.toFixed(1)} ms, ` +
          `${run.httpRequests} HTTP request${run.httpRequests === 1 ? '' : 's'} ` +
          `(register+verify ${run.registerVerify.toFixed(1)} ms, cache-hit ${run.cacheHit}, ` +
          `added ${r.added}, replaced ${r.replaced}, kept ${r.kept}; emulators ${run.emulators || 'none'})`,
      )
    }
  }
  return runs
}

/** The floor for a cold run: `curl | tar xz` of the same archive into a fresh directory. */
function runBaseline(dir, url) {
  const out = fs.mkdtempSync(path.join(dir, 'baseline-'))
  return new Promise((resolve, reject) => {
    const start = process.hrtime.bigint()
    child = spawn('sh', ['-c', 'curl -sSf "$1" | tar xzf - -C "$2"', 'sh', url, out], { stdio: ['ignore', 'ignore', 'pipe'] })
    const err = []
    child.stderr.on('data', d => err.push(d))
    child.on('error', reject)
    child.on('close', code => {
      child = undefined
      const wall = Number(process.hrtime.bigint() - start) / 1e6
      fs.rmSync(out, { recursive: true, force: true })
      if (code !== 0) reject(new BenchError(`curl | tar xz failed: ${Buffer.concat(err).toString().trim()}`))
      else resolve(wall)
    })
  })
}

/** Cold runs of the action, each right after a baseline run (alternating, so both see the same machine state). */
async function runColdComparison(state, scenario, opts, urlTemplate, archiveUrl) {
  const inputs = { platforms: scenario.platforms, 'qemu-version': QEMU_VERSION, 'qemu-url': urlTemplate, buildx: 'false', cache: 'false' }
  const action = []
  const baseline = []
  for (let i = 0; i < opts.cold; i++) {
    checkInterrupted()
    baseline.push(await runBaseline(state.dir, archiveUrl))
    const toolCache = path.join(state.dir, `tool-cache-cold-${scenario.name}-${i}`)
    removeOurEntries(state)
    const r = await runAction(state.dir, toolCache, inputs)
    if (r.code !== 0) fail(`${scenario.name} cold run failed (exit ${r.code}):\n${r.stdout.split('\n').filter(l => l.startsWith('::error')).join('\n')}`)
    action.push(r.wall)
    fs.rmSync(toolCache, { recursive: true, force: true })
    progress(`${scenario.name} cold ${i + 1}/${opts.cold}: action ${r.wall.toFixed(1)} ms, curl | tar xz ${baseline[baseline.length - 1].toFixed(1)} ms`)
  }
  const a = median(action)
  const b = median(baseline)
  return { scenario: scenario.name, platforms: scenario.platforms, action: round(a), baseline: round(b), ratio: Math.round((a / b) * 100) / 100, limit: TARGET_COLD_RATIO[scenario.name] }
}

// ---- statistics and report ----------------------------------------------------

function median(xs) {
  const s = [...xs].sort((a, b) => a - b)
  const m = Math.floor(s.length / 2)
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2
}

function stats(runs) {
  const out = { n: runs.length }
  for (const [key] of METRICS) {
    const xs = runs.map(r => r[key])
    out[key] = { median: round(median(xs)), min: round(Math.min(...xs)) }
  }
  return out
}

const round = x => Math.round(x * 10) / 10

function table(groups) {
  const cols = groups.map(g => `${g.scenario} ${g.kind}${g.kind === 'warm' ? ` (n=${g.stats.n})` : ''}`)
  const w = 8
  const first = 16
  const pad = (s, n) => String(s).padStart(n)
  const lines = []
  lines.push(''.padEnd(first) + cols.map(c => pad(c, 2 * w + 1)).join('  '))
  lines.push(`${'ms'.padEnd(first)}${groups.map(() => `${pad('median', w)} ${pad('min', w)}`).join('  ')}`)
  for (const [key, label] of METRICS) {
    lines.push(label.padEnd(first) + groups.map(g => `${pad(g.stats[key].median.toFixed(1), w)} ${pad(g.stats[key].min.toFixed(1), w)}`).join('  '))
  }
  return lines.join('\n')
}

function evaluateTargets(groups) {
  const targets = []
  const allWarm = groups.find(g => g.scenario === 'all' && g.kind === 'warm')
  if (allWarm) {
    targets.push({
      name: `warm whole process (all) < ${TARGET_WARM_ALL_WALL_MS} ms`,
      scenario: 'all',
      kind: 'warm',
      metric: 'wall',
      value: allWarm.stats.wall.median,
      limit: TARGET_WARM_ALL_WALL_MS,
      met: allWarm.stats.wall.median < TARGET_WARM_ALL_WALL_MS,
    })
  }
  for (const g of groups) {
    targets.push({
      name: `register+verify (${g.scenario} ${g.kind}) < ${TARGET_REGISTER_VERIFY_MS} ms`,
      scenario: g.scenario,
      kind: g.kind,
      metric: 'registerVerify',
      value: g.stats.registerVerify.median,
      limit: TARGET_REGISTER_VERIFY_MS,
      met: g.stats.registerVerify.median < TARGET_REGISTER_VERIFY_MS,
    })
  }
  return targets
}

// ---- main -------------------------------------------------------------------------


async function main(state) {
  const opts = parseArgs(process.argv.slice(2))
  if (process.getuid && process.getuid() !== 0) fail('run as root (sudo npm run bench): the bench registers and removes binfmt_misc entries')
  if (process.arch !== 'x64') fail(`the archive is a linux-amd64 one; this host is ${process.arch}`)
  for (const t of opts.targets) {
    if (!fs.existsSync(`/usr/bin/qemu-${t}-static`)) fail(`/usr/bin/qemu-${t}-static does not exist; install qemu-user-static or change --targets`)
  }
  if (!ensureDist(progress)) fail('npm run build failed; fix the build and retry')

  const scenarios = opts.platforms
    ? [
        { name: 'one', platforms: opts.platforms[0] },
        { name: 'all', platforms: opts.platforms.join(',') },
      ]
    : [
        { name: 'one', platforms: 'linux/arm64' },
        { name: 'all', platforms: 'all' },
      ]

  // What is in binfmt_misc now stays untouched; refuse to replace existing entries unless --force.
  state.before = new Set(entryNames())
  for (const s of scenarios) for (const n of entriesFor(s.platforms === 'all' ? 'all' : s.platforms.split(','), opts.targets)) state.mayCreate.add(n)
  const clash = [...state.mayCreate].filter(n => state.before.has(n)).sort()
  if (clash.length && !opts.force) {
    fail(
      `binfmt_misc already has ${clash.join(', ')}; the bench would replace ${clash.length > 1 ? 'them' : 'it'} and not put ${clash.length > 1 ? 'them' : 'it'} back. ` +
        `Remove ${clash.length > 1 ? 'them' : 'it'}, choose other --platforms/--targets, or pass --force`,
    )
  }
  if (clash.length) progress(`--force: ${clash.join(', ')} will be replaced and not restored`)

  state.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'setup-qemu-binfmt-bench-'))
  state.dirs = [state.dir, fs.realpathSync(state.dir)]
  progress(`building the archive of ${opts.targets.join(', ')} in ${state.dir}`)
  const archive = buildArchive(state.dir, opts.targets)
  checkInterrupted()
  const srv = await startServer(path.join(state.dir, 'www'))
  state.server = srv.server
  const urlTemplate = `http://127.0.0.1:${srv.port}/releases/download/deploy%2Fv{version}/qemu_v{qemu}_linux-{host}.tar.gz`
  progress(`serving ${(archive.size / 1048576).toFixed(1)} MiB at ${urlTemplate}`)

  const archiveUrl = `http://127.0.0.1:${srv.port}/releases/download/deploy%2Fv${QEMU_VERSION}/qemu_v${QEMU_VERSION.replace(/-[^-]*$/, '')}_linux-amd64.tar.gz`
  const comparisons = []
  for (const s of scenarios) comparisons.push(await runColdComparison(state, s, opts, urlTemplate, archiveUrl))

  const groups = []
  for (const s of scenarios) {
    const runs = await runScenario(state, s, opts, urlTemplate, srv.requests)
    const cold = runs.filter(r => r.kind === 'cold')
    const warm = runs.filter(r => r.kind === 'warm')
    groups.push({ scenario: s.name, platforms: s.platforms, kind: 'cold', stats: stats(cold), runs: cold })
    groups.push({ scenario: s.name, platforms: s.platforms, kind: 'warm', stats: stats(warm), runs: warm })
    if (warm.some(r => r.cacheHit !== 'true')) progress(`warning: a warm ${s.name} run was not a cache hit`)
    if (warm.some(r => r.entries.added || r.entries.replaced)) progress(`warning: a warm ${s.name} run registered entries instead of keeping them`)
  }
  const targets = evaluateTargets(groups)
  for (const c of comparisons) {
    if (c.limit === undefined) continue
    targets.push({ name: `cold ${c.scenario} <= ${c.limit}x curl | tar xz`, scenario: c.scenario, kind: 'cold', metric: 'ratio', value: c.ratio, limit: c.limit, met: c.ratio <= c.limit })
  }
  const removed = removeOurEntries(state)

  const info = {
    node: process.version,
    kernel: os.release(),
    cpus: os.cpus().length,
    cpu: (os.cpus()[0] || {}).model,
    qemuVersion: QEMU_VERSION,
    qemuUserStatic: debVersion(),
    targets: opts.targets,
    archiveBytes: archive.size,
    runs: opts.runs,
    scenarios,
  }
  if (opts.json) {
    process.stdout.write(`${JSON.stringify({ info, results: groups, comparisons, targets, removedEntries: removed }, null, 2)}\n`)
  } else {
    const out = []
    out.push('')
    out.push(`setup-qemu-binfmt bench: node ${info.node}, kernel ${info.kernel}, ${info.cpus} x ${info.cpu}`)
    out.push(`archive: ${opts.targets.length} emulators (${opts.targets.join(', ')}), ${(archive.size / 1048576).toFixed(1)} MiB, qemu-user-static ${info.qemuUserStatic}`)
    out.push(`scenarios: ${scenarios.map(s => `${s.name} (platforms=${s.platforms})`).join(', ')}; buildx=false cache=false; ${opts.runs} warm runs`)
    out.push('')
    out.push(table(groups))
    out.push('')
    out.push(`cold runs against curl | tar xz of the same archive (median of ${opts.cold}, alternating):`)
    out.push('| scenario | action cold (ms) | curl \\| tar xz (ms) | ratio | target |')
    out.push('|---|---|---|---|---|')
    for (const c of comparisons) out.push(`| ${c.scenario} (${c.platforms}) | ${c.action.toFixed(0)} | ${c.baseline.toFixed(0)} | ${c.ratio.toFixed(2)}x | <= ${c.limit}x |`)
    out.push('')
    out.push('targets:')
    for (const t of targets) out.push(`  ${t.met ? 'met    ' : 'NOT met'}  ${t.name}: ${t.metric === 'ratio' ? `${t.value.toFixed(2)}x` : `median ${t.value.toFixed(1)} ms`}`)
    out.push('')
    out.push(`binfmt entries removed at the end: ${removed.join(', ') || 'none'}`)
    process.stdout.write(`${out.join('\n')}\n`)
  }
}

function debVersion() {
  const r = spawnSync('dpkg-query', ['-W', '-f=${Version}', 'qemu-user-static'])
  return r.status === 0 ? r.stdout.toString() : 'unknown'
}

/** Idempotent and synchronous, so it can run from 'exit' too. */
function cleanup(state, opts) {
  if (state.cleaned) return
  state.cleaned = true
  if (state.dirs.length) {
    const removed = removeOurEntries(state)
    if (removed.length) progress(`removed binfmt entries ${removed.join(', ')}`)
    const left = entryNames().filter(n => !state.before.has(n) && state.mayCreate.has(n))
    if (left.length) progress(`new entries not removed (not created by the bench): ${left.join(', ')}`)
  }
  if (state.server) {
    state.server.closeAllConnections()
    state.server.close()
  }
  if (state.dir) {
    if (opts.keepCache) progress(`kept ${state.dir}`)
    else fs.rmSync(state.dir, { recursive: true, force: true })
  }
}

const state = { before: new Set(), mayCreate: new Set(), dirs: [], dir: undefined, server: undefined, cleaned: false }
let cleanupOpts = { keepCache: false }
try {
  cleanupOpts = parseArgs(process.argv.slice(2))
} catch {
  // reported by main()
}

for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(sig, () => {
    if (interrupted) return
    interrupted = sig
    progress(`${sig}: stopping; cleaning up after the current run`)
    // Wait for the action to exit before cleaning up, so nothing gets registered after the cleanup.
    // Between runs the main loop notices the flag at its next check.
    if (child && child.exitCode === null && child.signalCode === null) child.kill('SIGTERM')
  })
}
process.on('exit', () => cleanup(state, cleanupOpts))

main(state).then(
  () => {
    cleanup(state, cleanupOpts)
    process.exit(interrupted ? 130 : 0)
  },
  e => {
    process.stderr.write(`bench: ${e instanceof BenchError ? e.message : e && e.stack ? e.stack : e}\n`)
    cleanup(state, cleanupOpts)
    process.exit(interrupted ? 130 : 1)
  },
)
