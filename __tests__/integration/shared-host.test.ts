// What a failed, killed or cancelled run leaves in binfmt_misc, and runs that
// share a host: entries are registered under staging names and put in place
// only once verified, so an entry that worked before a run keeps working
// whatever the run does; pins re-register; stuck emulators are killed as a
// process group; a host-wide lock serializes runs; SIGINT/SIGTERM clean up;
// `uninstall` undoes a step unless another live job uses its entries.
import { execFileSync, spawn } from 'child_process'
import * as fs from 'fs'
import * as http from 'http'
import * as net from 'net'
import * as os from 'os'
import * as path from 'path'
import { ACTION_NODE, RunActionResult, actionScript, inputEnvName, parseKeyValueFile, runAction } from '../support/action'
import { BinfmtEntry, entryExists, parseEntry, readEntry, registerLine, registerRaw, removeEntry } from '../support/binfmt'
import { rootfs, sha256 } from '../support/fixtures'
import {
  CoreFixtures,
  VERSION,
  closeFixtures,
  debianLine,
  errorsOf,
  expectCleanFailure,
  expectForeignUname,
  expectRegistered,
  expectSuccess,
  freshDir,
  leaveAbandoned,
  myEntry,
  myRaw,
  registerMine,
  startFixtures,
  transcript,
  withKernel,
} from './core-helpers'
import { fakeDir, hangingDir, killUnder, processesUnder, whenPrinted } from './stand-ins'

// Held from jest's Node while the action runs under Node 24: the name must be the same for both.
const LOCK = '\0setup-qemu-binfmt/binfmt_misc/'.padEnd(108, '.')

let fx: CoreFixtures
beforeAll(async () => {
  fx = await startFixtures()
}, 120000)
afterAll(() => closeFixtures(fx))

const inputs = (platforms: string, extra: Record<string, string> = {}): Record<string, string> => ({
  platforms,
  'qemu-version': VERSION,
  'qemu-url': fx.tarGzUrl,
  buildx: 'false',
  ...extra,
})

const staged = (): string[] => [...myRaw().keys()].filter(n => /\.staged-\d+$/.test(n))

/** An entry whose interpreter file is gone survives a failed run and still runs programs; returns the run. */
async function expectGoneInterpreterSurvivesFailure(): Promise<RunActionResult> {
  return withKernel(async () => {
    const gone = freshDir('gone')
    const interpreter = path.join(gone, 'qemu-arm-static')
    fs.copyFileSync('/usr/bin/qemu-arm-static', interpreter)
    registerMine(debianLine('arm', 'F', interpreter))
    fs.rmSync(interpreter)
    const before = myRaw()
    const r = await runAction({ platforms: 'linux/arm/v7', 'qemu-url': fakeDir(), buildx: 'false' })
    expectCleanFailure(r, before, /linux\/arm\/v7/, /verification failed/)
    expect(r.stdout).not.toMatch(/rollback incomplete/)
    expect(myEntry('qemu-arm')).toMatchObject({ enabled: true, interpreter, flags: 'F' })
    await expectForeignUname('armhf')
    return r
  })
}

describe('a run that fails leaves every entry that existed before it working (issue 7.2)', () => {
  test('an entry whose interpreter file is gone from the host (made through a container, or deleted since) survives a failed run and still runs programs', async () => {
    await expectGoneInterpreterSurvivesFailure()
  })

  test('the same on a host a killed run left behind (issue 25): its staging entries, interpreters gone, are removed by the run, and the test copes', async () => {
    const killed = leaveAbandoned(['aarch64', 'arm'])
    try {
      // F keeps them working with their files gone, as on the host the issue found.
      await expectForeignUname('arm64')
      const r = await expectGoneInterpreterSurvivesFailure()
      expect(r.stdout).toMatch(
        new RegExp(`^Removing entries left by runs that were killed before they finished: ${killed.names.join(', ').replace(/\./g, '\\.')}$`, 'm'),
      )
      expect(killed.names.filter(n => entryExists(n))).toEqual([])
    } finally {
      killed.cleanUp()
    }
  })

  test('a replaced entry is swapped only after the new one is verified: the log says so and nothing staged is left', async () => {
    await withKernel(async () => {
      registerMine(debianLine('aarch64', 'OC'))
      const r = await runAction(inputs('linux/arm64'))
      expectSuccess(r)
      expect(r.stdout).toMatch(/^qemu-aarch64: replacing the existing entry \(interpreter \/usr\/bin\/qemu-aarch64-static, flags OC\)/m)
      expectRegistered('qemu-aarch64', `${r.toolCache}/`)
      expect(staged()).toEqual([])
      await expectForeignUname('arm64')
    })
  })
})

