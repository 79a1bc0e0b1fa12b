// The Docker path end to end, with a real Docker engine (.ci/docker.sh: Debian's
// docker.io, images made with `docker import`, user qemutest in the docker group
// without sudo). The action falls back to a privileged container with its own
// emulators; the entries have F, foreign programs run in a chroot and in
// containers, and a real `docker build --platform linux/arm64` works after it.
//
// The kernel table is shared with other tests running at the same time: these
// tests only create, change or remove qemu-ppc64le and qemu-s390x (and
// qemu-aarch64 in the build proof), and restore only those.
import { ChildProcess, execFile, spawnSync } from 'child_process'
import * as fs from 'fs'
import * as path from 'path'
import { promisify } from 'util'
import { REPO_ROOT, RunActionResult, actionScript, runAction } from '../support/action'
import { binfmtMounted, removeEntry, restore, snapshot } from '../support/binfmt'
import { cleanupDirs, errorsOf, expectForeignUname, expectSuccess as expectActionSuccess, freshDir, myEntry, transcript } from './core-helpers'
import { whenPrinted } from './stand-ins'

const execFileAsync = promisify(execFile)

const IMAGE = 'local/busybox:test'
const ARM64_IMAGE = 'local/busybox-arm64:test'
/** Its sh is `false`: every container of it exits 1 without a word. */
const FALSE_IMAGE = 'local/busybox-false:test'
/** Its sh sleeps a minute before it does anything. */
const SLOW_IMAGE = 'local/busybox-slow:test'
const BUILT_IMAGE = 'local/qemu-build-proof:test'
const LABEL = 'setup-qemu-binfmt'

const MINE = ['qemu-ppc64le', 'qemu-s390x']
const PLATFORMS = 'linux/ppc64le,linux/s390x'
/** Debian's static emulators, used in place. */
const INPUTS = { platforms: PLATFORMS, 'qemu-url': '/usr/bin', 'qemu-version': '7.2.0-1', 'docker-image': IMAGE }
const INTERPRETER = (t: string): RegExp => new RegExp(`^/setup-qemu-binfmt/[0-9a-f]{16}/qemu-${t}-static$`)

function docker(args: string[], timeout = 60000): { code: number; stdout: string; out: string } {
  const r = spawnSync('docker', args, { encoding: 'utf8', timeout })
  return { code: r.status ?? -1, stdout: (r.stdout ?? '').trim(), out: `${r.stdout ?? ''}${r.stderr ?? ''}${r.error ? r.error.message : ''}`.trim() }
}

function mustDocker(args: string[]): string {
  const r = spawnSync('docker', args, { encoding: 'utf8', timeout: 120000 })
  if (r.status !== 0) throw new Error(`docker ${args.join(' ')} failed: ${r.stderr}${r.error?.message ?? ''}`)
  return r.stdout
}

/** Containers the action made that still exist. */
const leftContainers = (): string[] =>
  mustDocker(['ps', '-aq', '--filter', `label=${LABEL}`])
    .split('\n')
    .filter(Boolean)

/** Waits (at most a minute, while `action` runs) until a container the action made is running; whether one was. */
async function untilRunning(action: ChildProcess): Promise<boolean> {
  for (let i = 0; i < 600 && action.exitCode === null && action.signalCode === null; i++) {
    const { stdout } = await execFileAsync('docker', ['ps', '-q', '--filter', `label=${LABEL}`, '--filter', 'status=running']).catch(() => ({ stdout: '' }))
    if (stdout.trim()) return true
    await new Promise(r => setTimeout(r, 100))
  }
  return false
}

const myRaw = (): Map<string, string> => new Map([...snapshot()].filter(([n]) => MINE.includes(n)))

/** Runs fn with my entries removed first, then puts them back as they were. */
async function withKernel<T>(fn: () => Promise<T>): Promise<T> {
  const snap = snapshot()
  try {
    for (const n of MINE) if (snap.has(n)) removeEntry(n)
    return await fn()
  } finally {
    restore(snap, n => MINE.includes(n))
  }
}

function expectSuccess(r: RunActionResult): void {
  expectActionSuccess(r)
  expect(leftContainers()).toEqual([])
}

