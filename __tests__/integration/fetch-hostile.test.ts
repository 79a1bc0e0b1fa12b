// What a hostile server, URL or local file can do to the fetch side: nothing it
// sends or names picks a path, hangs the run, fills the disk or reaches a log.
import { execFileSync } from 'child_process'
import * as fs from 'fs'
import * as path from 'path'
import { ActionError, errorMessage } from '../../src/errors'
import { DEFAULT_NETWORK } from '../../src/fetch/download'
import { readInputs } from '../../src/inputs'
import { silentLog } from '../../src/log'
import { setup } from '../../src/setup'
import { RunActionResult, runAction } from '../support/action'
import { sha256 } from '../support/fixtures'
import { HandlerServer, serveAnyPath, startHandlerServer } from '../support/server'
import { ustarHeader } from '../support/tar'
import { runAs, uidOf } from '../support/users'
import {
  CoreFixtures,
  VERSION,
  closeFixtures,
  expectCleanFailure,
  expectRegistered,
  expectSuccess,
  freshDir,
  myRaw,
  startFixtures,
  transcript,
  withKernel,
  witnessEmulator,
} from './core-helpers'

let fx: CoreFixtures
beforeAll(async () => {
  fx = await startFixtures()
}, 120000)
afterAll(() => closeFixtures(fx))

/** Every file under `dir`, relative to it. */
function filesUnder(dir: string): string[] {
  if (!fs.existsSync(dir)) return []
  return (fs.readdirSync(dir, { recursive: true }) as string[]).sort()
}

describe('a server that answers any path', () => {
  let any: HandlerServer
  beforeAll(async () => {
    any = await startHandlerServer(serveAnyPath(fx.archives.tarGz))
  })
  afterAll(() => any?.close())

  test('a URL whose last segment decodes to ../../.. writes nothing outside the action dirs', async () => {
    const victim = freshDir('victim')
    const temp = freshDir('temp')
    const cache = freshDir('toolcache')
    // From RUNNER_TEMP/<run dir>/<download dir>, enough '..' reach / whatever the depth.
    const escape = `${'..%2F'.repeat(16)}${victim.slice(1).split('/').join('%2F')}%2Fjob`
    const url = `${any.url}/x/${escape}`
    await withKernel(async () => {
      const r = await runAction({ platforms: 'linux/arm64', 'qemu-version': VERSION, 'qemu-url': url, buildx: 'false' }, { toolCache: cache, temp })
      // The bytes are a good archive: the run itself is fine.
      expectSuccess(r)
      expectRegistered('qemu-aarch64', `${cache}/`)
      expect(r.outputs.emulators).toBe('aarch64')
      // The server got the request as sent; the decoded name chose no path.
      expect(any.log.some(l => l.path.includes('..%2F'))).toBe(true)
      expect(filesUnder(victim)).toEqual([])
      // The run's temp dir is gone; the tool cache holds only the action's own names.
      expect(filesUnder(temp)).toEqual([])
      expect(filesUnder(cache).filter(f => /job/.test(f))).toEqual([])
      if (filesUnder(victim).length) throw new Error(transcript(r))
    })
  })
})

/** A clean failure with my kernel entries untouched; returns the one error line. */
async function failingRun(
  inputs: Record<string, string>,
  opts: { toolCache?: string; temp?: string; env?: Record<string, string>; timeoutMs?: number } = {},
): Promise<{ error: string; ms: number; r: RunActionResult }> {
  return withKernel(async () => {
    const before = myRaw()
    const t = Date.now()
    const r = await runAction(
      { 'qemu-version': VERSION, buildx: 'false', ...inputs },
      { toolCache: opts.toolCache ?? freshDir('toolcache'), temp: opts.temp, env: opts.env, timeoutMs: opts.timeoutMs ?? 120000 },
    )
    const ms = Date.now() - t
    return { error: expectCleanFailure(r, before), ms, r }
  })
}