describe('pins pin what the kernel holds (issue 7.3)', () => {
  test('with qemu-sha256, an entry that looks identical by path is registered again from the checked file', async () => {
    await withKernel(async () => {
      const cache = freshDir('toolcache')
      expectSuccess(await runAction(inputs('linux/arm64'), { toolCache: cache }))
      const entry = readEntry('qemu-aarch64')
      // Make the kernel hold another file under the same path, then put the right file back:
      // what a tool cache swapped at registration time leaves behind.
      // (Renamed into place: the kernel keeps the file it holds open and busy.)
      const swap = (from: string): void => {
        fs.copyFileSync(from, `${entry.interpreter}.new`)
        fs.renameSync(`${entry.interpreter}.new`, entry.interpreter)
      }
      const good = `${entry.interpreter}.good`
      fs.copyFileSync(entry.interpreter, good)
      removeEntry('qemu-aarch64')
      swap('/usr/bin/qemu-riscv64-static')
      registerRaw(registerLine(entry))
      swap(good)
      fs.rmSync(good)
      const held = readEntry('qemu-aarch64')
      expect(held.interpreter).toBe(entry.interpreter)

      const r = await runAction(inputs('linux/arm64', { 'qemu-sha256': fx.archives.sha256sums }), { toolCache: cache })
      expectSuccess(r)
      expect(r.stdout).toMatch(/^qemu-aarch64: registering again from the pinned file /m)
      expect(r.stdout).not.toMatch(/qemu-aarch64: already registered/)
      expectRegistered('qemu-aarch64', entry.interpreter)
      expect(sha256(entry.interpreter)).toBe(sha256('/usr/bin/qemu-aarch64-static'))
      await expectForeignUname('arm64')
    })
  })
})

describe('stuck programs are ended (issue 7.4)', () => {
  test('an emulator that ignores SIGTERM and leaves a child holding its output: the probe is killed as a group after 20 s, nothing is left', async () => {
    await withKernel(async () => {
      const dir = hangingDir()
      const before = myRaw()
      const t0 = Date.now()
      try {
        const r = await runAction({ platforms: 'linux/arm/v7', 'qemu-url': dir, buildx: 'false' }, { timeoutMs: 120000 })
        const seconds = (Date.now() - t0) / 1000
        expectCleanFailure(r, before, /linux\/arm\/v7/, /did not finish within 20 s/)
        expect(seconds).toBeLessThan(60)
        // The stand-in and its child went with the probe's process group.
        expect(processesUnder(dir)).toEqual([])
      } finally {
        killUnder(dir)
      }
    })
  }, 150000)
})

describe('misleading causes are named (issue 7.7)', () => {
  test('a noexec RUNNER_TEMP: the error names RUNNER_TEMP and noexec, nothing is downloaded or registered', async () => {
    const temp = freshDir('noexec')
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'noexec,mode=0777', 'tmpfs', temp])
    try {
      await withKernel(async () => {
        fx.server.reset()
        const before = myRaw()
        const r = await runAction(inputs('linux/arm64'), { temp })
        expectCleanFailure(r, before, /^RUNNER_TEMP \(/, /noexec/, /set RUNNER_TEMP/)
        expect(errorsOf(r)[0]).not.toMatch(/qemu-version/)
        expect(fx.server.requests).toEqual([])
      })
    } finally {
      execFileSync('umount', [temp])
    }
  })

  test('binfmt_misc switched off for the whole host: one error naming the status file and how to switch it on, not a bad emulator', async () => {
    const { results, dump } = await inPrivateTable({ pre: [], disable: true, runs: [{ inputs: inputs('linux/arm64') }] })
    const [r] = results
    expect(r.code).toBe(1)
    expect(r.errors).toHaveLength(1)
    expect(r.errors[0]).toMatch(/^binfmt_misc is disabled for the whole host \(\/proc\/sys\/fs\/binfmt_misc\/status says disabled\)/)
    expect(r.errors[0]).toMatch(/echo 1/)
    expect(r.errors[0]).not.toMatch(/qemu-version/)
    expect([...dump.keys()]).toEqual([])
  })
})

