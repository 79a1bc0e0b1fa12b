import { ActionError } from '../../src/errors'
import { EM_AARCH64, EM_X86_64, HostArch, checkHostElf, readElfInfo } from '../../src/elf'
import { makeElf } from '../support/fake-elf'

// ELF files built here; real binaries (Debian's emulators, busybox, /bin/ls) are in
// __tests__/integration/elf-real.test.ts.

const HOST: HostArch = process.arch === 'arm64' ? 'arm64' : 'amd64'
const HOST_MACHINE = HOST === 'amd64' ? EM_X86_64 : EM_AARCH64

function expectActionError(f: () => void, pattern: RegExp): string {
  let e: unknown
  try {
    f()
  } catch (err) {
    e = err
  }
  expect(e).toBeInstanceOf(ActionError)
  const message = (e as Error).message
  expect(message).toMatch(pattern)
  expect(message).not.toContain('\n')
  return message
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
})

describe('checkHostElf', () => {
  const check = (data: Buffer | string, label: string): void => {
    const head = Buffer.from(data)
    checkHostElf(readElfInfo(head), head, HOST, label)
  }

  it('rejects HTML, empty, truncated and relocatable files', () => {
    expectActionError(
      () => check('<html><head><title>404 Not Found</title></head></html>', 'qemu-aarch64 from https://x/y.tar.gz'),
      /^qemu-aarch64 from https:\/\/x\/y\.tar\.gz is not an ELF executable \(it is an HTML page\); check qemu-url$/,
    )
    // What the file is, never what it says (it could be /etc/shadow).
    expectActionError(() => check('root:$y$j9T$hash:20228:0:99999:7:::\n', 's'), /^s is not an ELF executable \(it is text\); check qemu-url$/)
    expectActionError(() => check('', 'e'), /^e is not an ELF executable \(it is empty\)/)
    const half = makeElf({ bits: 64, machine: HOST_MACHINE }).subarray(0, 30)
    expectActionError(() => check(half, 'h'), /^h is a truncated or malformed ELF file; the download may be incomplete/)
    expectActionError(() => check(makeElf({ bits: 64, machine: HOST_MACHINE, type: 1 }), 'r'), /^r is an ELF relocatable object, not an executable/)
  })
})
