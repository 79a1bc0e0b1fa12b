import { parseArgs } from '../../src/cli/args'
import { progressBar } from '../../src/cli/output'
import { progressLine } from '../../src/log'

describe('setup-qemu-binfmt command line', () => {
  test('install is the default; flags become the action inputs, repeatable ones joined by lines', () => {
    const a = 'a'.repeat(64)
    const b = 'b'.repeat(64)
    expect(
      parseArgs([
        '--platforms',
        'linux/arm64',
        '--qemu-sha256',
        `${a}  x.tar.gz`,
        `--qemu-sha256=${b}  y`,
        '--no-credential',
        '--reset',
        '--driver-opt',
        'k=v',
        '--json',
      ]),
    ).toEqual({
      command: 'install',
      inputs: { platforms: 'linux/arm64', 'qemu-sha256': `${a}  x.tar.gz\n${b}  y`, credential: 'false', reset: 'true', 'driver-opts': 'k=v' },
      positional: [],
      json: true,
      quiet: false,
      verbose: false,
      userns: false,
    })
  })

  test('subcommands and their positional arguments', () => {
    expect(parseArgs(['uninstall', 'aarch64', 'riscv64'])).toMatchObject({ command: 'uninstall', positional: ['aarch64', 'riscv64'] })
    expect(parseArgs(['status', '--json'])).toMatchObject({ command: 'status', json: true })
    expect(parseArgs(['verify', '--help'])).toBe('help')
    expect(parseArgs(['--version'])).toBe('version')
    // -- ends the options: uninstall's targets may follow it; a bare -- drops nothing.
    expect(parseArgs(['uninstall', '--', 'aarch64'])).toMatchObject({ command: 'uninstall', positional: ['aarch64'] })
    expect(parseArgs(['install', '--platforms', 'linux/arm64', '--'])).toMatchObject({ command: 'install', positional: [] })
  })

  test.each([
    [['--frobnicate'], /^unknown option --frobnicate; see --help$/],
    [['status', '--platforms', 'arm64'], /^unknown option --platforms for status/],
    [['reinstall'], /^unknown command 'reinstall'/],
    [['--platforms'], /^--platforms needs a value/],
    [['--reset=yes'], /^--reset takes no value/],
    [['--platforms', 'linux/foo'], /^--platforms: unknown platform 'linux\/foo'/],
    [['--install-mode', 'kernel'], /^--install-mode: 'kernel' is not one of auto, direct, docker, userns$/],
    [['install', 'extra'], /^unexpected argument 'extra'/],
    // Options after -- used to be dropped: this installed aarch64 only and exited 0.
    [['--platforms', 'linux/arm64', '--', '--reset', '--platforms', 'all'], /^unexpected argument '--reset' after --: install takes none/],
    [['install', '--', 'x'], /^unexpected argument 'x' after --: install takes none/],
    [['status', '--', '--json'], /^unexpected argument '--json' after --: status takes none/],
    [['verify', '--', 'aarch64'], /^unexpected argument 'aarch64' after --: verify takes none/],
  ])('%j is a usage error: %s', (argv, message) => {
    expect(() => parseArgs(argv)).toThrow(message)
  })
})

describe('download progress on a terminal', () => {
  test("a download's progress is a bar on a terminal and a plain line elsewhere, saying the same", () => {
    const MB = 1048576
    const half = { shown: 'https://example.com/x/qemu_v10.2.3_linux-amd64.tar.gz', bytes: 44 * MB, declared: 88 * MB }
    expect(progressBar(half, 10)).toBe('qemu_v10.2.3_linux-amd64.tar.gz [#####-----] 50% 44.0/88.0 MB')
    expect(progressLine(half)).toBe('Downloading https://example.com/x/qemu_v10.2.3_linux-amd64.tar.gz: 44.0 of 88.0 MB')
    const unsized = { shown: 'https://example.com/qemu-aarch64', bytes: 3.5 * MB, declared: NaN }
    expect(progressBar(unsized)).toBe('qemu-aarch64 3.5 MB')
    expect(progressLine(unsized)).toBe('Downloading https://example.com/qemu-aarch64: 3.5 of ? MB')
    expect(progressBar({ shown: 'http://h/a.tar.gz', bytes: MB, declared: 4 * MB }, 4)).toBe('a.tar.gz [#---] 25% 1.0/4.0 MB')
  })
})

describe('run', () => {
  test('the install flags before --, the command after it (options in it stay its own), install-mode userns', () => {
    const parsed = parseArgs(['run', '--platforms', 'linux/arm64', '--', 'chroot', '/r', '/bin/sh', '--help'])
    expect(parsed).toMatchObject({
      command: 'run',
      positional: ['chroot', '/r', '/bin/sh', '--help'],
      inputs: { platforms: 'linux/arm64', 'install-mode': 'userns' },
    })
  })

  test.each([
    [['run', '--json', '--', 'true'], /--json does not go with run/],
    [['run', '--buildx', 'true', '--', 'true'], /--buildx does not go with run/],
    [['run', '--'], /run needs a command after --/],
  ])('%j is a usage error', (argv, message) => {
    expect(() => parseArgs(argv)).toThrow(message)
  })
})

test('--userns goes with status, verify and uninstall only', () => {
  expect(parseArgs(['status', '--userns'])).toMatchObject({ command: 'status', userns: true })
  expect(parseArgs(['uninstall', '--userns', 'arm'])).toMatchObject({ command: 'uninstall', userns: true, positional: ['arm'] })
  expect(() => parseArgs(['install', '--userns'])).toThrow('unknown option --userns; see --help')
})