/** Holds the host-wide lock from this process, answering as `holder` would. */
function holdLock(holder: object): Promise<net.Server> {
  return new Promise((resolve, reject) => {
    const server = net.createServer(s => s.end(JSON.stringify(holder)))
    server.once('error', reject)
    server.listen({ path: LOCK }, () => resolve(server))
  })
}

describe('the host-wide lock (issue 8)', () => {
  const holder = { pid: 4242, user: 'someone', job: 'org/repo run 7 job build', since: '2026-11-30T10:00:00.000Z' }

  test('held too long by another run: exit 1, one error naming the holder and lock-timeout, nothing registered', async () => {
    await withKernel(async () => {
      const before = myRaw()
      const lock = await holdLock(holder)
      try {
        const t0 = Date.now()
        const r = await runAction(inputs('linux/arm64', { 'lock-timeout': '2' }))
        expect(Date.now() - t0).toBeLessThan(30000)
        expect(r.stdout).toMatch(/Waiting for another setup-qemu-binfmt run .*pid 4242/)
        expectCleanFailure(
          r,
          before,
          /^binfmt_misc is locked by another setup-qemu-binfmt run, pid 4242 \(user someone, org\/repo run 7 job build, since 2026-11-30T10:00:00.000Z\)/,
          /lock-timeout/,
        )
      } finally {
        lock.close()
      }
    })
  })

  // Issue 23.3: another local user holds the lock and describes itself with commands in the runner's older syntax.
  test('a holder describing itself with ##[...] workflow commands: no line of the log carries one', async () => {
    await withKernel(async () => {
      const before = myRaw()
      const forged = { pid: 4242, user: '##[add-mask]runner', job: '##[set-output name=platforms;]pwned ##[stop-commands]tok', since: '##[error]x' }
      const lock = await holdLock(forged)
      try {
        const r = await runAction(inputs('linux/arm64', { 'lock-timeout': '2' }))
        expectCleanFailure(r, before, /^binfmt_misc is locked by another setup-qemu-binfmt run, pid 4242 \(user ## \[add-mask\]runner/)
        expect(r.stdout).toMatch(/^Waiting for another setup-qemu-binfmt run .*pid 4242/m)
        const lines = r.stdout.split('\n')
        expect(lines.filter(l => l.includes('##['))).toEqual([])
        // The runner's newer syntax: only the action's own commands start a line.
        expect(lines.filter(l => /^\s*::/.test(l) && !/^::(group|endgroup|debug|error|warning|notice)::/.test(l))).toEqual([])
      } finally {
        lock.close()
      }
    })
  })

  test('a run waits while another holds the lock, then proceeds', async () => {
    await withKernel(async () => {
      const lock = await holdLock(holder)
      let released = false
      const r = await runAction(inputs('linux/arm64'), {
        onSpawn: child =>
          void whenPrinted(child, /Waiting for another setup-qemu-binfmt run/).then(() => {
            released = true
            lock.close()
          }),
      })
      if (!released) lock.close()
      expectSuccess(r)
      expect(released).toBe(true)
      expectRegistered('qemu-aarch64', `${r.toolCache}/`)
    })
  })

  test('a run SIGKILLed while it holds the lock (mid-verification): the next run proceeds at once and removes what the dead run staged', async () => {
    await withKernel(async () => {
      const dir = hangingDir()
      try {
        const killed = await runAction(
          { platforms: 'linux/arm/v7', 'qemu-url': dir, buildx: 'false' },
          { onSpawn: child => void whenPrinted(child, /::group::Verify/).then(() => setTimeout(() => child.kill('SIGKILL'), 300)) },
        )
        expect(killed.signal).toBe('SIGKILL')
        const left = staged()
        expect(left).toEqual([expect.stringMatching(/^qemu-arm\.staged-\d+$/)])
        killUnder(dir)

        const t0 = Date.now()
        const r = await runAction(inputs('linux/arm64,linux/arm/v7'))
        expectSuccess(r)
        expect(r.stdout).not.toMatch(/Waiting for another/)
        expect(Date.now() - t0).toBeLessThan(60000)
        expect(r.stdout).toMatch(new RegExp(`^Removing entries left by runs that were killed before they finished: ${left[0].replace('.', '\\.')}$`, 'm'))
        expect(staged()).toEqual([])
        expectRegistered('qemu-arm', `${r.toolCache}/`)
        await expectForeignUname('armhf')
      } finally {
        killUnder(dir)
      }
    })
  }, 120000)
})

/** A server that sends the headers of a large file, then nothing. */
function stallingServer(): Promise<{ url: string; close: () => void }> {
  return new Promise(resolve => {
    const sockets = new Set<net.Socket>()
    const server = http.createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/gzip', 'content-length': String(50 * 1024 * 1024) })
      res.write(Buffer.from([0x1f, 0x8b]))
    })
    server.on('connection', s => sockets.add(s))
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo
      resolve({
        url: `http://127.0.0.1:${port}`,
        close: () => {
          for (const s of sockets) s.destroy()
          server.close()
        },
      })
    })
  })
}

