import { ActionError } from './errors'

export type HostArch = 'amd64' | 'arm64'

interface ElfInfo {
  bits: 32 | 64
  littleEndian: boolean
  /** e_type: 1 ET_REL, 2 ET_EXEC, 3 ET_DYN, 4 ET_CORE */
  type: number
  /** e_machine, e.g. 62 EM_X86_64, 183 EM_AARCH64 */
  machine: number
  /** PT_INTERP (the dynamic loader) if the file has one */
  interpreter?: string
}

export const ET_EXEC = 2
const ET_DYN = 3
export const EM_X86_64 = 62
export const EM_AARCH64 = 183
const PT_INTERP = 3

const HOST_MACHINE: Record<HostArch, number> = { amd64: EM_X86_64, arm64: EM_AARCH64 }

const MACHINE_NAMES: Record<number, string> = {
  2: 'sparc',
  3: 'i386',
  4: 'm68k',
  8: 'mips',
  15: 'hppa',
  18: 'sparc32plus',
  20: 'ppc',
  21: 'ppc64',
  22: 's390x',
  40: 'arm',
  42: 'sh4',
  43: 'sparc64',
  62: 'x86_64',
  92: 'or1k',
  94: 'xtensa',
  164: 'hexagon',
  183: 'aarch64',
  243: 'riscv',
  258: 'loongarch64',
  0x9026: 'alpha',
  0xbaab: 'microblaze',
}

const TYPE_NAMES: Record<number, string> = { 0: 'ELF file of no type', 1: 'ELF relocatable object', 4: 'ELF core dump' }

/** Human name of an ELF e_machine value, e.g. 183 -> "aarch64". */
function machineName(machine: number, bits?: 32 | 64): string {
  const name = MACHINE_NAMES[machine]
  if (!name) return `ELF machine ${machine}`
  if (machine === 243 && bits) return `riscv${bits}`
  if (machine === EM_X86_64 && bits === 32) return 'x32'
  return name
}

/**
 * Parses the ELF header and program headers. Returns undefined when `buf` is
 * not ELF, or is too short to hold the headers it declares (including the
 * PT_INTERP string).
 */
export function readElfInfo(buf: Buffer): ElfInfo | undefined {
  if (buf.length < 16 || buf[0] !== 0x7f || buf[1] !== 0x45 || buf[2] !== 0x4c || buf[3] !== 0x46) return undefined
  const cls = buf[4]
  const data = buf[5]
  if ((cls !== 1 && cls !== 2) || (data !== 1 && data !== 2)) return undefined
  const bits: 32 | 64 = cls === 1 ? 32 : 64
  const le = data === 1
  const headerSize = bits === 64 ? 64 : 52
  if (buf.length < headerSize) return undefined

  const u16 = (o: number): number => (le ? buf.readUInt16LE(o) : buf.readUInt16BE(o))
  const u32 = (o: number): number => (le ? buf.readUInt32LE(o) : buf.readUInt32BE(o))
  const addr = (o: number): number => {
    if (bits === 32) return u32(o)
    const v = le ? buf.readBigUInt64LE(o) : buf.readBigUInt64BE(o)
    return v > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(v)
  }

  const type = u16(16)
  const machine = u16(18)
  const phoff = addr(bits === 64 ? 32 : 28)
  const phentsize = u16(bits === 64 ? 54 : 42)
  const phnum = u16(bits === 64 ? 56 : 44)
  const info: ElfInfo = { bits, littleEndian: le, type, machine }
  if (phnum === 0) return info

  const minEntry = bits === 64 ? 56 : 32
  if (phentsize < minEntry) return undefined
  if (phoff + phnum * phentsize > buf.length) return undefined
  for (let i = 0; i < phnum; i++) {
    const ph = phoff + i * phentsize
    if (u32(ph) !== PT_INTERP) continue
    const offset = addr(bits === 64 ? ph + 8 : ph + 4)
    const size = addr(bits === 64 ? ph + 32 : ph + 16)
    if (offset + size > buf.length) return undefined
    const raw = buf.subarray(offset, offset + size)
    const nul = raw.indexOf(0)
    info.interpreter = (nul >= 0 ? raw.subarray(0, nul) : raw).toString('latin1')
    break
  }
  return info
}

/**
 * What a file's first bytes look like, for error messages: a kind (empty, text,
 * HTML, ELF for X, ...), never the bytes themselves (the file may be /etc/shadow).
 */
export function describeStart(buf: Buffer): string {
  if (buf.length === 0) return 'it is empty'
  const elf = readElfInfo(buf)
  if (elf) return `it is an ELF file for ${machineName(elf.machine, elf.bits)}`
  if (buf.subarray(0, 4).toString('latin1') === '\x7fELF') return 'it is a truncated ELF file'
  const head = buf.subarray(0, 512).toString('latin1').trimStart().toLowerCase()
  if (head.startsWith('<!doctype html') || head.startsWith('<html') || /<(head|body|title)[\s>]/.test(head)) return 'it is an HTML page'
  if (head.startsWith('<?xml') || head.startsWith('<error')) return 'it is an XML document'
  if (head.startsWith('{') || head.startsWith('[')) return 'it looks like JSON'
  const sample = buf.subarray(0, 4096)
  const printable = sample.filter(b => b === 9 || b === 10 || b === 13 || (b >= 0x20 && b < 0x7f)).length
  if (printable === sample.length) return 'it is text'
  if (printable / sample.length > 0.95 && !sample.includes(0)) return 'it is text'
  return 'it is binary data of no known kind'
}

/** How much of an emulator's start checkHostElf needs (ELF and program headers of any sane binary). */
export const ELF_HEAD_BYTES = 64 * 1024

/**
 * Throws ActionError naming `label` unless `info` (parsed from `head`, the
 * file's first bytes) is a static ELF executable for `host`.
 */
export function checkHostElf(info: ElfInfo | undefined, head: Buffer, host: HostArch, label: string, base = 'qemu-<target>'): asserts info is ElfInfo {
  if (!info) {
    if (head.subarray(0, 4).toString('latin1') === '\x7fELF') {
      throw new ActionError(`${label} is a truncated or malformed ELF file; the download may be incomplete; re-run or check qemu-url`)
    }
    throw new ActionError(`${label} is not an ELF executable (${describeStart(head)}); check qemu-url`)
  }
  if (info.type !== ET_EXEC && info.type !== ET_DYN) {
    const kind = TYPE_NAMES[info.type] ?? `ELF file of type ${info.type}`
    throw new ActionError(`${label} is an ${kind}, not an executable; check qemu-url`)
  }
  const wanted = HOST_MACHINE[host]
  if (info.machine !== wanted || info.bits !== 64 || !info.littleEndian) {
    const built = `${machineName(info.machine, info.bits)}${info.littleEndian ? '' : ' (big-endian)'}`
    throw new ActionError(`${label} is built for ${built}, not this ${host} runner; use an archive for linux-${host}`)
  }
  if (info.interpreter !== undefined) {
    const example = /^qemu-[A-Za-z0-9_]+$/.test(base) ? `${base}-static` : 'qemu-<target>-static'
    throw new ActionError(`${label} is dynamically linked (interpreter ${info.interpreter}); binfmt's F flag needs a static emulator such as ${example}`)
  }
}