/** Bytes under `dir` as the disk holds them (sparse files count what they use). */
function diskUsage(dir: string): number {
  return Number(execFileSync('du', ['-s', '-B1', dir]).toString().split('\t')[0])
}

describe('a server that sends the headers, then nothing', () => {
  let stall: HandlerServer
  beforeAll(async () => {
    stall = await startHandlerServer((_req, res) => {
      res.writeHead(200, { 'Content-Length': 50_000_000, 'Content-Type': 'application/octet-stream' })
      res.write(Buffer.alloc(1000))
      // ...and nothing more, never ending the response.
    })
  })
  afterAll(() => stall?.close())

  test('times out (idle), retries, then fails with one error naming the URL', async () => {
    const url = `${stall.url}/stall/qemu.tar.gz`
    const given: Record<string, string> = { platforms: 'linux/arm64', 'qemu-url': url, 'qemu-version': VERSION, buildx: 'false' }
    const inputs = readInputs(name => given[name] ?? '')
    const temp = freshDir('temp')
    const logged: string[] = []
    const log = { ...silentLog, info: (m: string) => logged.push(m), warning: (m: string) => logged.push(`warning: ${m}`) }
    const io = { log, group: <T>(_: string, step: () => Promise<T>) => step(), handoff: { cacheSave: jest.fn(), builder: jest.fn(), uninstall: jest.fn() } }
    await withKernel(async () => {
      const before = myRaw()
      const t = Date.now()
      // The engine itself, with the network's timeouts scaled down so the test is short: connect 2 s, idle 1 s, first retry after 0.2 s.
      const network = { ...DEFAULT_NETWORK, connectTimeoutMs: 2000, idleTimeoutMs: 1000, retryDelayMs: 200 }
      const failure = await setup(inputs, { temp, toolCache: freshDir('toolcache'), env: process.env, cancel: new AbortController().signal, network }, io).then(
        () => undefined,
        (e: unknown) => e,
      )
      const ms = Date.now() - t
      expect(failure).toBeInstanceOf(ActionError)
      expect(errorMessage(failure)).toMatch(
        /^qemu-url: download of http:\/\/127\.0\.0\.1:\d+\/stall\/qemu\.tar\.gz failed: no data for 1 s \(after 3 attempts\); check qemu-url and the network$/,
      )
      expect(logged.filter(l => /^Download of .* failed \(no data for 1 s\); retrying/.test(l))).toHaveLength(2)
      expect(stall.log.filter(l => l.method === 'GET')).toHaveLength(3)
      expect(ms).toBeLessThan(30000)
      expect(myRaw()).toEqual(before)
      // Nothing of the download is left in the run's scratch space (the test programs are the engine's; the caller removes the space).
      expect(filesUnder(temp).filter(f => !/^probe-/.test(f) && fs.statSync(path.join(temp, f)).isFile())).toEqual([])
      expect(io.handoff.cacheSave).not.toHaveBeenCalled()
    })
  }, 90000)
})