describe('cancellation: SIGINT or SIGTERM (issue 8)', () => {
  const leftovers = (r: RunActionResult): string[] => fs.readdirSync(r.temp)

  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    test(`${signal} during the download: exit non-zero within 5 s, no temporary files, nothing registered`, async () => {
      const server = await stallingServer()
      try {
        await withKernel(async () => {
          const before = myRaw()
          let signalled = 0
          const r = await runAction(inputs('linux/arm64', { 'qemu-url': `${server.url}/qemu_v{qemu}_linux-{host}.tar.gz` }), {
            keep: true,
            onSpawn: child =>
              void whenPrinted(child, /Downloading /).then(() =>
                setTimeout(() => {
                  signalled = Date.now()
                  child.kill(signal)
                }, 500),
              ),
          })
          try {
            expect(signalled).toBeGreaterThan(0)
            expect(Date.now() - signalled).toBeLessThan(5000)
            expect(r.code).not.toBe(0)
            expect(errorsOf(r).join('\n')).toMatch(new RegExp(`cancelled \\(${signal}\\)`))
            expect(myRaw()).toEqual(before)
            expect(leftovers(r)).toEqual([])
          } finally {
            fs.rmSync(r.dir, { recursive: true, force: true })
          }
        })
      } finally {
        server.close()
      }
    })

    test(`${signal} during verification: exit non-zero within 5 s, the staged entry removed, no temporary files, no stray process`, async () => {
      const dir = hangingDir()
      try {
        await withKernel(async () => {
          const before = myRaw()
          let signalled = 0
          const r = await runAction(
            { platforms: 'linux/arm64,linux/arm/v7', 'qemu-url': dir, buildx: 'false' },
            {
              keep: true,
              onSpawn: child =>
                void whenPrinted(child, /::group::Verify/).then(() =>
                  setTimeout(() => {
                    signalled = Date.now()
                    child.kill(signal)
                  }, 300),
                ),
            },
          )
          try {
            expect(signalled).toBeGreaterThan(0)
            expect(Date.now() - signalled).toBeLessThan(5000)
            expect(r.code).not.toBe(0)
            expect(r.stdout).toMatch(/^rollback: removed qemu-arm\.staged-\d+$/m)
            expect(myRaw()).toEqual(before)
            expect(leftovers(r)).toEqual([])
            expect(processesUnder(dir)).toEqual([])
          } finally {
            fs.rmSync(r.dir, { recursive: true, force: true })
          }
        })
      } finally {
        killUnder(dir)
      }
    })
  }
})

interface PrivateRun {
  inputs: Record<string, string>
  /** tool cache directory; default a fresh one */
  toolCache?: string
}
interface PrivateResult {
  code: number
  output: string
  outputs: Record<string, string>
  errors: string[]
}

