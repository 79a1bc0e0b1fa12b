import { execFileSync } from 'child_process'
import * as fs from 'fs'
import * as os from 'os'
import * as path from 'path'
import { ActionError } from '../../src/errors'
import { EM_AARCH64, EM_X86_64, HostArch, checkHostExecutable, readElfInfo } from '../../src/elf'

const HOST: HostArch = process.arch === 'arm64' ? 'arm64' : 'amd64'
const OTHER: HostArch = HOST === 'amd64' ? 'arm64' : 'amd64'
const HOST_MACHINE = HOST === 'amd64' ? EM_X86_64 : EM_AARCH64
const STATIC_EMULATOR = '/usr/bin/qemu-aarch64-static' // Debian's qemu-user-static, built for this host
const DEB_CACHE = '/tmp/setup-qemu-binfmt-test-debs'

interface FakeElf {
  bits: 32 | 64
  le?: boolean
  type?: number
  machine: number
  interp?: string
}

/** A minimal ELF: header, a PT_LOAD, optionally a PT_INTERP and its string. */
function makeElf({ bits, le = true, type = 2, machine, interp }: FakeElf): Buffer {
  const ehsize = bits === 64 ? 64 : 52
  const phentsize = bits === 64 ? 56 : 32
  const phnum = interp ? 2 : 1
  const interpAt = ehsize + phnum * phentsize
  const interpBytes = interp ? Buffer.from(interp + '\0', 'latin1') : Buffer.alloc(0)
  const buf = Buffer.alloc(interpAt + interpBytes.length + 64)
  const u16 = (o: number, v: number): number => (le ? buf.writeUInt16LE(v, o) : buf.writeUInt16BE(v, o))
  const u32 = (o: number, v: number): number => (le ? buf.writeUInt32LE(v, o) : buf.writeUInt32BE(v, o))
  const addr = (o: number, v: number): number =>
    bits === 64 ? (le ? buf.writeBigUInt64LE(BigInt(v), o) : buf.writeBigUInt64BE(BigInt(v), o)) : u32(o, v)
  buf.write('\x7fELF', 0, 'latin1')
  buf[4] = bits === 64 ? 2 : 1
  buf[5] = le ? 1 : 2
  buf[6] = 1
  u16(16, type)
  u16(18, machine)
  u32(20, 1)
  addr(bits === 64 ? 32 : 28, ehsize) // e_phoff
  u16(bits === 64 ? 52 : 40, ehsize)
  u16(bits === 64 ? 54 : 42, phentsize)
  u16(bits === 64 ? 56 : 44, phnum)
  // PT_LOAD
  u32(ehsize, 1)
  if (interp) {
    const ph = ehsize + phentsize
    u32(ph, 3)
    addr(bits === 64 ? ph + 8 : ph + 4, interpAt) // p_offset
    addr(bits === 64 ? ph + 32 : ph + 16, interpBytes.length) // p_filesz
    interpBytes.copy(buf, interpAt)
  }
  return buf
}

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
  const find = (): string | undefined =>
    fs.readdirSync(DEB_CACHE).find(f => f.startsWith('busybox-static_') && f.endsWith('_arm64.deb'))
  if (!find()) execFileSync('apt-get', ['download', 'busybox-static:arm64'], { cwd: DEB_CACHE, stdio: 'ignore' })
  const deb = path.join(DEB_CACHE, find() as string)
  const out = path.join(work, 'busybox-arm64')
  execFileSync('dpkg-deb', ['-x', deb, out])
  return path.join(out, 'bin', 'busybox')
}

describe('readElfInfo', () => {
  it('reads a static little-endian 64-bit header', () => {
    expect(readElfInfo(makeElf({ bits: 64, machine: EM_AARCH64, type: 2 }))).toEqual({
      bits: 64,
      littleEndian: true,
      type: 2,
      machine: EM_AARCH64,
    })
  })

  it('reads PT_INTERP from big-endian 32-bit and little-endian 64-bit files', () => {
    expect(readElfInfo(makeElf({ bits: 32, le: false, machine: 8, type: 3, interp: '/lib/ld.so.1' }))).toEqual({
      bits: 32,
      littleEndian: false,
      type: 3,
      machine: 8,
      interpreter: '/lib/ld.so.1',
    })
    const info = readElfInfo(makeElf({ bits: 64, machine: EM_X86_64, interp: '/lib64/ld-linux-x86-64.so.2' }))
    expect(info?.interpreter).toBe('/lib64/ld-linux-x86-64.so.2')
  })

  it('returns undefined for non-ELF data and truncated headers', () => {
    expect(readElfInfo(Buffer.from('<html><body>Not Found</body></html>'))).toBeUndefined()
    expect(readElfInfo(Buffer.alloc(0))).toBeUndefined()
    const elf = makeElf({ bits: 64, machine: EM_AARCH64, interp: '/lib/ld-linux-aarch64.so.1' })
    expect(readElfInfo(elf.subarray(0, 40))).toBeUndefined() // inside the ELF header
    expect(readElfInfo(elf.subarray(0, 100))).toBeUndefined() // inside the program headers
    expect(readElfInfo(elf.subarray(0, 64 + 2 * 56 + 5))).toBeUndefined() // inside the interpreter string
    const badClass = Buffer.from(elf)
    badClass[4] = 7
    expect(readElfInfo(badClass)).toBeUndefined()
  })

  it('reads real binaries', () => {
    const emu = readElfInfo(fs.readFileSync(STATIC_EMULATOR))
    expect(emu).toMatchObject({ bits: 64, littleEndian: true, machine: HOST_MACHINE })
    expect([2, 3]).toContain(emu?.type)
    expect(emu?.interpreter).toBeUndefined()
    expect(readElfInfo(fs.readFileSync('/bin/ls'))?.interpreter).toMatch(/^\/lib.*ld-linux/)
  })
})

