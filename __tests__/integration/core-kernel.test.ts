// What the core action does to entries already in binfmt_misc (replace, keep,
// reset), how a failed verification rolls back, and the non-root sudo path.
import { execFileSync } from 'child_process'
import * as fs from 'fs'
import * as path from 'path'
import { RunActionResult, actionScript, runAction } from '../support/action'
import { BinfmtEntry, parseEntry, setEnabled } from '../support/binfmt'
import { sha256 } from '../support/fixtures'
import {
  CoreFixtures,
  NON_QEMU,
  NON_QEMU_LINE,
  VERSION,
  closeFixtures,
  debianLine,
  errorsOf,
  expectCleanFailure,
  expectForeignUname,
  expectRegistered,
  expectSuccess,
  freshDir,
  myEntry,
  myRaw,
  registerMine,
  startFixtures,
  withKernel,
} from './core-helpers'
import { fakeDir } from './stand-ins'
import { uidOf } from '../support/users'

let fx: CoreFixtures
beforeAll(async () => {
  fx = await startFixtures()
}, 120000)
afterAll(() => closeFixtures(fx))

const inputs = (platforms: string, extra: Record<string, string> = {}): Record<string, string> => ({
  platforms,
  'qemu-version': VERSION,
  'qemu-url': fx.tarGzUrl,
  ...extra,
})

test('an existing qemu-aarch64 without F is replaced (and said so); a non-QEMU entry is left alone', async () => {
  await withKernel(async () => {
    registerMine(debianLine('aarch64', 'OC'))
    registerMine(NON_QEMU_LINE)
    const nonQemu = myRaw().get(NON_QEMU)
    expect(myEntry('qemu-aarch64')?.flags).toBe('OC')

    const cache = freshDir('toolcache')
    const r = await runAction(inputs('linux/arm64'), { toolCache: cache })
    expectSuccess(r)
    expect(r.stdout).toMatch(
      new RegExp(`^qemu-aarch64: replacing the existing entry \\(interpreter /usr/bin/qemu-aarch64-static, flags OC\\) with ${cache}/\\S+, flags PCF$`, 'm'),
    )
    expectRegistered('qemu-aarch64', `${cache}/`)
    expect(myRaw().get(NON_QEMU)).toBe(nonQemu)
    expect(r.outputs.emulators).toBe('aarch64')
    await expectForeignUname('arm64')
  })
})

test('an entry that differs only in flags is replaced: preserve-argv0 and credential false give F alone', async () => {
  await withKernel(async () => {
    const cache = freshDir('toolcache')
    expectSuccess(await runAction(inputs('linux/arm64'), { toolCache: cache }))
    expectRegistered('qemu-aarch64', `${cache}/`, 'POCF')
    const r = await runAction(inputs('linux/arm64', { 'preserve-argv0': 'false', credential: 'false' }), { toolCache: cache })
    expectSuccess(r)
    expect(r.stdout).toMatch(/^qemu-aarch64: replacing the existing entry .*flags POCF\).*, flags F$/m)
    expectRegistered('qemu-aarch64', `${cache}/`, 'F')
    await expectForeignUname('arm64')
  })
})

type Mode = 'fresh' | 'unmounted' | 'unavailable'

/**
 * Runs the action in a new user and mount namespace, as root there, against a
 * binfmt_misc table nobody else sees (Linux 6.7+ gives each user namespace that
 * mounts binfmt_misc an instance of its own). Modes:
 * - fresh: a new binfmt_misc instance holding `pre`;
 * - unmounted: nothing mounted on /proc/sys/fs/binfmt_misc (a tmpfs hides it), the action may mount it;
 * - unavailable: the same, and the action runs in a nested user namespace that may not mount.
 * Returns the run and the table as it is afterwards (in that namespace).
 */