/**
 * Runs actions at the same time in one new user and mount namespace, as root
 * there, against a binfmt_misc instance of that namespace alone (Linux 6.7+),
 * each under its own stand-in for the runner's per-job worker process
 * (Runner.Worker, alive until every run is done). Then runs `uname -m` in the
 * given foreign chroots there and returns the table as it is at the end.
 */
async function inPrivateTable(opts: {
  pre: string[]
  disable?: boolean
  runs: PrivateRun[]
  chroots?: [root: string, arch: string][]
}): Promise<{ results: PrivateResult[]; uname: { arch: string; code: number | null; out: string }[]; dump: Map<string, BinfmtEntry> }> {
  const dir = freshDir('private')
  const worker = path.join(dir, 'Runner.Worker')
  fs.writeFileSync(
    worker,
    '#!/bin/bash\n# Stands in for the runner\'s per-job worker: runs one action, then lives until its stdin closes.\n"$@" >"$JOB_OUT" 2>&1\necho $? >"$JOB_STATUS"\nread -r _ || true\n',
    { mode: 0o755 },
  )
  const runs = opts.runs.map((run, i) => {
    const d = path.join(dir, `run${i}`)
    for (const sub of ['temp', 'workspace']) fs.mkdirSync(path.join(d, sub), { recursive: true })
    const toolCache = run.toolCache ?? path.join(d, 'toolcache')
    fs.mkdirSync(toolCache, { recursive: true })
    const files = { out: path.join(d, 'out'), status: path.join(d, 'status'), output: path.join(d, 'github_output'), state: path.join(d, 'github_state') }
    fs.writeFileSync(files.output, '')
    fs.writeFileSync(files.state, '')
    const env: Record<string, string> = {
      PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
      HOME: os.homedir(),
      GITHUB_ACTIONS: 'true',
      GITHUB_OUTPUT: files.output,
      GITHUB_STATE: files.state,
      RUNNER_TEMP: path.join(d, 'temp'),
      RUNNER_TOOL_CACHE: toolCache,
      JOB_OUT: files.out,
      JOB_STATUS: files.status,
    }
    for (const [k, v] of Object.entries(run.inputs)) env[inputEnvName(k)] = v
    return { env, files }
  })
  const config = path.join(dir, 'config.json')
  const result = path.join(dir, 'result.json')
  fs.writeFileSync(
    config,
    JSON.stringify({
      pre: opts.pre,
      disable: opts.disable ?? false,
      worker,
      node: ACTION_NODE,
      action: actionScript('main'),
      runs,
      chroots: opts.chroots ?? [],
      result,
    }),
  )
  const inner = path.join(dir, 'inner.js')
  fs.writeFileSync(
    inner,
    `const fs = require('fs'), cp = require('child_process')
const cfg = JSON.parse(fs.readFileSync(${JSON.stringify(config)}, 'utf8'))
const B = '/proc/sys/fs/binfmt_misc'
if (cp.spawnSync('mount', ['-t', 'binfmt_misc', 'binfmt_misc', B], { stdio: 'inherit' }).status !== 0) process.exit(2)
for (const line of cfg.pre) fs.writeFileSync(B + '/register', line)
if (cfg.disable) fs.writeFileSync(B + '/status', '0')
const workers = cfg.runs.map(r => cp.spawn(cfg.worker, [cfg.node, cfg.action], { env: r.env, stdio: ['pipe', 'ignore', 'inherit'] }))
const done = () => cfg.runs.every(r => fs.existsSync(r.files.status) && fs.readFileSync(r.files.status, 'utf8').trim() !== '')
const deadline = Date.now() + 240000
const timer = setInterval(() => {
  if (!done() && Date.now() < deadline) return
  clearInterval(timer)
  const uname = cfg.chroots.map(([root, arch]) => {
    const r = cp.spawnSync('chroot', [root, '/bin/uname', '-m'], { encoding: 'utf8', timeout: 60000 })
    return { arch, code: r.status, out: (r.stdout || '').trim() + (r.stderr || '').trim() }
  })
  let dump = ''
  for (const n of fs.readdirSync(B)) if (n !== 'register' && n !== 'status') dump += '@@ ' + n + '\\n' + fs.readFileSync(B + '/' + n, 'utf8')
  fs.writeFileSync(cfg.result, JSON.stringify({ uname, dump }))
  for (const w of workers) w.stdin.end()
}, 100)
`,
  )
  // Asynchronously: the download server answers from this very process.
  const r = await new Promise<{ status: number | null; stderr: string }>(resolve => {
    const child = spawn('unshare', ['--user', '--map-root-user', '--mount', '--propagation', 'private', process.execPath, inner], {
      stdio: ['ignore', 'ignore', 'pipe'],
      timeout: 300000,
    })
    let stderr = ''
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()))
    child.on('close', status => resolve({ status, stderr }))
  })
  if (!fs.existsSync(result)) throw new Error(`the private namespace run failed: ${r.status} ${r.stderr}`)
  const { uname, dump } = JSON.parse(fs.readFileSync(result, 'utf8')) as { uname: { arch: string; code: number | null; out: string }[]; dump: string }
  const entries = new Map<string, BinfmtEntry>()
  for (const block of dump.split(/^@@ /m).filter(Boolean)) {
    const nl = block.indexOf('\n')
    entries.set(block.slice(0, nl), parseEntry(block.slice(0, nl), block.slice(nl + 1)))
  }
  const results = runs.map(({ files }, i) => {
    const output = fs.existsSync(files.out) ? fs.readFileSync(files.out, 'utf8') : '(no output)'
    if (!fs.existsSync(files.status)) throw new Error(`run ${i} did not finish:\n${output}`)
    return {
      code: Number(fs.readFileSync(files.status, 'utf8').trim() || -1),
      output,
      outputs: parseKeyValueFile(fs.readFileSync(files.output, 'utf8')),
      errors: output
        .split('\n')
        .filter(l => l.startsWith('::error::'))
        .map(l => l.slice('::error::'.length)),
    }
  })
  return { results, uname, dump: entries }
}

