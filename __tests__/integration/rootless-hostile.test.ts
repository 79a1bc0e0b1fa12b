// install-mode userns and `setup-qemu-binfmt run` against an attacker and bad luck, as real users:
// qemurootless (the victim, whose rootless dockerd .ci/rootless.sh runs) and qemutest (another user
// of the machine, who can write to shared directories such as /tmp):
//  - files planted beside a DOCKER_HOST in a shared directory (a FIFO, a symlink to /dev/zero or to
//    the victim's own pid file, another user's socket or rootlesskit state directory) neither make
//    the step wait nor name the process to enter: one error, or they are ignored;
//  - a namespace whose process dies during the step: an error that says so, not the kernel's refusal;
//  - run: the command gets our own stderr (a terminal stays a terminal) and stdin; a missing unshare
//    names util-linux; SIGKILL to run sends its command SIGTERM instead of leaving it an orphan.
// Throughout, the host's own binfmt_misc table does not change.
import { ChildProcess, execFileSync, spawn } from 'child_process'
import * as fs from 'fs'
import * as net from 'net'
import * as path from 'path'
import { commandLine } from '../../src/docker/command'
import { ACTION_NODE, CLI, runAction } from '../support/action'
import { snapshot } from '../support/binfmt'
import { serveAnyPath, startHandlerServer } from '../support/server'
import { runuserArgs, startAs, uidOf } from '../support/users'
import { describeUnless, usernsBinfmtRefused } from '../support/host'
import { VERSION, cleanupDirs, freshDir, onlyError } from './core-helpers'

const VICTIM = 'qemurootless'
/** The tests that enter a namespace need a kernel that gives it a binfmt_misc of its own; elsewhere they are skipped, with the reason. */
const describeHere = describeUnless(usernsBinfmtRefused(VICTIM))
const ATTACKER = 'qemutest'
const EMULATOR = '/usr/bin/qemu-aarch64-static'
const victim = uidOf(VICTIM)
const attacker = uidOf(ATTACKER)
const RUNTIME = `/run/user/${victim}`

let hostBefore: ReturnType<typeof snapshot>
const servers: net.Server[] = []
beforeAll(() => {
  if (!fs.existsSync(`${RUNTIME}/docker.pid`)) throw new Error(`rootless Docker of ${VICTIM} is not running: run .ci/rootless.sh`)
  hostBefore = snapshot()
})
afterEach(() => expect(snapshot()).toEqual(hostBefore))
afterAll(async () => {
  await Promise.all(servers.map(s => new Promise(done => s.close(done))))
  cleanupDirs()
})

const inputs = (extra: Record<string, string> = {}): Record<string, string> => ({
  'qemu-version': VERSION,
  // Never reached when the namespace is refused first.
  'qemu-url': 'http://127.0.0.1:9/{target}',
  platforms: 'linux/arm64',
  'install-mode': 'userns',
  ...extra,
})

/** A unix socket at `file` owned by `uid`: what a daemon listening there looks like. */
async function socketAt(file: string, uid: number): Promise<void> {
  const server = net.createServer()
  servers.push(server)
  await new Promise<void>(done => server.listen(file, done))
  fs.chownSync(file, uid, uid)
}

/** A world-writable sticky directory, like /tmp. */
function sharedDir(label: string): string {
  const dir = freshDir(label)
  fs.chmodSync(dir, 0o1777)
  return dir
}

/** The step as the victim, with DOCKER_HOST a socket in `dir`. */
const withDockerHostIn = (dir: string): ReturnType<typeof runAction> =>
  runAction(inputs(), { user: VICTIM, env: { DOCKER_HOST: `unix://${dir}/docker.sock`, XDG_RUNTIME_DIR: RUNTIME }, timeoutMs: 60000 })