async function privateRun(
  pre: string[],
  runInputs: Record<string, string>,
  mode: Mode = 'fresh',
): Promise<{ r: RunActionResult; entries: Map<string, BinfmtEntry> }> {
  const dir = freshDir('userns')
  const files = { pre: path.join(dir, 'pre'), dump: path.join(dir, 'dump'), inner: path.join(dir, 'inner.js'), js: path.join(dir, 'wrapper.js') }
  fs.writeFileSync(files.pre, pre.join('\n') + '\n')
  // Inside the namespaces (node, not sh: sh drops INPUT_QEMU-URL and other names with '-').
  fs.writeFileSync(
    files.inner,
    `const fs = require('fs'), cp = require('child_process')
const B = '/proc/sys/fs/binfmt_misc', mode = ${JSON.stringify(mode)}
const m = mode === 'fresh' ? cp.spawnSync('mount', ['-t', 'binfmt_misc', 'binfmt_misc', B], { stdio: 'inherit' }) : cp.spawnSync('mount', ['-t', 'tmpfs', 'none', B], { stdio: 'inherit' })
if (m.status !== 0) process.exit(2)
for (const line of fs.readFileSync(process.env.NS_PRE, 'utf8').split('\\n')) if (line) fs.writeFileSync(B + '/register', line)
const r = mode === 'unavailable'
  ? cp.spawnSync('unshare', ['--user', '--map-root-user', process.execPath, process.env.NS_ACTION], { stdio: 'inherit' })
  : cp.spawnSync(process.execPath, [process.env.NS_ACTION], { stdio: 'inherit' })
let dump = ''
for (const n of fs.readdirSync(B)) if (n !== 'register' && n !== 'status') dump += '@@ ' + n + '\\n' + fs.readFileSync(B + '/' + n, 'utf8')
fs.writeFileSync(process.env.NS_DUMP, fs.existsSync(B + '/register') ? dump : '@@ (not mounted)\\n')
process.exitCode = r.status === null ? 1 : r.status
`,
  )
  fs.writeFileSync(
    files.js,
    `const r = require('child_process').spawnSync('unshare', ['--user', '--map-root-user', '--mount', '--propagation', 'private', process.execPath, ${JSON.stringify(files.inner)}], { stdio: 'inherit' })\n` +
      `process.exitCode = r.status === null ? 1 : r.status\n`,
  )
  const r = await runAction(runInputs, {
    script: files.js,
    toolCache: freshDir('toolcache'),
    env: { NS_PRE: files.pre, NS_DUMP: files.dump, NS_ACTION: actionScript('main') },
  })
  const entries = new Map<string, BinfmtEntry>()
  const dump = fs.existsSync(files.dump) ? fs.readFileSync(files.dump, 'utf8') : ''
  for (const block of dump.split(/^@@ /m).filter(Boolean)) {
    const nl = block.indexOf('\n')
    const name = block.slice(0, nl)
    entries.set(name, parseEntry(name, block.slice(nl + 1)))
  }
  return { r, entries }
}

/**
 * reset removes every qemu-* entry, including ones other tests on this machine
 * own (qemu-ppc64le, qemu-s390x): so reset runs only in a private binfmt_misc instance.
 */
