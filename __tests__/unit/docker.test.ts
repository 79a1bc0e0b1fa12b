import * as fs from 'fs'
import * as os from 'os'
import * as path from 'path'
import { EntrySpec, registerLine } from '../../src/binfmt'
import { CONTAINER_LABEL } from '../../src/docker/container'
import { INIT_USER_NS, RunnerNamespace, dockerAccess, hiddenFromRunner } from '../../src/access/docker/daemon'
import { verifyInContainer } from '../../src/access/docker/verify'
import { PROBE_SCRIPT, parseProbes } from '../../src/verify'
import { CONTAINER_DIR, ContainerTable, DockerWriter, REGISTER_SCRIPT, parseTable } from '../../src/access/docker/writer'
import { ProcessRunner, RunOptions, RunResult } from '../../src/process'
import { PROBE_EXIT_STATUS } from '../../src/test-programs'
import { Registration } from '../../src/register'
import { getTarget } from '../../src/targets'
import { readAll } from '../support/tar'

const ppc = getTarget('ppc64le')
const s390x = getTarget('s390x')
const BOOT = '0c1d6a51-3c55-4a0e-9f4e-1e1c2a6b9a10'
const SELF: RunnerNamespace = { bootId: BOOT, userns: INIT_USER_NS, binfmtMounted: true }
const IMAGE = 'busybox:stable'

let dir: string
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'docker-unit-'))
})
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }))

const kernelText = (s: EntrySpec, flags: string): string =>
  `enabled\ninterpreter ${s.interpreter}\nflags: ${flags}\noffset 0\nmagic ${s.magic}\nmask ${s.mask}\n`

/** What REGISTER_SCRIPT prints after its ops. */
function dump(entries: [EntrySpec, string][] = [], over: { userns?: string; bootId?: string; mounted?: boolean } = {}): string {
  const lines = [`@@userns ${over.userns ?? INIT_USER_NS}`, `@@boot_id ${over.bootId ?? BOOT}`]
  if (over.mounted ?? true) {
    lines.push('@@mounted')
    for (const [s, flags] of entries) lines.push(`@@entry ${s.name}`, kernelText(s, flags).trimEnd())
  }
  lines.push('@@end', '')
  return lines.join('\n')
}

interface Call {
  args: string[]
  input?: string | Buffer
}
type Reply = Partial<RunResult> | Error

/** `docker` as a function of its arguments; every call recorded. */
class FakeDocker implements ProcessRunner {
  readonly calls: Call[] = []
  private containers = 0
  /** replaces the standard answers where it returns something; may be swapped between steps */
  constructor(public reply: (args: string[]) => Reply | undefined = () => undefined) {}

  async run(command: string, args: readonly string[], options: RunOptions = {}): Promise<RunResult> {
    expect(command).toBe('docker')
    const call = { args: [...args], input: options.input }
    this.calls.push(call)
    const r = this.reply(call.args) ?? this.standard(call.args)
    if (r instanceof Error) throw r
    return { code: 0, signal: null, stdout: '', stderr: '', ...r }
  }

  private standard(args: string[]): Reply {
    switch (args[0]) {
      case 'version':
        return { stdout: 'linux/amd64 24.0.7\n' }
      case 'create':
        return { stdout: `c${++this.containers}\n` }
      case 'start':
        return { stdout: dump() }
      default:
        return {}
    }
  }

  /** the first word of each call (create, cp, start, ...) */
  get verbs(): string[] {
    return this.calls.map(c => (c.args[0] === 'image' ? `image ${c.args[1]}` : c.args[0]))
  }

  created(n = 0): string[] {
    return this.calls.filter(c => c.args[0] === 'create')[n].args
  }
}

const quiet = { info: () => undefined, debug: () => undefined }

async function writerFor(fake: FakeDocker, self: RunnerNamespace = SELF): Promise<DockerWriter> {
  const access = await dockerAccess(fake, IMAGE, quiet, self, 'x64')
  if (!access.writer) throw new Error(`no writer: ${access.reason}`)
  fake.calls.length = 0
  return access.writer as DockerWriter
}

function emulator(name: string, content: string): string {
  const sub = fs.mkdtempSync(path.join(dir, 'emu-'))
  const file = path.join(sub, name)
  fs.writeFileSync(file, content, { mode: 0o755 })
  return file
}