describe('checkHostExecutable', () => {
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
    await expect(checkHostExecutable(STATIC_EMULATOR, HOST, 'qemu-aarch64 from test')).resolves.toBeUndefined()
  })

  it('rejects an emulator built for another machine', async () => {
    await expectActionError(
      checkHostExecutable(STATIC_EMULATOR, OTHER, 'qemu-aarch64 from https://x/y.tar.gz'),
      new RegExp(
        `^qemu-aarch64 from https://x/y\\.tar\\.gz is built for ${HOST === 'amd64' ? 'x86_64' : 'aarch64'}, not this ${OTHER} runner; use an archive for linux-${OTHER}$`,
      ),
    )
    const fake = write('qemu-arm', makeElf({ bits: 64, machine: EM_AARCH64 }))
    if (HOST === 'amd64') {
      await expectActionError(
        checkHostExecutable(fake, 'amd64', 'qemu-arm from https://x/y.tar.gz'),
        /^qemu-arm from https:\/\/x\/y\.tar\.gz is built for aarch64, not this amd64 runner; use an archive for linux-amd64$/,
      )
    }
    const ppc = write('qemu-ppc', makeElf({ bits: 64, le: false, machine: 21 }))
    await expectActionError(checkHostExecutable(ppc, HOST, 'qemu-ppc'), /is built for ppc64 \(big-endian\), not this/)
  })

  it('rejects a real static aarch64 binary on amd64', async () => {
    if (HOST !== 'amd64') return
    const busybox = arm64Busybox(work)
    expect(readElfInfo(fs.readFileSync(busybox))).toMatchObject({ machine: EM_AARCH64, bits: 64 })
    await expectActionError(
      checkHostExecutable(busybox, 'amd64', 'qemu-aarch64 from busybox'),
      /^qemu-aarch64 from busybox is built for aarch64, not this amd64 runner; use an archive for linux-amd64$/,
    )
    await expect(checkHostExecutable(busybox, 'arm64', 'busybox')).resolves.toBeUndefined()
  })

  it('rejects a dynamically linked binary and names the static build', async () => {
    const ls = path.join(work, 'qemu-riscv64')
    fs.copyFileSync('/bin/ls', ls)
    await expectActionError(
      checkHostExecutable(ls, HOST, 'qemu-riscv64 from https://x/y.tar.gz'),
      /^qemu-riscv64 from https:\/\/x\/y\.tar\.gz is dynamically linked \(interpreter \/lib.*ld-linux.*\); binfmt's F flag needs a static emulator such as qemu-riscv64-static$/,
    )
    await expectActionError(checkHostExecutable('/bin/ls', HOST, '/bin/ls'), /such as qemu-<target>-static$/)
  })

  it('rejects HTML, empty, truncated, relocatable and missing files', async () => {
    const html = write('page', '<html><head><title>404 Not Found</title></head></html>')
    await expectActionError(
      checkHostExecutable(html, HOST, 'qemu-aarch64 from https://x/y.tar.gz'),
      /^qemu-aarch64 from https:\/\/x\/y\.tar\.gz is not an ELF executable \(it is an HTML page\); check qemu-url$/,
    )
    // What the file is, never what it says (it could be /etc/shadow).
    const shadow = write('shadow', 'root:$y$j9T$hash:20228:0:99999:7:::\n')
    await expectActionError(checkHostExecutable(shadow, HOST, 's'), /^s is not an ELF executable \(it is text\); check qemu-url$/)
    await expectActionError(checkHostExecutable(write('empty', ''), HOST, 'e'), /^e is not an ELF executable \(it is empty\)/)
    const half = write('half', makeElf({ bits: 64, machine: HOST_MACHINE }).subarray(0, 30))
    await expectActionError(checkHostExecutable(half, HOST, 'h'), /^h is a truncated or malformed ELF file; the download may be incomplete/)
    const rel = write('rel.o', makeElf({ bits: 64, machine: HOST_MACHINE, type: 1 }))
    await expectActionError(checkHostExecutable(rel, HOST, 'r'), /^r is an ELF relocatable object, not an executable/)
    await expectActionError(checkHostExecutable(path.join(work, 'nope'), HOST, 'n'), /^n cannot be read \(.*ENOENT/)
  })
})