describe('reset: true, in a private binfmt_misc instance', () => {
  test('without reset the private table keeps an unrelated qemu-* entry (control)', async () => {
    await withKernel(async () => {
      const before = myRaw()
      const { r, entries } = await privateRun([debianLine('riscv64', 'F'), NON_QEMU_LINE], inputs('linux/arm64'))
      expectSuccess(r)
      expect([...entries.keys()].sort()).toEqual(['qemu-aarch64', 'qemu-riscv64', NON_QEMU])
      expect(entries.get('qemu-aarch64')?.flags).toBe('POCF')
      // The host's table saw none of it.
      expect(myRaw()).toEqual(before)
    })
  })

  test('every qemu-* entry is removed first, the requested ones registered, the non-QEMU entry left alone', async () => {
    // Another user's shared-use records on the host, as any run of the action as that user leaves them: in this
    // user namespace that user is not mapped (its files show as owned by nobody), and its jobs cannot use this table.
    const shared = '/tmp/setup-qemu-binfmt-jobs'
    if (!fs.existsSync(shared)) fs.mkdirSync(shared, { mode: 0o1777 })
    fs.chmodSync(shared, 0o1777)
    execFileSync('runuser', ['-u', 'qemutest', '--', 'mkdir', '-p', '-m', '0755', path.join(shared, String(uidOf('qemutest')))])
    await withKernel(async () => {
      const before = myRaw()
      const { r, entries } = await privateRun(
        [debianLine('aarch64', 'OC'), debianLine('riscv64', 'F'), NON_QEMU_LINE],
        inputs('linux/arm64', { reset: 'true' }),
      )
      expectSuccess(r)
      expect(r.stdout).toMatch(/^reset: removing qemu-riscv64 \(interpreter \/usr\/bin\/qemu-riscv64-static, flags F\)$/m)
      expect(r.stdout).toMatch(/^reset: removing qemu-aarch64 /m)
      expect([...entries.keys()].sort()).toEqual(['qemu-aarch64', NON_QEMU])
      const aarch64 = entries.get('qemu-aarch64') as BinfmtEntry
      expect(aarch64.flags).toBe('POCF')
      expect(aarch64.interpreter).not.toBe('/usr/bin/qemu-aarch64-static')
      const nonQemu = entries.get(NON_QEMU) as BinfmtEntry
      expect({ enabled: nonQemu.enabled, interpreter: nonQemu.interpreter, magic: nonQemu.magic, flags: nonQemu.flags }).toEqual({
        enabled: true,
        interpreter: '/bin/false',
        magic: Buffer.from('QEMUTESTNONQEMU').toString('hex'),
        flags: '',
      })
      expect(r.outputs.emulators).toBe('aarch64')
      expect(myRaw()).toEqual(before)
    })
  })

  test('reset, then a failed verification: every entry reset removed is back', async () => {
    const { r, entries } = await privateRun([debianLine('aarch64', 'OC'), debianLine('riscv64', 'F'), NON_QEMU_LINE], {
      platforms: 'linux/arm64,linux/arm/v7',
      'qemu-url': fakeDir(),
      reset: 'true',
    })
    expect(r.code).toBe(1)
    expect(errorsOf(r)).toHaveLength(1)
    expect(errorsOf(r)[0]).toMatch(/linux\/arm\/v7/)
    expect([...entries.keys()].sort()).toEqual(['qemu-aarch64', 'qemu-riscv64', NON_QEMU])
    expect(entries.get('qemu-aarch64')).toMatchObject({ enabled: true, interpreter: '/usr/bin/qemu-aarch64-static', flags: 'OC' })
    expect(entries.get('qemu-riscv64')).toMatchObject({ enabled: true, interpreter: '/usr/bin/qemu-riscv64-static', flags: 'F' })
  })
})

describe('binfmt_misc not mounted (in a private mount namespace)', () => {
  test('the action mounts it, registers and verifies', async () => {
    const { r, entries } = await withKernel(() => privateRun([], inputs('linux/arm64'), 'unmounted'))
    expectSuccess(r)
    expect([...entries.keys()]).toEqual(['qemu-aarch64'])
    expect(entries.get('qemu-aarch64')).toMatchObject({ enabled: true, flags: 'POCF' })
    expect(r.outputs.emulators).toBe('aarch64')
  })

  test('and it cannot be mounted: exit 1, one error that says why and what to do', async () => {
    const { r, entries } = await withKernel(() => privateRun([], inputs('linux/arm64'), 'unavailable'))
    expect(r.code).toBe(1)
    const errors = errorsOf(r)
    expect(errors).toHaveLength(1)
    expect(errors[0]).toMatch(/^binfmt_misc is not available/)
    expect(errors[0]).toMatch(/install-mode: docker/)
    // The reason mount gave, not the hint line util-linux prints after it.
    expect(errors[0]).toMatch(/[Pp]ermission denied|EPERM|not permitted/)
    expect([...entries.keys()]).toEqual(['(not mounted)'])
  })
})