/** Exit 1, one error matching every pattern, my entries as before, no container left. */
function expectCleanFailure(r: RunActionResult, before: Map<string, string>, ...patterns: RegExp[]): string {
  try {
    expect(r.code).toBe(1)
    const errors = errorsOf(r)
    expect(errors).toHaveLength(1)
    for (const p of patterns) expect(errors[0]).toMatch(p)
    expect(myRaw()).toEqual(before)
    expect(leftContainers()).toEqual([])
    return errors[0]
  } catch (e) {
    ;(e as Error).message += `\n\n${transcript(r)}`
    throw e
  }
}

function expectDockerEntries(flags = 'POCF'): void {
  for (const t of ['ppc64le', 's390x']) {
    const e = myEntry(`qemu-${t}`)
    expect(e).toMatchObject({ enabled: true, flags, interpreter: expect.stringMatching(INTERPRETER(t)) })
    // The interpreter only ever existed in the container, which is gone: F holds it open.
    expect(fs.existsSync(e!.interpreter)).toBe(false)
  }
}

/** A derived image built from local/busybox:test with one RUN step. */
function buildImage(tag: string, run: string): void {
  const dir = freshDir('image')
  fs.writeFileSync(path.join(dir, 'Dockerfile'), `FROM ${IMAGE}\nRUN ${run}\n`)
  mustDocker(['build', '-q', '--force-rm', '-t', tag, dir])
}

beforeAll(() => {
  if (process.getuid?.() !== 0 || !binfmtMounted()) throw new Error('integration tests need root and a mounted binfmt_misc: run .ci/prepare.sh')
  // Idempotent: installs and starts Docker, the test runtime workaround and the local images when missing.
  const r = spawnSync('bash', [path.join(REPO_ROOT, '.ci', 'docker.sh')], { encoding: 'utf8', timeout: 600000 })
  if (r.status !== 0) throw new Error(`.ci/docker.sh failed: ${r.stderr}${r.stdout}`)
  // (A symlink to the false applet would not do: busybox goes by the name it is called by.)
  buildImage(FALSE_IMAGE, `printf '#!/bin/busybox false\\n' >/bin/false-sh && chmod 755 /bin/false-sh && ln -sf false-sh /bin/sh`)
  buildImage(
    SLOW_IMAGE,
    `printf '#!/bin/busybox sh\\nsleep 60\\nexec /bin/busybox sh "$@"\\n' >/bin/slow-sh && chmod 755 /bin/slow-sh && ln -sf slow-sh /bin/sh`,
  )
}, 600000)

afterAll(() => {
  docker(['rmi', '-f', FALSE_IMAGE, SLOW_IMAGE])
  cleanupDirs()
})

