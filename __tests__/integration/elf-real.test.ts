import { execFileSync } from 'child_process'
import * as fs from 'fs'
import * as os from 'os'
import * as path from 'path'
import { ActionError } from '../../src/errors'
import { EM_AARCH64, EM_X86_64, HostArch, checkHostElf, readElfInfo } from '../../src/elf'
import { passFile } from '../../src/fetch/emulator-file'
import { DEFAULT_LIMITS } from '../../src/fetch/limits'
import { makeElf } from '../support/fake-elf'

// The ELF checks against real binaries: Debian's qemu-user-static, busybox-static:arm64, /bin/ls.

const HOST: HostArch = process.arch === 'arm64' ? 'arm64' : 'amd64'
const OTHER: HostArch = HOST === 'amd64' ? 'arm64' : 'amd64'
const HOST_MACHINE = HOST === 'amd64' ? EM_X86_64 : EM_AARCH64
const STATIC_EMULATOR = '/usr/bin/qemu-aarch64-static' // Debian's qemu-user-static, built for this host
const DEB_CACHE = '/tmp/setup-qemu-binfmt-test-debs'

async function expectActionError(p: Promise<unknown>, pattern: RegExp): Promise<string> {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  )
  expect(e).toBeInstanceOf(ActionError)
  const message = (e as Error).message
  expect(message).toMatch(pattern)
  expect(message).not.toContain('\n')
  return message
}

/** busybox-static for arm64: a real, static aarch64 executable (needs `dpkg --add-architecture arm64`). */
function arm64Busybox(work: string): string {
  fs.mkdirSync(DEB_CACHE, { recursive: true })
  const find = (): string | undefined => fs.readdirSync(DEB_CACHE).find(f => f.startsWith('busybox-static_') && f.endsWith('_arm64.deb'))
  if (!find()) execFileSync('apt-get', ['download', 'busybox-static:arm64'], { cwd: DEB_CACHE, stdio: 'ignore' })
  const deb = path.join(DEB_CACHE, find() as string)
  const out = path.join(work, 'busybox-arm64')
  execFileSync('dpkg-deb', ['-x', deb, out])
  return path.join(out, 'bin', 'busybox')
}

describe('readElfInfo', () => {
  it('reads real binaries', () => {
    const emu = readElfInfo(fs.readFileSync(STATIC_EMULATOR))
    expect(emu).toMatchObject({ bits: 64, littleEndian: true, machine: HOST_MACHINE })
    expect([2, 3]).toContain(emu?.type)
    expect(emu?.interpreter).toBeUndefined()
    expect(readElfInfo(fs.readFileSync('/bin/ls'))?.interpreter).toMatch(/^\/lib.*ld-linux/)
  })
})

/** Reads `file` as the fetch reads a local emulator: through EmulatorSink's ELF check, copying nothing. */
async function checkFile(file: string, target: string, host: HostArch, label: string): Promise<void> {
  await passFile(file, target, undefined, host, label, DEFAULT_LIMITS.emulator)
}

describe('the ELF check on real files', () => {
  let work: string
  beforeAll(() => {
    work = fs.mkdtempSync(path.join(os.tmpdir(), 'elf-test-'))
  })
  afterAll(() => {
    fs.rmSync(work, { recursive: true, force: true })
  })
  const write = (name: string, data: Buffer | string): string => {
    const file = path.join(work, name)
    fs.writeFileSync(file, data)
    return file
  }

  it('accepts a real static emulator built for this host', async () => {
    await expect(checkFile(STATIC_EMULATOR, 'aarch64', HOST, 'qemu-aarch64 from test')).resolves.toBeUndefined()
  })

  it('rejects an emulator built for another machine', async () => {
    await expectActionError(
      checkFile(STATIC_EMULATOR, 'aarch64', OTHER, 'qemu-aarch64 from https://x/y.tar.gz'),
      new RegExp(
        `^qemu-aarch64 from https://x/y\\.tar\\.gz is built for ${HOST === 'amd64' ? 'x86_64' : 'aarch64'}, not this ${OTHER} runner; use an archive for linux-${OTHER}$`,
      ),
    )
    const fake = write('qemu-arm', makeElf({ bits: 64, machine: EM_AARCH64 }))
    if (HOST === 'amd64') {
      await expectActionError(
        checkFile(fake, 'arm', 'amd64', 'qemu-arm from https://x/y.tar.gz'),
        /^qemu-arm from https:\/\/x\/y\.tar\.gz is built for aarch64, not this amd64 runner; use an archive for linux-amd64$/,
      )
    }
    const ppc = write('qemu-ppc', makeElf({ bits: 64, le: false, machine: 21 }))
    await expectActionError(checkFile(ppc, 'ppc', HOST, 'qemu-ppc'), /is built for ppc64 \(big-endian\), not this/)
  })

  it('rejects a real static aarch64 binary on amd64', async () => {
    if (HOST !== 'amd64') return
    const busybox = arm64Busybox(work)
    expect(readElfInfo(fs.readFileSync(busybox))).toMatchObject({ machine: EM_AARCH64, bits: 64 })
    await expectActionError(
      checkFile(busybox, 'aarch64', 'amd64', 'qemu-aarch64 from busybox'),
      /^qemu-aarch64 from busybox is built for aarch64, not this amd64 runner; use an archive for linux-amd64$/,
    )
    await expect(checkFile(busybox, 'aarch64', 'arm64', 'busybox')).resolves.toBeUndefined()
  })

  it('rejects a dynamically linked binary and names the static build', async () => {
    const ls = path.join(work, 'qemu-riscv64')
    fs.copyFileSync('/bin/ls', ls)
    await expectActionError(
      checkFile(ls, 'riscv64', HOST, 'qemu-riscv64 from https://x/y.tar.gz'),
      /^qemu-riscv64 from https:\/\/x\/y\.tar\.gz is dynamically linked \(interpreter \/lib.*ld-linux.*\); binfmt's F flag needs a static emulator such as qemu-riscv64-static$/,
    )
    // Without a qemu-<target> name to go by, the advice names the pattern.
    const lsHead = fs.readFileSync('/bin/ls')
    expect(() => checkHostElf(readElfInfo(lsHead), lsHead, HOST, '/bin/ls')).toThrow(/such as qemu-<target>-static$/)
  })
})