describe('a failed verification rolls back', () => {
  test('exit 1, the error names linux/arm/v7 and what happened, no entry of the run remains', async () => {
    await withKernel(async () => {
      const before = myRaw()
      const r = await runAction({ platforms: 'linux/arm64,linux/arm/v7', 'qemu-url': fakeDir() })
      const error = expectCleanFailure(r, before, /linux\/arm\/v7/, /verification failed/, /Invalid ELF image|exited with status/)
      // arm64 verified fine, but it is rolled back with the rest and not reported.
      expect(error).not.toMatch(/linux\/arm64/)
      // Registered under staging names until verified: nothing under the real names ever appeared.
      expect(r.stdout).toMatch(/^rollback: removed qemu-aarch64\.staged-\d+$/m)
      expect(r.stdout).toMatch(/^rollback: removed qemu-arm\.staged-\d+$/m)
      expect(r.outputs.platforms).toBeUndefined()
    })
  })

  test('an entry the run would have replaced is never removed: it stays as it was', async () => {
    await withKernel(async () => {
      registerMine(debianLine('arm', 'OC'))
      registerMine(NON_QEMU_LINE)
      const before = myRaw()
      const r = await runAction({ platforms: 'linux/arm64,linux/arm/v7', 'qemu-url': fakeDir() })
      expectCleanFailure(r, before, /linux\/arm\/v7/)
      expect(r.stdout).toMatch(/^rollback: removed qemu-arm\.staged-\d+$/m)
      expect(r.stdout).not.toMatch(/removing qemu-arm\b|removed qemu-arm$/m)
      expect(myEntry('qemu-arm')).toMatchObject({ enabled: true, interpreter: '/usr/bin/qemu-arm-static', flags: 'OC' })
    })
  })

  test('an entry that was disabled is put back disabled', async () => {
    await withKernel(async () => {
      registerMine(debianLine('arm', 'OC'))
      setEnabled('qemu-arm', false)
      const before = myRaw()
      expect(myEntry('qemu-arm')?.enabled).toBe(false)
      const r = await runAction({ platforms: 'linux/arm/v7', 'qemu-url': fakeDir() })
      expect(r.code).toBe(1)
      // A user disabled it on purpose: a failed step must not switch it back on.
      expect(myEntry('qemu-arm')).toMatchObject({ enabled: false, interpreter: '/usr/bin/qemu-arm-static', flags: 'OC' })
      expectCleanFailure(r, before, /linux\/arm\/v7/)
    })
  })

  test('an identical entry that was already there and fails: the error does not claim nothing is left', async () => {
    await withKernel(async () => {
      const dir = fakeDir()
      // Exactly what the run would register, so it is kept, not replaced; it fails verification.
      registerMine(debianLine('arm', 'PCF', path.join(dir, 'qemu-arm-static')))
      const before = myRaw()
      const r = await runAction({ platforms: 'linux/arm/v7', 'qemu-url': dir })
      expect(r.stdout).toMatch(/^qemu-arm: already registered .* kept$/m)
      // Not this run's entry: left as it was (not removed), and the error says so.
      const error = expectCleanFailure(r, before, /linux\/arm\/v7/)
      expect(myEntry('qemu-arm')).toBeDefined()
      expect(error).toMatch(/; qemu-arm was registered before this step and left as it was/)
    })
  })
})

describe('not root', () => {
  test('through sudo -n (user qemusudo): method=direct, entries registered and working', async () => {
    await withKernel(async () => {
      const cache = freshDir('toolcache')
      const r = await runAction(inputs('linux/arm64,linux/arm/v7'), { user: 'qemusudo', toolCache: cache })
      expectSuccess(r)
      expect(r.stdout).toMatch(/through sudo -n/)
      expect(r.outputs.method).toBe('direct')
      expect(r.outputs.emulators.split(',').sort()).toEqual(['aarch64', 'arm'])
      for (const t of ['aarch64', 'arm']) {
        const e = expectRegistered(`qemu-${t}`, `${cache}/`)
        expect(sha256(e.interpreter)).toBe(sha256(`/usr/bin/qemu-${t}-static`))
        // Downloaded by the job user, into the job user's tool cache.
        expect(fs.statSync(e.interpreter).uid).toBe(fs.statSync(cache).uid)
      }
      expect(fs.statSync(cache).uid).not.toBe(0)
      await expectForeignUname('arm64')
      await expectForeignUname('armhf')
    })
  })

  test('through sudo -n, a failed verification is rolled back too', async () => {
    await withKernel(async () => {
      const before = myRaw()
      const r = await runAction({ platforms: 'linux/arm64,linux/arm/v7', 'qemu-url': fakeDir() }, { user: 'qemusudo' })
      expect(r.stdout).toMatch(/through sudo -n/)
      expectCleanFailure(r, before, /linux\/arm\/v7/, /verification failed/)
    })
  })

  test('neither root nor sudo -n (user qemutest), install-mode: direct: exit 1, one error, nothing registered', async () => {
    await withKernel(async () => {
      fx.server.reset()
      const before = myRaw()
      const r = await runAction(inputs('linux/arm64', { 'install-mode': 'direct' }), { user: 'qemutest' })
      const error = expectCleanFailure(r, before, /install-mode: direct/, /sudo/)
      expect(error).toMatch(/root/)
      expect(fx.server.requests).toEqual([])
    })
  })
})
