import * as fs from 'fs'
import { load } from 'js-yaml'
import * as path from 'path'
import { readInputs, DEFAULT_QEMU_URL, DEFAULT_QEMU_VERSION } from '../../src/inputs'
import { parsePlatforms } from '../../src/platform'
import { parseChecksums } from '../../src/fetch/checksum'
import { ActionError } from '../../src/errors'

const names = (v: string): string[] => {
  const s = parsePlatforms(v)
  return s.kind === 'all' ? ['all'] : s.targets.map(t => t.name)
}

describe('platforms input', () => {
  test.each([
    ['linux/arm64', ['aarch64']],
    ['arm64', ['aarch64']],
    ['AARCH64', ['aarch64']],
    ['linux/arm/v7,linux/arm/v6', ['arm']],
    ['linux/amd64/v2 386', ['x86_64', 'i386']],
    ['linux/ppc64le\nlinux/s390x\n  linux/riscv64', ['ppc64le', 's390x', 'riscv64']],
    ['linux/mips64le, linux/mips64, linux/loong64', ['mips64el', 'mips64', 'loongarch64']],
    ['sparc64 m68k hppa or1k i486', ['sparc64', 'm68k', 'hppa', 'or1k', 'i486']],
    ['arm64, linux/arm64 ,aarch64', ['aarch64']],
  ])('%j -> %j', (input, expected) => {
    expect(names(input)).toEqual(expected)
  })

  test('all, also mixed with others and in any case', () => {
    expect(names('all')).toEqual(['all'])
    expect(names('ALL')).toEqual(['all'])
    expect(names('arm64,all')).toEqual(['all'])
    expect(names('')).toEqual(['all'])
  })

  test.each(['linux/arm64/v7', 'windows/amd64', 'foo', 'linux/', 'linux/arm/v7/x'])('rejects %j with one line naming the input', bad => {
    expect(() => parsePlatforms(bad)).toThrow(ActionError)
    let msg = ''
    try {
      parsePlatforms(`arm64,${bad}`)
    } catch (e) {
      msg = (e as Error).message
    }
    expect(msg).toMatch(/^platforms: unknown platform '/)
    expect(msg).toContain(`'${bad}'`)
    expect(msg).toContain('linux/arm64')
    expect(msg).not.toContain('\n')
  })
})

describe('readInputs', () => {
  const reader = (values: Record<string, string>) => (name: string) => values[name] ?? ''

  test('defaults', () => {
    const i = readInputs(reader({}))
    expect(i.platforms).toEqual({ kind: 'all' })
    expect(i.qemuVersion).toBe(DEFAULT_QEMU_VERSION)
    expect(i.qemuUrl).toBe(DEFAULT_QEMU_URL)
    expect(i.cache).toBe(true)
    expect(i.reset).toBe(false)
    expect(i.preserveArgv0).toBe(true)
    expect(i.credential).toBe(true)
    expect(i.installMode).toBe('auto')
    expect(i.uninstall).toBe(false)
    expect(i.lockTimeoutMs).toBe(300_000)
  })

  test.each([
    ['cache', 'yes', /^cache: 'yes' is not a boolean; use true or false$/],
    ['reset', '1', /^reset: '1' is not a boolean/],
    ['install-mode', 'kernel', /^install-mode: 'kernel' is not one of auto, direct, docker, userns$/],
    ['qemu-version', '1.0; rm -rf /', /^qemu-version: '1.0; rm -rf \/' is not a version/],
    ['lock-timeout', '2m', /^lock-timeout: '2m' is not a whole number of seconds/],
    ['uninstall', 'yes', /^uninstall: 'yes' is not a boolean/],
    ['qemu-sha256', 'abc  file', /^qemu-sha256: line 1 \('abc {2}file'\) is not '<sha256> {2}<file name>'/],
  ])('bad %s=%j fails clearly', (name, value, message) => {
    expect(() => readInputs(reader({ [name]: value }))).toThrow(message)
  })

  // A runner passes action.yml's defaults as INPUT_* values: they must mean what an empty input means.
  test('action.yml defaults and readInputs defaults agree, input by input', () => {
    const yml = load(fs.readFileSync(path.join(__dirname, '..', '..', 'action.yml'), 'utf8')) as { inputs: Record<string, { default?: string }> }
    const defaults = Object.fromEntries(Object.entries(yml.inputs).map(([k, v]) => [k, String(v.default ?? '')]))
    const { builder: fromYml, ...restYml } = readInputs(reader(defaults))
    const { builder: fromEmpty, ...restEmpty } = readInputs(reader({}))
    expect(restYml).toEqual(restEmpty)
    // The builder name is generated afresh each time.
    expect({ ...fromYml, name: '' }).toEqual({ ...fromEmpty, name: '' })
    // And every input readInputs asks for is declared in action.yml.
    const asked = new Set<string>()
    readInputs(name => (asked.add(name), ''))
    expect([...asked].filter(n => !(n in yml.inputs))).toEqual([])
  })

  test('endpoint: a Docker context or host for docker-container, a buildkitd address (required) for driver remote', () => {
    const b = (values: Record<string, string>) => readInputs(reader(values)).builder
    expect(b({}).endpoint).toBe('')
    expect(b({ endpoint: ' my-context ' }).endpoint).toBe('my-context')
    expect(b({ endpoint: 'unix:///var/run/docker.sock' }).endpoint).toBe('unix:///var/run/docker.sock')
    expect(b({ endpoint: 'ssh://ci@10.0.0.9' }).endpoint).toBe('ssh://ci@10.0.0.9')
    expect(b({ driver: 'remote', endpoint: 'tcp://127.0.0.1:1234' })).toMatchObject({ driver: 'remote', endpoint: 'tcp://127.0.0.1:1234' })
    expect(b({ driver: 'remote', endpoint: 'unix:///run/buildkit/buildkitd.sock' }).endpoint).toBe('unix:///run/buildkit/buildkitd.sock')
  })

  test.each([
    [
      { driver: 'remote' },
      'endpoint: driver remote needs the address of its buildkitd; set endpoint to the address of a running buildkitd such as tcp://127.0.0.1:1234 or unix:///run/buildkit/buildkitd.sock',
    ],
    [
      { driver: 'remote', endpoint: 'ssh://h' },
      "endpoint: 'ssh://h' is not an address the remote driver dials; give the address of a running buildkitd such as tcp://127.0.0.1:1234 or unix:///run/buildkit/buildkitd.sock",
    ],
    [{ driver: 'remote', endpoint: 'my-context' }, /^endpoint: 'my-context' is not an address the remote driver dials; /],
    [{ endpoint: '--help' }, /^endpoint: '--help' is neither a Docker context name nor an address; give a context from docker context ls, /],
    [{ endpoint: 'two words' }, /^endpoint: 'two words' is neither a Docker context name nor an address; /],
    [{ endpoint: 'tcp://' }, /^endpoint: 'tcp:\/\/' is neither/],
  ])('endpoint %j fails with one line naming the input', (values, message) => {
    let thrown: unknown
    try {
      readInputs(reader(values))
    } catch (e) {
      thrown = e
    }
    expect(thrown).toBeInstanceOf(ActionError)
    expect((thrown as Error).message).toMatch(message)
    expect((thrown as Error).message).not.toContain('\n')
  })

  test('booleans accept any case', () => {
    expect(readInputs(reader({ reset: 'TRUE', cache: 'False' }))).toMatchObject({ reset: true, cache: false })
  })
})

describe('qemu-sha256', () => {
  test('sha256sum format, binary marker, comments', () => {
    const a = 'a'.repeat(64)
    const b = 'B'.repeat(64)
    const list = parseChecksums(`# pinned\n${a}  qemu_v10.2.3_linux-amd64.tar.gz\n\n${b} *qemu-aarch64\n`)
    expect([...list]).toEqual([
      ['qemu_v10.2.3_linux-amd64.tar.gz', a],
      ['qemu-aarch64', 'b'.repeat(64)],
    ])
  })
})