describe('files planted beside DOCKER_HOST in a shared directory', () => {
  const plant = {
    'a FIFO as docker.pid (reading it would wait forever)': (dir: string) => {
      execFileSync('mkfifo', [path.join(dir, 'docker.pid')])
      fs.chownSync(path.join(dir, 'docker.pid'), attacker, attacker)
    },
    'docker.pid a symlink to /dev/zero (reading it would never end)': (dir: string) => {
      fs.symlinkSync('/dev/zero', path.join(dir, 'docker.pid'))
      fs.lchownSync(path.join(dir, 'docker.pid'), attacker, attacker)
    },
    "docker.pid a symlink to the victim's own pid file (the victim's file, another user's choice)": (dir: string) => {
      fs.symlinkSync(`${RUNTIME}/docker.pid`, path.join(dir, 'docker.pid'))
      fs.lchownSync(path.join(dir, 'docker.pid'), attacker, attacker)
    },
  }

  test.each(Object.keys(plant))(
    "the victim's socket, and another user planted %s: one error, at once",
    async (what: string) => {
      const dir = sharedDir('planted')
      await socketAt(path.join(dir, 'docker.sock'), victim)
      plant[what as keyof typeof plant](dir)
      const r = await withDockerHostIn(dir)
      expect(onlyError(r)).toMatch(
        new RegExp(
          `^cannot register emulators \\(install-mode: userns\\): userns: ${dir}/docker\\.pid (is not a regular file owned by this user|cannot name the rootless Docker daemon \\(.*\\); it must be a regular file of this user)`,
        ),
      )
    },
    90000,
  )

  test("another user's socket with a symlink to the victim's pid file: refused on the socket, nothing entered", async () => {
    const dir = sharedDir('foreign-socket')
    await socketAt(path.join(dir, 'docker.sock'), attacker)
    fs.symlinkSync(`${RUNTIME}/docker.pid`, path.join(dir, 'docker.pid'))
    fs.lchownSync(path.join(dir, 'docker.pid'), attacker, attacker)
    const r = await withDockerHostIn(dir)
    expect(onlyError(r)).toMatch(
      new RegExp(
        `userns: ${dir}/docker\\.sock is not owned by this user, so it is not this user's rootless Docker daemon; set DOCKER_HOST to your own daemon's socket`,
      ),
    )
  }, 90000)

  test("another user's dockerd-rootless directory is not the victim's state directory: ignored", async () => {
    const dir = sharedDir('foreign-state')
    await socketAt(path.join(dir, 'docker.sock'), victim)
    fs.mkdirSync(path.join(dir, 'dockerd-rootless'))
    fs.writeFileSync(path.join(dir, 'dockerd-rootless', 'child_pid'), '1\n')
    execFileSync('chown', ['-R', `${attacker}:${attacker}`, path.join(dir, 'dockerd-rootless')])
    const r = await withDockerHostIn(dir)
    expect(onlyError(r)).toMatch(new RegExp(`userns: no rootless Docker daemon's pid file beside ${dir}/docker\\.sock`))
  }, 90000)
})

describeHere('bad luck', () => {
  test('the namespace dies during the step: the error says it went away, not that the kernel refused', async () => {
    // The user's own namespace with a mount namespace of its own (the step mounts its binfmt_misc at once).
    const holder = await startAs(VICTIM, ['unshare', '--user', '--map-root-user', '--mount', 'sleep', '300'], 'sleep')
    const { pid } = holder
    const server = await startHandlerServer((req, res) => {
      // Between the mount and the registration: the namespace's process dies.
      holder.stop()
      serveAnyPath(EMULATOR)(req, res)
    })
    try {
      const r = await runAction(inputs({ 'qemu-url': `${server.url}/qemu-{target}-static` }), {
        user: VICTIM,
        env: { SETUP_QEMU_BINFMT_USERNS_PID: String(pid) },
        timeoutMs: 120000,
      })
      expect(onlyError(r)).toMatch(
        new RegExp(
          `^the user namespace of process ${pid} went away during the step \\(process ${pid} (is not running|has exited)\\); start it again and rerun`,
        ),
      )
    } finally {
      holder.stop()
      await server.close()
    }
  }, 150000)
})