describe('many jobs on one host (issue 8)', () => {
  test('four runs at once (two sharing a tool cache, overlapping platforms, one with reset) all succeed and every platform runs afterwards', async () => {
    const shared = freshDir('shared-cache')
    const roots: [string, string][] = [
      [await rootfs('arm64'), 'aarch64'],
      [await rootfs('armhf'), 'armv7l'],
      [await rootfs('mips64el'), 'mips64'],
    ]
    const { results, uname, dump } = await inPrivateTable({
      pre: [debianLine('riscv64', 'F')],
      runs: [
        { inputs: inputs('linux/arm64,linux/arm/v7'), toolCache: shared },
        { inputs: inputs('linux/arm64,linux/riscv64'), toolCache: shared },
        { inputs: inputs('linux/riscv64,linux/mips64le') },
        { inputs: inputs('linux/arm64', { reset: 'true' }) },
      ],
      chroots: roots,
    })
    for (const r of results) if (r.code !== 0 || r.errors.length) throw new Error(`a run failed:\n${r.output}`)
    expect(results.map(r => r.outputs.emulators.split(',').sort())).toEqual([['aarch64', 'arm'], ['aarch64', 'riscv64'], ['mips64el', 'riscv64'], ['aarch64']])
    expect(uname).toEqual(roots.map(([, arch]) => ({ arch, code: 0, out: arch })))
    expect([...dump.keys()].sort()).toEqual(['qemu-aarch64', 'qemu-arm', 'qemu-mips64el', 'qemu-riscv64'])
    for (const e of dump.values()) expect({ name: e.name, enabled: e.enabled, flags: e.flags }).toEqual({ name: e.name, enabled: true, flags: 'POCF' })
  }, 300000)
})