function spec(target = ppc, interpreter = '/x', flags = 'POCF'): EntrySpec {
  return { name: `qemu-${target.name}`, offset: 0, magic: target.magic, mask: target.mask, interpreter, flags }
}

/** The members of the tar stream handed to `docker cp`, as the action's tar reader reads them: path -> { mode, content }. */
async function untar(archive: Buffer): Promise<Map<string, { mode: number; content: string; dir: boolean }>> {
  const { headers, data } = await readAll(archive)
  return new Map(headers.map(h => [h.name.replace(/\/$/, ''), { mode: h.mode, content: data.get(h.name) ?? '', dir: h.type === 'directory' }]))
}

describe('dockerAccess: why Docker cannot be used', () => {
  const reasonFor = async (reply: (args: string[]) => Reply | undefined, self = SELF, arch = 'x64'): Promise<string | undefined> => {
    const access = await dockerAccess(new FakeDocker(reply), IMAGE, quiet, self, arch)
    expect(access.writer).toBeUndefined()
    return access.reason
  }

  test('no docker command', async () => {
    const enoent = Object.assign(new Error('spawn docker ENOENT'), { code: 'ENOENT' })
    expect(await reasonFor(() => enoent)).toBe('docker: not installed (no docker command on PATH)')
  })

  test('daemon down, socket not permitted, no answer', async () => {
    expect(
      await reasonFor(a =>
        a[0] === 'version'
          ? { code: 1, stdout: '\n', stderr: 'Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?\n' }
          : undefined,
      ),
    ).toBe('docker: cannot connect to the daemon at unix:///var/run/docker.sock (is it running?)')
    expect(
      await reasonFor(a =>
        a[0] === 'version'
          ? {
              code: 1,
              stderr:
                'permission denied while trying to connect to the Docker daemon socket at unix:///var/run/docker.sock: Get "http://%2Fvar%2Frun%2Fdocker.sock/v1.50/version": dial unix /var/run/docker.sock: connect: permission denied\n',
            }
          : undefined,
      ),
    ).toBe("docker: permission denied on the daemon's socket unix:///var/run/docker.sock (is the user in the docker group?)")
    expect(await reasonFor(a => (a[0] === 'version' ? { code: null, signal: 'SIGTERM' } : undefined))).toBe('docker: the daemon did not answer within 20 s')
    expect(await reasonFor(a => (a[0] === 'version' ? { code: 1, stderr: 'context "x": not found\n' } : undefined))).toBe(
      'docker: docker version exited with status 1: context "x": not found',
    )
  })

  test('a daemon that cannot run these emulators', async () => {
    expect(await reasonFor(a => (a[0] === 'version' ? { stdout: 'windows/amd64 24.0.7\n' } : undefined))).toBe(
      'docker: the daemon runs windows containers, not Linux ones',
    )
    expect(await reasonFor(a => (a[0] === 'version' ? { stdout: 'linux/arm64 24.0.7\n' } : undefined))).toBe(
      'docker: the daemon runs on arm64, this runner on amd64: its emulators would not run there',
    )
  })

  test('image missing and not pullable; pulled when missing', async () => {
    const missing = (a: string[]): Reply | undefined =>
      a[0] === 'image' ? { code: 1, stderr: 'Error response from daemon: No such image: busybox:stable\n' } : undefined
    expect(
      await reasonFor(a =>
        a[0] === 'pull'
          ? { code: 1, stderr: 'Error response from daemon: Get "https://registry-1.docker.io/v2/": dial tcp: lookup registry-1.docker.io: no such host\n' }
          : missing(a),
      ),
    ).toBe(
      'docker: image busybox:stable is not on the daemon and pulling it failed (Error response from daemon: Get "https://registry-1.docker.io/v2/": dial tcp: lookup registry-1.docker.io: no such host); set docker-image to an image the daemon has or can pull',
    )
    const fake = new FakeDocker(missing)
    const access = await dockerAccess(fake, IMAGE, quiet, SELF, 'x64')
    expect(access.writer).toBeDefined()
    expect(fake.verbs).toEqual(['version', 'image inspect', 'pull', 'create', 'start', 'rm'])
    expect(fake.calls[2].args).toEqual(['pull', IMAGE])
  })

  test('the privileged container fails: its message, and the container removed', async () => {
    const fake = new FakeDocker(a =>
      a[0] === 'start'
        ? { code: 1, stdout: dump([], { mounted: false }), stderr: 'mounting binfmt_misc failed: mount: permission denied (are you root?)\n' }
        : undefined,
    )
    const access = await dockerAccess(fake, IMAGE, quiet, SELF, 'x64')
    expect(access.reason).toBe(
      'docker: a privileged container cannot use binfmt_misc: the privileged container (busybox:stable) exited with status 1: mounting binfmt_misc failed: mount: permission denied (are you root?)',
    )
    expect(fake.verbs.slice(-3)).toEqual(['create', 'start', 'rm'])
    expect(fake.calls[fake.calls.length - 1].args).toEqual(['rm', '-f', 'c1'])
  })

  test('a shell that prints nothing', async () => {
    expect(await reasonFor(a => (a[0] === 'start' ? { stdout: '' } : undefined))).toBe(
      "docker: a privileged container cannot use binfmt_misc: the privileged container (busybox:stable) did not print binfmt_misc's entries; does its sh work?",
    )
  })

  test('rootless or userns-remapped daemons', async () => {
    expect(await reasonFor(a => (a[0] === 'start' ? { stdout: dump([], { userns: 'user:[4026532288]' }) } : undefined))).toBe(
      "docker: the daemon's containers run in a user namespace (user:[4026532288]; rootless Docker or userns-remap), where binfmt_misc entries do not reach the host and go with the container",
    )
  })
})