describeHere('run -- COMMAND', () => {
  /** A cache directory of the victim's own. */
  const victimCache = (): string => {
    const cache = freshDir('xdg')
    fs.chownSync(cache, victim, victim)
    return cache
  }
  /** `setup-qemu-binfmt run` with the emulators from Debian's package, then `command`. */
  const runArgv = (command: readonly string[]): string[] => [
    ACTION_NODE,
    CLI,
    'run',
    '--quiet',
    '--platforms',
    'linux/arm64',
    '--qemu-url',
    '/usr/bin/qemu-{target}-static',
    '--',
    ...command,
  ]
  /** `setup-qemu-binfmt run ... -- command` as the victim, with stderr to `stderrFile` and stdin, stdout piped. */
  const startRun = (stderrFile: string, command: string[], env: Record<string, string> = {}): ChildProcess => {
    const err = fs.openSync(stderrFile, 'w')
    const child = spawn('runuser', runuserArgs(VICTIM, { HOME: '/tmp', XDG_CACHE_HOME: victimCache(), ...env }, runArgv(command)), {
      cwd: '/tmp',
      stdio: ['pipe', 'pipe', err],
      timeout: 120000,
    })
    fs.closeSync(err)
    return child
  }
  const run = (stdin: string, stderrFile: string, command: string[], env: Record<string, string> = {}): Promise<{ code: number | null; stdout: string }> => {
    const child = startRun(stderrFile, command, env)
    child.stdin?.end(stdin)
    let stdout = ''
    child.stdout?.on('data', (d: Buffer) => (stdout += d.toString()))
    return new Promise(resolve => child.on('close', code => resolve({ code, stdout })))
  }

  test("the command's stderr is ours (not a pipe through us: a terminal stays a terminal), its stdin is ours", async () => {
    const errFile = path.join(freshDir('stderr'), 'err')
    const r = await run('from-stdin\n', errFile, ['sh', '-c', 'readlink /proc/self/fd/2; cat; echo to-stderr >&2'])
    expect(r).toEqual({ code: 0, stdout: `${errFile}\nfrom-stdin\n` })
    expect(fs.readFileSync(errFile, 'utf8')).toBe('to-stderr\n')
  }, 150000)

  test('^C in a terminal reaches the command once, not a second time through us (a second ^C means "force quit" to many programs)', async () => {
    // It counts for 3 s from the first SIGINT (a second one through us would follow at once), not from 'ready':
    // on a loaded machine the typed ^C may take longer than that to arrive. Without any ^C it gives up after a minute.
    const counter = [
      `let n = 0; const total = () => console.log('total', n); let end = setTimeout(total, 60000)`,
      `process.on('SIGINT', () => { console.log('INT', ++n); if (n === 1) { clearTimeout(end); end = setTimeout(total, 3000) } })`,
      `console.log('ready')`,
    ].join('; ')
    const argv = runuserArgs(VICTIM, { HOME: '/tmp', XDG_CACHE_HOME: victimCache() }, runArgv([ACTION_NODE, '-e', counter]))
    // exec: script runs this through $SHELL, or /bin/sh when SHELL is unset (as under CI); a dash left waiting
    // would itself die of the ^C and make script report 130 whatever the command did.
    const inner = `exec ${commandLine(argv, 'runuser')}`
    // script(1): the command line runs on a terminal of its own; a ^C typed there goes to its foreground process group.
    const term = spawn('script', ['-qec', inner, '/dev/null'], { stdio: ['pipe', 'pipe', 'pipe'], timeout: 120000 })
    let out = ''
    // Exactly one ^C: its echo may come after further output, so the echo cannot tell whether it was typed.
    let typed = false
    term.stdout.on('data', (d: Buffer) => {
      out += d.toString()
      if (/ready/.test(out) && !typed) {
        typed = true
        term.stdin.write('\x03')
      }
    })
    const code = await new Promise(resolve => term.on('close', resolve))
    expect({ code, lines: out.replace(/\^C/g, '').split(/\r?\n/).filter(Boolean) }).toEqual({ code: 0, lines: ['ready', 'INT 1', 'total 1'] })
  }, 150000)

  test('run killed outright (SIGKILL): its command is sent SIGTERM instead of running on as an orphan', async () => {
    const errFile = path.join(freshDir('stderr'), 'err')
    const child = startRun(errFile, ['/bin/sh', '-c', `trap 'echo TERM >&2; exit 143' TERM; echo $$ $PPID; while :; do sleep 1; done`])
    child.stdin?.end()
    const gone = (pid: number): boolean => !fs.existsSync(`/proc/${pid}`)
    let pids: number[] = []
    try {
      pids = await new Promise<number[]>((resolve, reject) => {
        let out = ''
        child.stdout?.on('data', (d: Buffer) => {
          out += d.toString()
          if (out.includes('\n')) resolve(out.trim().split(' ').map(Number))
        })
        child.once('close', code => reject(new Error(`run ended (${code}) before the command started: ${fs.readFileSync(errFile, 'utf8')}`)))
      })
      const [command, cli] = pids
      expect(fs.readFileSync(`/proc/${cli}/cmdline`, 'utf8').split('\0')).toContain(CLI)
      process.kill(cli, 'SIGKILL')
      // A hang guard (sh runs its trap once its `sleep 1` ends), long enough for a loaded machine.
      for (let i = 0; i < 200 && !gone(command); i++) await new Promise(r => setTimeout(r, 100))
      // runuser reports its own child's death ("Killed") on the same stderr.
      expect({ gone: gone(command), trapped: fs.readFileSync(errFile, 'utf8').split('\n').includes('TERM') }).toEqual({ gone: true, trapped: true })
    } finally {
      for (const pid of pids) if (!gone(pid)) process.kill(pid, 'SIGKILL')
      child.kill('SIGKILL')
    }
  }, 60000)

  test('no unshare on PATH: one line naming util-linux, status 125, the command does not run', async () => {
    const errFile = path.join(freshDir('stderr'), 'err')
    const r = await run('', errFile, ['/bin/echo', 'ran'], { PATH: '/nonexistent' })
    expect(r).toEqual({ code: 125, stdout: '' })
    expect(fs.readFileSync(errFile, 'utf8')).toBe('setup-qemu-binfmt: cannot create a user namespace: unshare is not installed; install util-linux\n')
  }, 60000)
})
