import * as fs from 'fs'
import * as os from 'os'
import * as path from 'path'
import { ProcessRunner, RunResult } from '../../../src/process'
import { NamespaceRunner, dockerSocket, enterArgs, findNamespace, mountRefused, rootlessDocker } from '../../../src/access/userns'

describe('dockerSocket', () => {
  test.each([
    [{ DOCKER_HOST: 'unix:///run/user/1000/docker.sock' }, '/run/user/1000/docker.sock'],
    [{ DOCKER_HOST: 'tcp://10.0.0.1:2375' }, undefined],
    [{ DOCKER_HOST: 'ssh://me@host' }, undefined],
    [{ XDG_RUNTIME_DIR: '/run/user/1000' }, '/run/user/1000/docker.sock'],
    [{}, undefined],
  ])('%j -> %s', (env, socket) => {
    expect(dockerSocket(env)).toBe(socket)
  })
})

describe('finding the namespace', () => {
  test('a DOCKER_HOST that is not a local socket is named in the reason', () => {
    expect(() => rootlessDocker({ DOCKER_HOST: 'tcp://10.0.0.1:2375' })).toThrow('DOCKER_HOST (tcp://10.0.0.1:2375) is not a local unix socket')
  })

  test('neither DOCKER_HOST nor XDG_RUNTIME_DIR', () => {
    expect(() => rootlessDocker({})).toThrow('no rootless Docker daemon: neither DOCKER_HOST nor XDG_RUNTIME_DIR is set')
  })

  test('a path that is no socket', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'userns-'))
    fs.writeFileSync(path.join(dir, 'docker.sock'), '')
    try {
      expect(() => rootlessDocker({ XDG_RUNTIME_DIR: dir })).toThrow(`no rootless Docker daemon: ${dir}/docker.sock is not a socket`)
    } finally {
      fs.rmSync(dir, { recursive: true })
    }
  })

  const nothingRuns: ProcessRunner = {
    run: () => {
      throw new Error('nothing may run')
    },
  }

  test.each(['0', '-1', '12abc', '1 2', '$(id)', '99999999999'])(
    '%j in SETUP_QEMU_BINFMT_USERNS_PID is refused before anything is read or run',
    async value => {
      await expect(findNamespace({ SETUP_QEMU_BINFMT_USERNS_PID: value }, nothingRuns)).rejects.toThrow(
        `SETUP_QEMU_BINFMT_USERNS_PID must be a process id, not '${value}'`,
      )
    },
  )

  test('this very process is in our own namespace, not one of its own', async () => {
    await expect(findNamespace({ SETUP_QEMU_BINFMT_USERNS_PID: String(process.pid) }, nothingRuns)).rejects.toThrow(/runs in this runner's own user namespace/)
  })

  test('no rootless Docker and no podman: both reasons in one line', async () => {
    const noPodman: ProcessRunner = { run: async () => Promise.reject(Object.assign(new Error('spawn podman ENOENT'), { code: 'ENOENT' })) }
    await expect(findNamespace({}, noPodman)).rejects.toThrow(
      'no rootless Docker daemon: neither DOCKER_HOST nor XDG_RUNTIME_DIR is set; no rootless Podman: no podman command on PATH',
    )
  })
})

test('enterArgs: nsenter into the user and mount namespaces of the pid, keeping our credentials, the command after --', () => {
  expect(enterArgs({ pid: 42, label: 'x' }, '/tmp/probe', ['a', '--b'])).toEqual([
    '--target',
    '42',
    '--user',
    '--mount',
    '--preserve-credentials',
    '--',
    '/tmp/probe',
    'a',
    '--b',
  ])
})

describe('NamespaceRunner', () => {
  const answering = (r: RunResult): ProcessRunner & { calls: string[][] } => {
    const calls: string[][] = []
    return { calls, run: async (command, args) => (calls.push([command, ...args]), r) }
  }

  test('runs through nsenter and returns what the program did', async () => {
    const inner = answering({ code: 3, signal: null, stdout: 'out', stderr: '' })
    const r = await new NamespaceRunner({ pid: 7, label: 'x' }, inner).run('/p', ['1'])
    expect(r.code).toBe(3)
    expect(inner.calls[0].slice(0, 3)).toEqual(['nsenter', '--target', '7'])
  })

  test.each([
    ['Exec format error', 'ENOEXEC'],
    ['No such file or directory', 'ENOENT'],
    ['Permission denied', 'EACCES'],
  ])("nsenter's own 'failed to execute' (%s) is thrown as running the file directly would (%s)", async (text, code) => {
    const inner = answering({ code: 126, signal: null, stdout: '', stderr: `nsenter: failed to execute /tmp/probe: ${text}\n` })
    await expect(new NamespaceRunner({ pid: 7, label: 'x' }, inner).run('/tmp/probe', [])).rejects.toMatchObject({ code })
  })

  test("a program's own exit 126 with other output is its result", async () => {
    const inner = answering({ code: 126, signal: null, stdout: '', stderr: 'something else\n' })
    await expect(new NamespaceRunner({ pid: 7, label: 'x' }, inner).run('/tmp/probe', [])).resolves.toMatchObject({ code: 126 })
  })
})

describe('mountRefused', () => {
  test('an old kernel: names its version and the one needed, and what works instead', () => {
    expect(mountRefused('the user namespace of process 9', 'mount: permission denied', '6.1.0-13-amd64').message).toBe(
      'cannot give the user namespace of process 9 a binfmt_misc of its own (mount: permission denied); this kernel is 6.1.0-13-amd64, ' +
        'and user namespaces can mount binfmt_misc only since Linux 6.7: use install-mode: direct (root or passwordless sudo) or a rootful Docker daemon (install-mode: docker) instead',
    )
  })

  test.each(['6.7.0', '6.18.44-fc', '7.0.1'])('a new kernel (%s) that refused it: says so', release => {
    expect(mountRefused('x', 'why', release).message).toMatch(
      new RegExp(`\\(why\\); kernel ${release.replace(/\./g, '\\.')} refused it in this namespace: use install-mode: direct`),
    )
  })
})