describe('fallback for a user in the docker group without sudo', () => {
  test('auto: direct is not possible, Docker registers with F, foreign programs run; a second run keeps the entries', async () => {
    await withKernel(async () => {
      const r = await runAction(INPUTS, { user: 'qemutest' })
      expectSuccess(r)
      expect(r.outputs.method).toBe('docker')
      expect(r.stdout).toMatch(/^Direct registration is not possible \(not root, and sudo -n: .*password.*\); trying Docker$/m)
      expect(r.stdout).toContain(`Registering through a privileged container (${IMAGE})`)
      expectDockerEntries()
      expect(r.outputs.emulators.split(',').sort()).toEqual(['ppc64le', 's390x'])
      expect(r.outputs.platforms.split(',')).toEqual(expect.arrayContaining(['linux/ppc64le', 'linux/s390x']))
      expect(r.stdout).toMatch(/^ppc64le: ok \(/m)
      expect(r.stdout).toMatch(/^s390x: ok \(/m)
      expect(r.summary).toContain('method: docker')
      // Busybox-only foreign root filesystems: no QEMU inside, so only F makes these run.
      await expectForeignUname('ppc64el')
      await expectForeignUname('s390x')

      // Same emulators again: the same paths in the container, so the entries are kept, and no registering container runs.
      const after = myRaw()
      const again = await runAction(INPUTS, { user: 'qemutest', debug: true })
      expectSuccess(again)
      expect(again.outputs.method).toBe('docker')
      expect(myRaw()).toEqual(after)
      for (const t of ['ppc64le', 's390x']) {
        expect(again.stdout).toMatch(new RegExp(`^qemu-${t}: already registered with /setup-qemu-binfmt/\\S+ and flags POCF; kept$`, 'm'))
      }
      expect(again.stdout.match(/::debug::docker create .*--privileged/g)).toHaveLength(1)
    })
  })

  test('the result is the same whichever path ran: outputs and flags of install-mode direct and docker (as root)', async () => {
    await withKernel(async () => {
      const direct = await runAction({ ...INPUTS, 'install-mode': 'direct' })
      expectSuccess(direct)
      const directFlags = MINE.map(n => myEntry(n)?.flags)
      for (const n of MINE) removeEntry(n)

      const viaDocker = await runAction({ ...INPUTS, 'install-mode': 'docker' })
      expectSuccess(viaDocker)
      expect(viaDocker.stdout).not.toContain('Direct registration is not possible')
      expect(direct.outputs.method).toBe('direct')
      expect(viaDocker.outputs.method).toBe('docker')
      expect({ ...viaDocker.outputs, method: 'same' }).toEqual({ ...direct.outputs, method: 'same' })
      expect(MINE.map(n => myEntry(n)?.flags)).toEqual(directFlags)
      expectDockerEntries()
    })
  })

  test('an emulator that fails verification: the Docker path puts everything back, no container left', async () => {
    const dir = freshDir('bogus')
    fs.copyFileSync('/usr/bin/qemu-ppc64le-static', path.join(dir, 'qemu-ppc64le-static'))
    // The ppc64le emulator under the s390x name: it registers fine and cannot run s390x programs.
    fs.copyFileSync('/usr/bin/qemu-ppc64le-static', path.join(dir, 'qemu-s390x-static'))
    await withKernel(async () => {
      const before = myRaw()
      const r = await runAction({ ...INPUTS, 'qemu-url': dir }, { user: 'qemutest' })
      expectCleanFailure(r, before, /verification failed for linux\/s390x \(qemu-s390x\)/, /the entries this run made were removed/)
      expect(r.stdout).toMatch(/rollback: removed qemu-ppc64le/)
      expect(r.stdout).toMatch(/rollback: removed qemu-s390x/)
    })
  })
})

test('entries made through a container survive a failed direct run that would have replaced them, and keep running programs', async () => {
  // Their interpreters exist only in the container that is gone: putting them back would be impossible.
  const dir = freshDir('bogus-direct')
  fs.copyFileSync('/usr/bin/qemu-ppc64le-static', path.join(dir, 'qemu-ppc64le-static'))
  fs.copyFileSync('/usr/bin/qemu-ppc64le-static', path.join(dir, 'qemu-s390x-static'))
  await withKernel(async () => {
    expectSuccess(await runAction({ ...INPUTS, 'install-mode': 'docker', buildx: 'false' }))
    expectDockerEntries()
    const before = myRaw()
    const r = await runAction({ ...INPUTS, 'qemu-url': dir, 'install-mode': 'direct', buildx: 'false' })
    expectCleanFailure(r, before, /verification failed for linux\/s390x \(qemu-s390x\)/)
    expect(r.stdout).toMatch(/^qemu-s390x: replacing the existing entry/m)
    expect(r.stdout).not.toMatch(/rollback incomplete/)
    expectDockerEntries()
    await expectForeignUname('s390x')
    await expectForeignUname('ppc64el')
  })
})

test('uninstall: true on the Docker path: the post step removes the entries through a container', async () => {
  await withKernel(async () => {
    const before = myRaw()
    // As root with install-mode docker: the runs of this file are one job (this process), so its own earlier records do not count.
    const inputs = { ...INPUTS, buildx: 'false', uninstall: 'true', 'install-mode': 'docker' }
    const main = await runAction(inputs)
    expectSuccess(main)
    expect(main.outputs.method).toBe('docker')
    expectDockerEntries()
    const post = await runAction(inputs, { phase: 'post', state: main.stateFile, debug: true })
    expect(post.code).toBe(0)
    expect(post.annotations).toEqual([])
    expect(post.stdout).toMatch(/^uninstall: removed qemu-ppc64le$/m)
    expect(post.stdout).toMatch(/^uninstall: removed qemu-s390x$/m)
    expect(post.stdout).toMatch(/::debug::docker create .*--privileged/)
    expect(myRaw()).toEqual(before)
    expect(leftContainers()).toEqual([])
  })
})

describe('failures: one message listing each path tried, nothing registered, no container', () => {
  const direct = /direct: not root, and sudo -n: .*password/

  test('install-mode: direct as a docker user does not try Docker', async () => {
    await withKernel(async () => {
      const before = myRaw()
      const r = await runAction({ ...INPUTS, 'install-mode': 'direct' }, { user: 'qemutest' })
      const message = expectCleanFailure(r, before, /^cannot register emulators \(install-mode: direct\): /, direct)
      expect(message).not.toContain('docker:')
    })
  })

  test('image missing and not pullable', async () => {
    await withKernel(async () => {
      const before = myRaw()
      const r = await runAction({ ...INPUTS, 'docker-image': '127.0.0.1:9/missing/busybox:none' }, { user: 'qemutest' })
      expectCleanFailure(
        r,
        before,
        /^cannot register emulators \(install-mode: auto\): /,
        direct,
        /; docker: image 127\.0\.0\.1:9\/missing\/busybox:none is not on the daemon and pulling it failed \(.*connection refused\); set docker-image/,
      )
    })
  })

  test('daemon down', async () => {
    await withKernel(async () => {
      const before = myRaw()
      const sock = path.join(freshDir('nodaemon'), 'docker.sock')
      const r = await runAction(INPUTS, { user: 'qemutest', env: { DOCKER_HOST: `unix://${sock}` } })
      expectCleanFailure(r, before, direct, new RegExp(`; docker: cannot connect to the daemon at unix://${sock} \\(is it running\\?\\)`))
    })
  })

  test('the privileged container exits non-zero', async () => {
    await withKernel(async () => {
      const before = myRaw()
      const r = await runAction({ ...INPUTS, 'docker-image': FALSE_IMAGE }, { user: 'qemutest' })
      expectCleanFailure(
        r,
        before,
        direct,
        new RegExp(
          `; docker: a privileged container cannot use binfmt_misc: the privileged container \\(${FALSE_IMAGE}\\) exited with status 1 and no message`,
        ),
      )
    })
  })

  test('every path denied: no sudo, not in the docker group', async () => {
    await withKernel(async () => {
      const before = myRaw()
      const r = await runAction(INPUTS, { user: 'nobody' })
      expectCleanFailure(
        r,
        before,
        direct,
        /; docker: permission denied on the daemon's socket unix:\/\/\/var\/run\/docker\.sock \(is the user in the docker group\?\)/,
      )
    })
  })

  test('cancelled while the container runs: the container is removed', async () => {
    await withKernel(async () => {
      const before = myRaw()
      // The runner cancels with signals; the slow image keeps the first container running meanwhile.
      // SIGTERM once that container runs (not after a fixed time: a loaded machine may not have started it yet).
      let running = false
      const r = await runAction(
        { ...INPUTS, 'install-mode': 'docker', 'docker-image': SLOW_IMAGE },
        {
          debug: true,
          timeoutMs: 120000,
          onSpawn: child =>
            void whenPrinted(child, /::debug::docker start -a/)
              .then(async () => (running = await untilRunning(child)))
              .then(() => child.kill('SIGTERM')),
        },
      )
      // It stops on the signal, cleans up and exits non-zero by itself, saying why.
      expect({ code: r.code, signal: r.signal, running }).toEqual({ code: 1, signal: null, running: true })
      expect(
        r.annotations
          .filter(a => a.kind === 'error')
          .map(a => a.message)
          .join('\n'),
      ).toMatch(/cancelled \(SIGTERM\)/)
      expect(leftContainers()).toEqual([])
      expect(myRaw()).toEqual(before)
    })
  })
})

test('a runner that cannot see binfmt_misc (its own mount namespace without it): read and verified through containers', async () => {
  // Like a container job: binfmt_misc is not mounted where the action runs.
  // No shell in between: it would drop the INPUT_* variables, whose names have dashes.
  const dir = freshDir('unshare')
  const inner = path.join(dir, 'inner.js')
  fs.writeFileSync(
    inner,
    `require('child_process').execFileSync('umount', ['/proc/sys/fs/binfmt_misc'])
require(${JSON.stringify(actionScript('main'))})
`,
  )
  const wrapper = path.join(dir, 'run.js')
  fs.writeFileSync(
    wrapper,
    `const r = require('child_process').spawnSync('unshare', ['-m', '--propagation', 'private', process.execPath, ${JSON.stringify(inner)}], { stdio: 'inherit' })
process.exit(r.status ?? 1)
`,
  )
  await withKernel(async () => {
    const r = await runAction({ ...INPUTS, 'install-mode': 'docker' }, { script: wrapper })
    expectSuccess(r)
    expect(r.stdout).toContain("This runner cannot see the entries the daemon's containers register: binfmt_misc is not mounted in this runner's namespace")
    expect(r.outputs.method).toBe('docker')
    expect(r.stdout).toMatch(/^ppc64le: ok \(/m)
    expectDockerEntries()
    await expectForeignUname('s390x')

    // The plan is made from the table the container saw: the entries are kept.
    const after = myRaw()
    const again = await runAction({ ...INPUTS, 'install-mode': 'docker' }, { script: wrapper })
    expectSuccess(again)
    expect(myRaw()).toEqual(after)
    expect(again.stdout).toMatch(/^qemu-s390x: already registered with \/setup-qemu-binfmt\/\S+ and flags POCF; kept$/m)
  })
})

test('docker run and docker build --platform linux/arm64 fail before the action and work after it', async () => {
  const dir = freshDir('build')
  fs.writeFileSync(path.join(dir, 'Dockerfile'), `FROM ${ARM64_IMAGE}\nRUN uname -m > /arch\n`)
  const snap = snapshot()
  // Not removed when there: it would belong to someone else, and "fails before" could not be shown.
  if (snap.has('qemu-aarch64')) throw new Error('qemu-aarch64 is registered already (not by this test); cannot show that arm64 fails before the action')
  try {
    expect(mustDocker(['image', 'inspect', '--format', '{{.Os}}/{{.Architecture}}', ARM64_IMAGE]).trim()).toBe('linux/arm64')
    const runBefore = docker(['run', '--rm', ARM64_IMAGE, 'uname', '-m'])
    expect(runBefore.code).not.toBe(0)
    expect(runBefore.out).toMatch(/exec format error/)
    const buildBefore = docker(['build', '--no-cache', '--force-rm', '--platform', 'linux/arm64', '-t', BUILT_IMAGE, dir])
    expect(buildBefore.code).not.toBe(0)
    expect(buildBefore.out).toMatch(/exec format error/)

    const r = await runAction({ ...INPUTS, platforms: 'linux/arm64' }, { user: 'qemutest' })
    expectSuccess(r)
    expect(r.outputs.method).toBe('docker')
    expect(myEntry('qemu-aarch64')).toMatchObject({ enabled: true, flags: 'POCF', interpreter: expect.stringMatching(INTERPRETER('aarch64')) })

    expect(docker(['run', '--rm', ARM64_IMAGE, 'uname', '-m'])).toMatchObject({ code: 0, stdout: 'aarch64' })
    const build = docker(['build', '--no-cache', '--force-rm', '--platform', 'linux/arm64', '-t', BUILT_IMAGE, dir], 120000)
    // the legacy builder says "Successfully tagged"; with the buildx plugin installed, docker build is BuildKit's "naming to"
    expect({ code: build.code, out: build.out }).toEqual({ code: 0, out: expect.stringMatching(/Successfully tagged|naming to \S+ done/) })
    expect(docker(['run', '--rm', BUILT_IMAGE, 'cat', '/arch'])).toMatchObject({ code: 0, stdout: 'aarch64' })
  } finally {
    restore(snap, n => n === 'qemu-aarch64')
    docker(['rmi', '-f', BUILT_IMAGE])
  }
}, 180000)