describe('uninstall: true (issue 8)', () => {
  test('the post step removes what the step added, puts back a replaced distro entry, leaves non-QEMU entries', async () => {
    await withKernel(async () => {
      registerMine(debianLine('arm', 'OC'))
      const before = myRaw()
      const main = await runAction(inputs('linux/arm64,linux/arm/v7', { uninstall: 'true' }))
      expectSuccess(main)
      expectRegistered('qemu-aarch64', `${main.toolCache}/`)
      expectRegistered('qemu-arm', `${main.toolCache}/`)
      const post = await runAction(inputs('linux/arm64,linux/arm/v7', { uninstall: 'true' }), { phase: 'post', state: main.stateFile })
      if (post.code !== 0 || post.annotations.length) throw new Error(`post:\n${transcript(post)}`)
      expect(post.stdout).toMatch(/^uninstall: removed qemu-aarch64$/m)
      expect(post.stdout).toMatch(/^uninstall: put back qemu-arm \(interpreter \/usr\/bin\/qemu-arm-static, flags OC\)$/m)
      expect(myRaw()).toEqual(before)
    })
  })

  test('without uninstall the post step leaves the entries', async () => {
    await withKernel(async () => {
      const main = await runAction(inputs('linux/arm64'))
      expectSuccess(main)
      const post = await runAction(inputs('linux/arm64'), { phase: 'post', state: main.stateFile })
      expect(post.code).toBe(0)
      expectRegistered('qemu-aarch64', `${main.toolCache}/`)
    })
  })

  test('an entry a second live job still uses is kept; once that job is gone, the next uninstall removes it', async () => {
    await withKernel(async () => {
      const before = myRaw()
      const main = await runAction(inputs('linux/arm64', { uninstall: 'true' }), { toolCache: freshDir('toolcache') })
      expectSuccess(main)
      // A second job (its own Runner.Worker, still running) uses qemu-aarch64 too.
      const dir = freshDir('job2')
      const worker = path.join(dir, 'Runner.Worker')
      fs.writeFileSync(worker, '#!/bin/bash\n"$@"\nread -r _ || true\n', { mode: 0o755 })
      // The same tool cache: it keeps the identical entry and records that it uses it.
      const job2 = spawnWorkerRun(worker, inputs('linux/arm64'), dir, main.toolCache)
      try {
        await job2.done
        expect({ status: job2.status(), log: job2.status() === 0 ? '' : job2.log() }).toEqual({ status: 0, log: '' })
        const post = await runAction(inputs('linux/arm64', { uninstall: 'true' }), { phase: 'post', state: main.stateFile })
        expect(post.stdout).toMatch(new RegExp(`^uninstall: qemu-aarch64 kept: still used by the running job of process ${job2.pid}$`, 'm'))
        expectRegistered('qemu-aarch64', `${main.toolCache}/`)
      } finally {
        job2.end()
      }
      await job2.exited
      const again = await runAction(inputs('linux/arm64', { uninstall: 'true' }), { phase: 'post', state: main.stateFile })
      expect(again.stdout).toMatch(/^uninstall: removed qemu-aarch64$/m)
      expect(myRaw()).toEqual(before)
    })
  })

  // Issue 23.4: another local user makes the shared records directory and its "0" before root's first run.
  test("another user's pre-made records directories: a live job's entry is still kept by another job's uninstall", async () => {
    await withKernel(async () => {
      const planted = freshDir('planted')
      // Writable by every user, as /tmp is.
      fs.chmodSync(planted, 0o1777)
      const jobs = path.join(planted, 'jobs')
      execFileSync('runuser', ['-u', 'qemutest', '--', 'mkdir', '-m', '1777', jobs])
      execFileSync('runuser', ['-u', 'qemutest', '--', 'mkdir', path.join(jobs, '0')])
      const main = await runAction(inputs('linux/arm64', { uninstall: 'true' }), { toolCache: freshDir('toolcache'), script: seeingJobsDir(jobs, 'main') })
      expectSuccess(main)
      // A second root job, still running, uses qemu-aarch64 too.
      const dir = freshDir('job2')
      const worker = path.join(dir, 'Runner.Worker')
      fs.writeFileSync(worker, '#!/bin/bash\n"$@"\nread -r _ || true\n', { mode: 0o755 })
      const job2 = spawnWorkerRun(worker, inputs('linux/arm64'), dir, main.toolCache, seeingJobsDir(jobs, 'main'))
      try {
        await job2.done
        expect({ status: job2.status(), log: job2.status() === 0 ? '' : job2.log() }).toEqual({ status: 0, log: '' })
        // It recorded what it uses: nothing to warn about.
        expect(job2.log()).not.toMatch(/^::warning::/m)
        const post = await runAction(inputs('linux/arm64', { uninstall: 'true' }), {
          phase: 'post',
          state: main.stateFile,
          script: seeingJobsDir(jobs, 'post'),
        })
        expectRegistered('qemu-aarch64', `${main.toolCache}/`)
        // The planted "0" could hide a root job's records: kept, with a warning that names it and says to remove it.
        expect(post.annotations).toContainEqual({
          kind: 'warning',
          message: expect.stringMatching(
            /^uninstall: qemu-aarch64 kept: which jobs use it cannot be told \(\/tmp\/setup-qemu-binfmt-jobs\/0 is not a directory of uid 0 .*remove it/,
          ),
        })
        // Removed as the warning says: the second job's record, where only root can write, keeps the entry.
        fs.rmSync(path.join(jobs, '0'), { recursive: true })
        const again = await runAction(inputs('linux/arm64', { uninstall: 'true' }), {
          phase: 'post',
          state: main.stateFile,
          script: seeingJobsDir(jobs, 'post'),
        })
        expect(again.stdout).toMatch(new RegExp(`^uninstall: qemu-aarch64 kept: still used by the running job of process ${job2.pid}$`, 'm'))
        expectRegistered('qemu-aarch64', `${main.toolCache}/`)
      } finally {
        job2.end()
      }
      await job2.exited
    })
  })
})

const SHARED_JOBS = '/tmp/setup-qemu-binfmt-jobs'

/**
 * A script that runs the action's `phase` in a mount namespace of its own where `jobs` stands in for the shared
 * records directory: another user's directory there, without disturbing other runs on this host.
 */
function seeingJobsDir(jobs: string, phase: 'main' | 'post'): string {
  if (!fs.existsSync(SHARED_JOBS)) {
    fs.mkdirSync(SHARED_JOBS, { mode: 0o1777 })
    fs.chmodSync(SHARED_JOBS, 0o1777)
  }
  const script = path.join(freshDir('view'), `${phase}.js`)
  // No shell in between: sh drops the INPUT_QEMU-URL style variables from the environment.
  fs.writeFileSync(
    script,
    `const { execFileSync, spawnSync } = require('child_process')
const inside = process.argv[2] === 'inside'
if (inside) execFileSync('mount', ['--bind', ${JSON.stringify(jobs)}, ${JSON.stringify(SHARED_JOBS)}])
const r = inside
  ? spawnSync(process.execPath, [${JSON.stringify(actionScript(phase))}], { stdio: 'inherit' })
  : spawnSync('unshare', ['--mount', '--propagation', 'private', process.execPath, __filename, 'inside'], { stdio: 'inherit' })
process.exit(r.status === null ? 1 : r.status)
`,
  )
  return script
}

/** Runs the action under `worker` (a stand-in Runner.Worker that stays alive until end()). */
function spawnWorkerRun(worker: string, runInputs: Record<string, string>, dir: string, toolCache: string, script = actionScript('main')) {
  const status = path.join(dir, 'status')
  const output = path.join(dir, 'github_output')
  const log = path.join(dir, 'log')
  fs.writeFileSync(output, '')
  fs.writeFileSync(path.join(dir, 'github_state'), '')
  const env: Record<string, string> = {
    PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
    HOME: os.homedir(),
    GITHUB_ACTIONS: 'true',
    GITHUB_OUTPUT: output,
    GITHUB_STATE: path.join(dir, 'github_state'),
    RUNNER_TEMP: freshDir('job2-temp'),
    RUNNER_TOOL_CACHE: toolCache,
  }
  for (const [k, v] of Object.entries(runInputs)) env[inputEnvName(k)] = v
  const child = spawn(worker, ['/bin/bash', '-c', `"$0" "$1" >${log} 2>&1; echo $? > ${status}`, ACTION_NODE, script], {
    env,
    stdio: ['pipe', 'ignore', 'ignore'],
  })
  const exited = new Promise<void>(resolve => child.on('exit', () => resolve()))
  const done = new Promise<void>(resolve => {
    const t = setInterval(() => {
      if (fs.existsSync(status) && fs.readFileSync(status, 'utf8').trim() !== '') {
        clearInterval(t)
        resolve()
      }
    }, 100)
  })
  return {
    pid: child.pid as number,
    done,
    exited,
    status: () => Number(fs.readFileSync(status, 'utf8').trim()),
    log: () => fs.readFileSync(log, 'utf8'),
    end: () => child.stdin?.end(),
  }
}