describe('dockerAccess: a usable daemon', () => {
  test('checks the daemon and image, then looks at binfmt_misc in one privileged container, binding nothing', async () => {
    const logged: string[] = []
    const fake = new FakeDocker(a => (a[0] === 'start' ? { stdout: dump([[spec(s390x, '/usr/bin/qemu-s390x-static', 'F'), 'F']]) } : undefined))
    const access = await dockerAccess(fake, IMAGE, { info: m => logged.push(m), debug: () => undefined }, SELF, 'x64')
    const writer = access.writer as DockerWriter
    expect(writer).toBeInstanceOf(DockerWriter)
    expect(writer.method).toBe('docker')
    expect(writer.how).toBe('through a privileged container (busybox:stable)')
    expect(writer.hidden).toBeUndefined()
    expect(fake.verbs).toEqual(['version', 'image inspect', 'create', 'start', 'rm'])
    const create = fake.created()
    expect(create.slice(0, create.indexOf(IMAGE))).toEqual([
      'create',
      '--rm',
      '--label',
      CONTAINER_LABEL,
      '--network',
      'none',
      '--name',
      expect.stringMatching(new RegExp(`^${CONTAINER_LABEL}-${process.pid}-[0-9a-f]{12}$`)),
      '--privileged',
    ])
    expect(create.slice(create.indexOf(IMAGE))).toEqual([IMAGE, 'sh', '-c', REGISTER_SCRIPT, 'sh'])
    expect(fake.calls.map(c => c.args.join(' '))).not.toContainEqual(expect.stringMatching(/(^| )(-v|--volume|--mount)( |=|$)/))
    expect(fake.calls[3].args).toEqual(['start', '-a', 'c1'])
    expect(fake.calls[4].args).toEqual(['rm', '-f', 'c1'])
    // The table as the container saw it.
    expect(writer.view.mounted()).toBe(true)
    expect(writer.view.list().map(e => [e.name, e.interpreter, e.flags])).toEqual([['qemu-s390x', '/usr/bin/qemu-s390x-static', 'F']])
    expect(logged).toEqual(['Docker daemon 24.0.7 (linux/amd64)'])
  })

  test.each([
    ['another kernel', { ...SELF, bootId: 'another-kernel' }, /^the Docker daemon runs on another kernel than this runner \(a remote DOCKER_HOST or a VM\)$/],
    ['binfmt_misc not mounted', { ...SELF, binfmtMounted: false }, /^binfmt_misc is not mounted in this runner's namespace/],
    ['a user namespace', { ...SELF, userns: 'user:[4026532999]' }, /^this runner runs in a user namespace \(user:\[4026532999\]\)/],
  ])('a runner that cannot see the table (%s) is told so', async (_label, self, why) => {
    const logged: string[] = []
    const access = await dockerAccess(new FakeDocker(), IMAGE, { info: m => logged.push(m), debug: () => undefined }, self, 'x64')
    const writer = access.writer as DockerWriter
    expect(writer.hidden).toMatch(why)
    expect(logged[logged.length - 1]).toContain(`This runner cannot see the entries the daemon's containers register: ${writer.hidden}.`)
  })

  test('hiddenFromRunner: unknown boot ids do not count as different', () => {
    const table: ContainerTable = { userns: INIT_USER_NS, bootId: '', mounted: true, entries: [] }
    expect(hiddenFromRunner(table, SELF)).toBeUndefined()
    expect(hiddenFromRunner({ ...table, bootId: BOOT }, { ...SELF, bootId: undefined })).toBeUndefined()
  })
})

describe('DockerWriter', () => {
  test('interpreterFor: a path in the container named by content, stable across runs and locations', async () => {
    const w = await writerFor(new FakeDocker())
    const a = w.interpreterFor(emulator('qemu-ppc64le', 'emulator one'))
    const b = w.interpreterFor(emulator('qemu-ppc64le', 'emulator one'))
    const c = w.interpreterFor(emulator('qemu-ppc64le', 'emulator two'))
    expect(a).toMatch(new RegExp(`^${CONTAINER_DIR}/[0-9a-f]{16}/qemu-ppc64le$`))
    expect(b).toBe(a)
    expect(c).not.toBe(a)
    const other = await writerFor(new FakeDocker())
    expect(other.interpreterFor(emulator('qemu-ppc64le', 'emulator one'))).toBe(a)
  })

  test('apply: one container, ops in order as arguments, emulators copied in, always removed', async () => {
    const fake = new FakeDocker()
    const w = await writerFor(fake)
    const ppcFile = emulator('qemu-ppc64le', 'ppc emulator')
    const s390File = emulator('qemu-s390x', 's390x emulator')
    const ppcSpec = spec(ppc, w.interpreterFor(ppcFile))
    const s390Spec = spec(s390x, w.interpreterFor(s390File), 'F')
    const after = dump([
      [ppcSpec, 'POCF'],
      [s390Spec, 'F'],
    ])
    fake.reply = a => (a[0] === 'start' ? { stdout: after } : undefined)
    await w.apply([
      { kind: 'remove', name: 'qemu-s390x' },
      { kind: 'register', spec: s390Spec },
      { kind: 'register', spec: ppcSpec },
    ])
    expect(fake.verbs).toEqual(['create', 'cp', 'start', 'rm'])
    const create = fake.created()
    expect(create).toContain('--privileged')
    expect(create.slice(create.indexOf(REGISTER_SCRIPT) + 1)).toEqual(['sh', 'r:qemu-s390x', `a:${registerLine(s390Spec)}`, `a:${registerLine(ppcSpec)}`])
    const id = 'c2' // the fake's second container: the first looked at the table
    expect(fake.calls[1].args).toEqual(['cp', '-', `${id}:/`])
    const files = await untar(fake.calls[1].input as Buffer)
    expect(files.get(ppcSpec.interpreter.slice(1))).toEqual({ mode: 0o755, content: 'ppc emulator', dir: false })
    expect(files.get(s390Spec.interpreter.slice(1))).toEqual({ mode: 0o755, content: 's390x emulator', dir: false })
    expect([...files.keys()].filter(k => !files.get(k)!.dir)).toHaveLength(2)
    expect(fake.calls[3].args).toEqual(['rm', '-f', id])
    expect(w.view.list().map(e => e.name)).toEqual(['qemu-ppc64le', 'qemu-s390x'])
  })

  // Issue 23.7: docker create cut short has printed no id, but the daemon may have made the container.
  test('apply: docker create stopped at its time limit: the container, named up front, is removed by that name', async () => {
    const fake = new FakeDocker()
    const w = await writerFor(fake)
    fake.reply = a => (a[0] === 'create' ? { code: null as unknown as number, timedOut: true, signal: 'SIGKILL' } : undefined)
    await expect(w.apply([{ kind: 'remove', name: 'qemu-s390x' }])).rejects.toThrow(/docker create did not finish/)
    const name = fake.created()[fake.created().indexOf('--name') + 1]
    expect(name).toMatch(new RegExp(`^${CONTAINER_LABEL}-${process.pid}-[0-9a-f]{12}$`))
    expect(fake.calls.at(-1)?.args).toEqual(['rm', '-f', name])
  })

  test('apply: a failing step fails with its message; the table it left is read; the container is removed', async () => {
    const fake = new FakeDocker()
    const w = await writerFor(fake)
    fake.reply = a =>
      a[0] === 'start' ? { code: 1, stdout: dump([[spec(s390x), 'POCF']]), stderr: 'registering qemu-ppc64le failed: File exists\n' } : undefined
    const ppcSpec = spec(ppc, w.interpreterFor(emulator('qemu-ppc64le', 'x')))
    await expect(w.apply([{ kind: 'register', spec: ppcSpec }])).rejects.toThrow(
      'the privileged container (busybox:stable) exited with status 1: registering qemu-ppc64le failed: File exists',
    )
    expect(fake.verbs).toEqual(['create', 'cp', 'start', 'rm'])
    expect(w.view.list().map(e => e.name)).toEqual(['qemu-s390x'])
  })

  test('apply: docker cp failing stops before start, and the container is removed', async () => {
    const fake = new FakeDocker()
    const w = await writerFor(fake)
    fake.reply = a => (a[0] === 'cp' ? { code: 1, stderr: 'Error response from daemon: no space left on device\n' } : undefined)
    const s = spec(ppc, w.interpreterFor(emulator('qemu-ppc64le', 'x')))
    await expect(w.apply([{ kind: 'register', spec: s }])).rejects.toThrow(
      'docker cp into the container exited with status 1: Error response from daemon: no space left on device',
    )
    expect(fake.verbs).toEqual(['create', 'cp', 'rm'])
  })

  test('apply: nothing to do runs no container', async () => {
    const fake = new FakeDocker()
    const w = await writerFor(fake)
    await w.apply([])
    expect(fake.calls).toEqual([])
  })

  test('apply: an entry put back on rollback gets its interpreter from the runner when it is there', async () => {
    const fake = new FakeDocker()
    const w = await writerFor(fake)
    const old = emulator('qemu-ppc64le-static', 'the distro emulator')
    await w.apply([
      { kind: 'register', spec: spec(ppc, old, 'F') },
      { kind: 'register', spec: spec(s390x, '/nonexistent/qemu-s390x-static', '') },
    ])
    const files = await untar(fake.calls[1].input as Buffer)
    expect(files.get(old.slice(1))).toEqual({ mode: 0o755, content: 'the distro emulator', dir: false })
    expect([...files.keys()].some(k => k.includes('nonexistent'))).toBe(false)
  })
})

describe('verifyInContainer', () => {
  test('checks entries as the container saw them and runs every test program in one ordinary container', async () => {
    const fake = new FakeDocker()
    const w = await writerFor(fake)
    const ppcSpec = spec(ppc, `${CONTAINER_DIR}/0123456789abcdef/qemu-ppc64le`)
    const s390Spec = spec(s390x, `${CONTAINER_DIR}/fedcba9876543210/qemu-s390x`)
    const riscv = getTarget('riscv64')
    const riscvSpec = spec(riscv, `${CONTAINER_DIR}/00000000000000aa/qemu-riscv64`)
    w.view.update(
      parseTable(
        dump([
          [ppcSpec, 'POCF'],
          [s390Spec, 'POCF'],
          [riscvSpec, 'F'],
        ]),
      )!,
    )
    fake.reply = a =>
      a[0] === 'start'
        ? { stdout: `@@probe probe-s390x 2 ./probe-s390x: line 1: syntax error: unexpected ")"\n@@probe probe-ppc64le ${PROBE_EXIT_STATUS} \n` }
        : undefined
    const regs: Registration[] = [
      { target: ppc, spec: ppcSpec, action: 'added', staged: ppcSpec.name },
      { target: s390x, spec: s390Spec, action: 'added', staged: s390Spec.name },
      { target: riscv, spec: riscvSpec, action: 'added', staged: riscvSpec.name },
      { target: getTarget('mips64el'), spec: spec(getTarget('mips64el')), action: 'added', staged: spec(getTarget('mips64el')).name },
    ]
    const probeDir = fs.mkdtempSync(path.join(dir, 'probes-'))
    const results = await verifyInContainer(w, regs, probeDir)
    expect(results.map(r => [r.target.name, r.ok, r.detail])).toEqual([
      ['ppc64le', true, 'ok'],
      ['s390x', false, 'exec format error: no binfmt_misc entry took the test program'],
      ['riscv64', false, 'qemu-riscv64 has flags F, expected POCF'],
      ['mips64el', false, 'qemu-mips64el is not in binfmt_misc after registering it'],
    ])
    // One container, not privileged, with the two test programs copied in.
    expect(fake.verbs).toEqual(['create', 'cp', 'start', 'rm'])
    const create = fake.created()
    expect(create).not.toContain('--privileged')
    expect(create.slice(create.indexOf(PROBE_SCRIPT) + 1)).toEqual(['sh', '/setup-qemu-binfmt-probes', 'probe-ppc64le', 'probe-s390x'])
    const files = await untar(fake.calls[1].input as Buffer)
    expect(files.get('setup-qemu-binfmt-probes/probe-ppc64le')?.mode).toBe(0o755)
    expect(files.get('setup-qemu-binfmt-probes/probe-s390x')?.content).toBe(fs.readFileSync(path.join(probeDir, 'probe-s390x'), 'utf8'))
  })

  test('a verification container that fails makes every probe fail, with its message', async () => {
    const fake = new FakeDocker()
    const w = await writerFor(fake)
    const ppcSpec = spec(ppc, `${CONTAINER_DIR}/0123456789abcdef/qemu-ppc64le`)
    w.view.update(parseTable(dump([[ppcSpec, 'POCF']]))!)
    fake.reply = a => (a[0] === 'start' ? { code: 125, stderr: 'docker: Error response from daemon: oci runtime error\n' } : undefined)
    const [r] = await verifyInContainer(w, [{ target: ppc, spec: ppcSpec, action: 'added', staged: ppcSpec.name }], fs.mkdtempSync(path.join(dir, 'probes-')))
    expect(r.ok).toBe(false)
    expect(r.detail).toContain('the verification container (busybox:stable) exited with status 125: docker: Error response from daemon: oci runtime error')
    expect(fake.verbs).toEqual(['create', 'cp', 'start', 'rm'])
  })
})

describe('parsing what the containers print', () => {
  test('parseTable: entries, flags, and a cut-off dump', () => {
    const s = spec(ppc, '/setup-qemu-binfmt/0123456789abcdef/qemu-ppc64le')
    const t = parseTable(`noise\n${dump([[s, 'POCF']])}`)!
    expect(t).toMatchObject({ userns: INIT_USER_NS, bootId: BOOT, mounted: true })
    expect(t.entries).toEqual([{ name: 'qemu-ppc64le', enabled: true, interpreter: s.interpreter, flags: 'POCF', offset: 0, magic: ppc.magic, mask: ppc.mask }])
    expect(parseTable(dump([[s, 'POCF']]).replace('@@end\n', ''))).toBeUndefined()
    expect(parseTable(dump([], { mounted: false }))!.mounted).toBe(false)
  })

  test('parseProbes: status, signal, exec format error, stderr', () => {
    const names = ['probe-a', 'probe-b', 'probe-c', 'probe-d', 'probe-e', 'probe-f']
    const r = parseProbes(
      [
        '@@probe probe-b 139 ',
        '@@probe probe-a 42 ',
        '@@probe probe-c 1 qemu: unhandled CPU exception',
        '@@probe probe-d 126 /bin/sh: ./probe-d: cannot execute binary file: Exec format error',
        '@@probe probe-e 126 sh: 1: /tmp/x/probe-e: Permission denied',
        '@@probe probe-f 127 sh: 1: /tmp/x/probe-f: not found',
        '@@probe probe-z 0 not asked for',
        '',
      ].join('\n'),
      names,
    )
    expect(r.get('probe-a')).toEqual({ code: 42, signal: null, stdout: '', stderr: '' })
    expect(r.get('probe-b')).toEqual({ code: null, signal: 'SIGSEGV', stdout: '', stderr: '' })
    expect(r.get('probe-c')).toEqual({ code: 1, signal: null, stdout: '', stderr: 'qemu: unhandled CPU exception' })
    expect((r.get('probe-d') as NodeJS.ErrnoException).code).toBe('ENOEXEC')
    expect((r.get('probe-e') as NodeJS.ErrnoException).code).toBe('EACCES')
    expect((r.get('probe-f') as NodeJS.ErrnoException).code).toBe('ENOENT')
    expect(r.has('probe-z')).toBe(false)
  })
})