describe('archives that expand beyond any emulator', () => {
  let dir: string
  beforeAll(() => {
    dir = freshDir('bombs')
    // A gzip bomb: a 400 MiB member of zeros in well under 1 MB (the limit for one emulator is 256 MiB).
    const header = ustarHeader('qemu-aarch64', { size: 400 * 1024 * 1024 })
    execFileSync('sh', ['-c', `{ cat; head -c ${400 * 1024 * 1024} /dev/zero; head -c 1024 /dev/zero; } | gzip -9 > bomb.tar.gz`], { cwd: dir, input: header })
    // A sparse tar: a 10 GiB member in a few KB (GNU format, type 'S').
    fs.writeFileSync(path.join(dir, 'qemu-aarch64'), '')
    fs.truncateSync(path.join(dir, 'qemu-aarch64'), 10 * 1024 ** 3)
    execFileSync('tar', ['--format=gnu', '-cSzf', 'sparse.tar.gz', 'qemu-aarch64'], { cwd: dir })
    fs.rmSync(path.join(dir, 'qemu-aarch64'))
  }, 60000)

  test.each([
    [
      'a gzip bomb',
      'bomb.tar.gz',
      /^bomb\.tar\.gz: qemu-aarch64 is 419430400 bytes, more than any emulator \(limit 268435456\); refusing the archive - check qemu-url$/,
    ],
    [
      'a sparse tar with a 10 GiB member',
      'sparse.tar.gz',
      /^sparse\.tar\.gz declares more than \d+ bytes of content \(a decompression bomb\?\); refusing it - check qemu-url$/,
    ],
  ])('%s is refused before anything big is written', async (_name, file, pattern) => {
    expect(fs.statSync(path.join(dir, file)).size).toBeLessThan(1024 * 1024)
    const cache = freshDir('toolcache')
    const temp = freshDir('temp')
    const { error, ms } = await failingRun({ platforms: 'linux/arm64', 'qemu-url': path.join(dir, file) }, { toolCache: cache, temp })
    expect(
      error
        .replace(/^qemu-url: /, '')
        .replace(path.join(dir, ''), '')
        .replace(/^\//, ''),
    ).toMatch(pattern)
    expect(diskUsage(cache)).toBeLessThan(1024 * 1024)
    expect(diskUsage(temp)).toBeLessThan(1024 * 1024)
    expect(ms).toBeLessThan(20000)
  })
})

describe('local qemu-url that is not a file to read', () => {
  test('a FIFO is refused at once, without opening it', async () => {
    const fifo = path.join(freshDir('fifo'), 'qemu.tar.gz')
    execFileSync('mkfifo', [fifo])
    const { error, ms } = await failingRun({ platforms: 'linux/arm64', 'qemu-url': fifo }, { timeoutMs: 30000 })
    expect(error).toBe(`qemu-url: ${fifo} is a FIFO; point it at an archive, an emulator binary or a directory of emulators`)
    expect(ms).toBeLessThan(20000)
  })

  test('/dev/zero is refused as a device', async () => {
    const { error } = await failingRun({ platforms: 'linux/arm64', 'qemu-url': '/dev/zero' }, { timeoutMs: 30000 })
    expect(error).toBe('qemu-url: /dev/zero is a character device; point it at an archive, an emulator binary or a directory of emulators')
  })

  test('a file like /etc/shadow: the error says what it is, never what it holds', async () => {
    const shadow = path.join(freshDir('shadow'), 'shadow')
    fs.writeFileSync(shadow, 'root:$y$j9T$Zm9vYmFyYmF6$secretsecret:20228:0:99999:7:::\ndaemon:*:20228:0:99999:7:::\n', { mode: 0o640 })
    const { error, r } = await failingRun({ platforms: 'linux/arm64', 'qemu-url': shadow })
    expect(error).toMatch(new RegExp(`^${shadow} is not a supported emulator download \\(it is text\\); expected `))
    expect(r.stdout + r.stderr).not.toMatch(/root:|secretsecret|20228|daemon/)
  })
})

describe('credentials in qemu-url', () => {
  const TOKEN = 'tok3n-Sup3rS3cret'
  let auth: HandlerServer
  beforeAll(async () => {
    const serve = serveAnyPath(fx.archives.tarGz)
    auth = await startHandlerServer((req, res) => {
      if (req.headers.authorization !== `Basic ${Buffer.from(`ci-user:${TOKEN}`).toString('base64')}`) {
        res.writeHead(401, { 'WWW-Authenticate': 'Basic realm="qemu"' })
        res.end('no\n')
        return
      }
      if (req.url?.includes('missing')) {
        res.writeHead(404)
        res.end()
        return
      }
      serve(req, res)
    })
  })
  afterAll(() => auth?.close())

  const noSecret = (what: string, text: string): void => {
    // `::add-mask::` is the runner's own masking command: it carries the value by design and never reaches the log.
    const visible = text
      .split('\n')
      .filter(l => !l.startsWith('::add-mask::'))
      .join('\n')
    expect({ what, leaks: visible.includes(TOKEN) }).toEqual({ what, leaks: false })
  }

  test('are sent as Basic auth, and shown nowhere', async () => {
    const cache = freshDir('toolcache')
    const url = `${auth.url.replace('http://', `http://ci-user:${TOKEN}@`)}/secure/qemu_v{qemu}_linux-{host}.tar.gz`
    await withKernel(async () => {
      const r = await runAction({ platforms: 'linux/arm64', 'qemu-version': VERSION, 'qemu-url': url, buildx: 'false' }, { toolCache: cache, debug: true })
      expectSuccess(r)
      expect(auth.log.map(l => l.headers.authorization)).toEqual([`Basic ${Buffer.from(`ci-user:${TOKEN}`).toString('base64')}`])
      expect(r.stdout).toContain(`Downloading http://***@127.0.0.1:`)
      noSecret('stdout', r.stdout)
      noSecret('stderr', r.stderr)
      noSecret('summary', r.summary)
      noSecret('outputs', JSON.stringify(r.outputs))
      noSecret('state', r.stateFile)
      for (const f of fs.readdirSync(cache, { recursive: true }) as string[]) {
        noSecret(`tool cache path ${f}`, f)
        const p = path.join(cache, f)
        if (fs.statSync(p).isFile() && f.endsWith('.json')) noSecret(f, fs.readFileSync(p, 'utf8'))
      }
    })
  })

  test('a failed download names the URL without them', async () => {
    const url = `${auth.url.replace('http://', `http://ci-user:${TOKEN}@`)}/missing/qemu.tar.gz`
    const { error, r } = await failingRun({ platforms: 'linux/arm64', 'qemu-url': url })
    expect(error).toMatch(/^qemu-url: download of http:\/\/\*\*\*@127\.0\.0\.1:\d+\/missing\/qemu\.tar\.gz failed: HTTP 404/)
    noSecret('stdout', r.stdout)
    noSecret('stderr', r.stderr)
  })
})

describe('pins hold on warm runs', () => {
  test('an emulator swapped in the tool cache is refused, with the archive pinned', async () => {
    const cache = freshDir('toolcache')
    const inputs = { platforms: 'linux/arm64', 'qemu-version': VERSION, 'qemu-url': fx.tarGzUrl, 'qemu-sha256': fx.archives.sha256sums, buildx: 'false' }
    await withKernel(async () => expectSuccess(await runAction(inputs, { toolCache: cache })))
    // Same size, other bytes: the marker alone would not tell.
    const stored = (fs.readdirSync(cache, { recursive: true }) as string[]).find(f => f.endsWith('/qemu-aarch64')) as string
    const file = path.join(cache, stored)
    const bytes = fs.readFileSync(file)
    bytes[bytes.length >> 1] ^= 0xff
    fs.writeFileSync(file, bytes)
    const { error } = await failingRun({ ...inputs }, { toolCache: cache })
    expect(error).toMatch(
      /^qemu-sha256: \S+\/qemu-aarch64 in the tool cache changed after it was stored \(sha256 [0-9a-f]{64}, stored [0-9a-f]{64}\); nothing was registered - remove \S+ and re-run$/,
    )
  })

  test('a forged entry in a tool cache another user can write is not believed: the pinned archive is read again', async () => {
    const attacker = 'qemutest'
    // A RUNNER_TOOL_CACHE that a second runner user can write (it is theirs).
    const cache = freshDir('toolcache')
    fs.chownSync(cache, uidOf(attacker), uidOf(attacker))
    const archive = path.basename(fx.archives.tarGz)
    // The archive's line only: its emulators are covered by it.
    const inputs = {
      platforms: 'linux/arm64',
      'qemu-version': VERSION,
      'qemu-url': fx.tarGzUrl,
      'qemu-sha256': `${sha256(fx.archives.tarGz)}  ${archive}`,
      buildx: 'false',
    }
    await withKernel(async () => expectSuccess(await runAction(inputs, { toolCache: cache })))
    const entry = path.dirname(path.join(cache, (fs.readdirSync(cache, { recursive: true }) as string[]).find(f => f.endsWith('/qemu-aarch64')) as string))

    // The attacker moves root's tree aside and puts their own in its place: their binary, and a marker that says it came from the pinned archive.
    const witness = path.join(freshDir('witness'), 'ran-as-root')
    const forged = witnessEmulator(witness)
    const marker = { sha256: sha256(forged), size: fs.statSync(forged).size, file: archive, fileSha256: sha256(fx.archives.tarGz) }
    const script = [
      `mv ${cache}/setup-qemu-binfmt ${cache}/moved`,
      `mkdir -p ${entry}`,
      `cp ${forged} ${entry}/qemu-aarch64`,
      `chmod 755 ${entry}/qemu-aarch64`,
      `printf '%s' '${JSON.stringify(marker)}' > ${entry}/qemu-aarch64.json`,
    ].join(' && ')
    const planted = await runAs(attacker, ['sh', '-c', script], {})
    expect(planted).toMatchObject({ code: 0, stderr: '' })

    await withKernel(async () => {
      const r = await runAction(inputs, { toolCache: cache })
      // Root never ran the attacker's program (verification runs the registered emulator).
      expect({ ran: fs.existsSync(witness) }).toEqual({ ran: false })
      expectSuccess(r)
      expect(r.stdout).toContain(`Not believing the tool cache entry ${entry} while emulators are pinned: ${entry} belongs to uid ${uidOf(attacker)}`)
      expect(r.outputs['cache-hit']).toBe('false')
      const e = expectRegistered('qemu-aarch64', `${cache}/`)
      expect(sha256(e.interpreter)).toBe(sha256('/usr/bin/qemu-aarch64-static'))
    })
  })

  test('a pinned warm run in a tool cache only root can write downloads nothing', async () => {
    const cache = freshDir('toolcache')
    const inputs = {
      platforms: 'linux/arm64',
      'qemu-version': VERSION,
      'qemu-url': fx.tarGzUrl,
      'qemu-sha256': `${sha256(fx.archives.tarGz)}  ${path.basename(fx.archives.tarGz)}`,
      buildx: 'false',
    }
    await withKernel(async () => expectSuccess(await runAction(inputs, { toolCache: cache })))
    await withKernel(async () => {
      const r = await runAction(inputs, { toolCache: cache })
      expectSuccess(r)
      expect(r.outputs['cache-hit']).toBe('true')
      expect(r.stdout).not.toContain('Not believing')
    })
  })
})

describe('the tool cache under concurrency and crashes', () => {
  test('four runs at once filling one tool cache all succeed', async () => {
    const cache = freshDir('toolcache')
    await withKernel(async () => {
      // One emulator each (kernel entries do not collide); all write the same tool-cache entry at once.
      const runs = await Promise.all(
        ['linux/arm64', 'linux/arm/v7', 'linux/riscv64', 'linux/mips64le'].map(p =>
          runAction({ platforms: p, 'qemu-version': VERSION, 'qemu-url': fx.tarGzUrl, buildx: 'false' }, { toolCache: cache }),
        ),
      )
      for (const r of runs) expectSuccess(r)
      for (const t of ['aarch64', 'arm', 'riscv64', 'mips64el']) {
        const e = expectRegistered(`qemu-${t}`, `${cache}/`)
        expect(sha256(e.interpreter)).toBe(sha256(`/usr/bin/qemu-${t}-static`))
      }
    })
    // Nothing half-made is left: every binary has its marker, no staging directory remains.
    const files = fs.readdirSync(cache, { recursive: true }) as string[]
    expect(files.filter(f => path.basename(f).startsWith('.tmp-'))).toEqual([])
  })

  test('a run SIGKILLed mid-extract leaves nothing trusted; the next run succeeds', async () => {
    const cache = freshDir('toolcache')
    const url = `${fx.server.url}/main/qemu-user-static_{version}_amd64.deb`
    // The .deb's data.tar.xz is decompressed by xz: riscv64 lies deep in it, so extraction takes seconds.
    const inputs = { platforms: 'linux/arm64,linux/mips64le,linux/riscv64', 'qemu-version': VERSION, 'qemu-url': url, buildx: 'false' }
    const members = (): string[] => {
      try {
        return (fs.readdirSync(cache, { recursive: true }) as string[]).filter(f => /\/\.tmp-[^/]+\/\.member-[a-z0-9_]+-\d+$/.test(f))
      } catch {
        return [] // a directory went while it was read
      }
    }
    await withKernel(async () => {
      // SIGKILL as soon as the first member is being written, not after a fixed time: a loaded machine may not
      // have begun extracting by then, a fast one may have finished.
      const killed = await runAction(inputs, {
        toolCache: cache,
        timeoutMs: 120000,
        killSignal: 'SIGKILL',
        onSpawn: child => {
          const watch = setInterval(() => {
            if (child.exitCode !== null || child.signalCode !== null) clearInterval(watch)
            else if (members().length) {
              clearInterval(watch)
              child.kill('SIGKILL')
            }
          }, 20)
        },
      })
      expect(killed.signal).toBe('SIGKILL')
      // It died inside the extraction: its staging directory is there, with a partial member.
      const staged = members()
      expect(staged.length).toBeGreaterThan(0)
      // Nothing reached the entry itself.
      const entryFiles = (fs.readdirSync(cache, { recursive: true }) as string[]).filter(f => /\/qemu-[a-z0-9_]+(\.json)?$/.test(f) && !f.includes('/.tmp-'))
      expect(entryFiles).toEqual([])
    })
    await withKernel(async () => {
      const r = await runAction(inputs, { toolCache: cache })
      expectSuccess(r)
      for (const t of ['aarch64', 'mips64el', 'riscv64']) {
        const e = expectRegistered(`qemu-${t}`, `${cache}/`)
        expect(sha256(e.interpreter)).toBe(sha256(`/usr/bin/qemu-${t}-static`))
      }
    })
  }, 180000)
})

describe('a tool cache that cannot take the emulators', () => {
  /** A tmpfs of `options` mounted on a fresh dir for the test, unmounted after. */
  async function withMount<T>(options: string, fn: (dir: string) => Promise<T>): Promise<T> {
    const dir = freshDir('mnt')
    execFileSync('mount', ['-t', 'tmpfs', '-o', options, 'tmpfs', dir])
    try {
      return await fn(dir)
    } finally {
      execFileSync('umount', [dir])
    }
  }

  test('read-only: the error says what is wrong and what to do', async () => {
    await withMount('ro,size=1m', async dir => {
      const { error } = await failingRun({ platforms: 'linux/arm64', 'qemu-url': fx.tarGzUrl }, { toolCache: dir })
      expect(error).toMatch(
        new RegExp(
          `^cannot write the tool cache entry ${dir}/setup-qemu-binfmt/\\S+ \\(EROFS: it is on a read-only file system\\); make RUNNER_TOOL_CACHE a writable directory for this user, or point it elsewhere$`,
        ),
      )
    })
  })

  test('full: reported as a full disk naming the directory, nothing half-written kept', async () => {
    await withMount('size=2m', async dir => {
      const { error } = await failingRun({ platforms: 'linux/arm64', 'qemu-url': fx.tarGzUrl }, { toolCache: dir })
      expect(error).toMatch(
        new RegExp(`^the disk holding ${dir}/setup-qemu-binfmt/\\S+ is full \\(ENOSPC\\); free some space or point RUNNER_TEMP / RUNNER_TOOL_CACHE elsewhere$`),
      )
      const left = fs.readdirSync(dir, { recursive: true }) as string[]
      expect(left.filter(f => /^qemu-|^\.member-|^\.tmp-/.test(path.basename(f)))).toEqual([])
    })
  })
})
