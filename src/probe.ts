// A probe is a tiny static ELF executable per QEMU target that only calls
// exit(PROBE_EXIT_STATUS). Running it through binfmt_misc proves the emulator
// for that target is registered and works. The ELF header is generated from
// the target's binfmt magic (class, byte order, e_machine), so the file is
// matched by exactly the entry it is meant to test.

import { Target, hexToBytes } from './targets'

export const PROBE_EXIT_STATUS = 42

/** Load address: page-aligned for every target and above mmap_min_addr (64 KiB). */
const LOAD_ADDR = 0x400000
const ET_EXEC = 2
const PT_LOAD = 1
const PF_X = 1
const PF_R = 4

interface ProbeCode {
  readonly flags: number
  /** Machine code, already in the target's instruction byte order. */
  readonly code: readonly number[]
}

// Code is listed as instruction words; le32/be32/le16/be16 serialise them.
const le32 = (...w: number[]): number[] => w.flatMap(x => [x & 0xff, (x >>> 8) & 0xff, (x >>> 16) & 0xff, x >>> 24])
const be32 = (...w: number[]): number[] => w.flatMap(x => [x >>> 24, (x >>> 16) & 0xff, (x >>> 8) & 0xff, x & 0xff])
const le16 = (...w: number[]): number[] => w.flatMap(x => [x & 0xff, x >>> 8])
const be16 = (...w: number[]): number[] => w.flatMap(x => [x >>> 8, x & 0xff])

// i386/i486: mov $42,%ebx; mov $1 (exit),%eax; int $0x80
const I386 = [0xbb, 0x2a, 0, 0, 0, 0xb8, 0x01, 0, 0, 0, 0xcd, 0x80]
// mov x0,#42; mov x8,#93 (exit); svc #0 -- A64 instructions are always little-endian.
const AARCH64 = le32(0xd2800540, 0xd2800ba8, 0xd4000001)
// mov r0,#42; mov r7,#1 (exit); svc #0
const ARM = [0xe3a0002a, 0xe3a07001, 0xef000000]
// li a0,42; li v0,NR; syscall -- NR is exit for the ABI: o32 4001, n64 5058, n32 6058.
const mips = (nr: number): number[] => [0x2404002a, 0x24020000 | nr, 0x0000000c]
// li r3,42; li r0,1 (exit); sc
const PPC = [0x3860002a, 0x38000001, 0x44000002]
// mov 42,%o0; mov 1 (exit),%g1; ta <trap>: 0x10 for 32-bit Linux, 0x6d for 64-bit.
const sparc = (trap: number): number[] => be32(0x9010202a, 0x82102001, 0x91d02000 | trap)
// sh: mov #42,r4; mov #1 (exit),r3; trapa #0x11
const SH4 = [0xe42a, 0xe301, 0xc311]
// microblaze: addik r5,r0,42; addik r12,r0,1 (exit); brki r14,8
const MICROBLAZE = [0x30a0002a, 0x31800001, 0xb9cc0008]
// xtensa: movi a6,42; movi a2,118 (exit); syscall. Big-endian cores store the
// nibble fields of each 24-bit instruction in mirrored order.
const XTENSA_LE = [0x62, 0xa0, 0x2a, 0x22, 0xa0, 0x76, 0x00, 0x50, 0x00]
const XTENSA_BE = [0x26, 0x0a, 0x2a, 0x22, 0x0a, 0x76, 0x00, 0x05, 0x00]

const PROBES: Readonly<Record<string, ProbeCode>> = {
  // mov $42,%edi; mov $60 (exit),%eax; syscall
  x86_64: { flags: 0, code: [0xbf, 0x2a, 0, 0, 0, 0xb8, 0x3c, 0, 0, 0, 0x0f, 0x05] },
  i386: { flags: 0, code: I386 },
  i486: { flags: 0, code: I386 },
  aarch64: { flags: 0, code: AARCH64 },
  aarch64_be: { flags: 0, code: AARCH64 },
  // EABI version 5.
  arm: { flags: 0x05000000, code: le32(...ARM) },
  // EABI5 + BE8: big-endian data, little-endian instructions (what armv6+ BE Linux uses).
  armeb: { flags: 0x05800000, code: le32(...ARM) },
  // o32 must NOT carry EF_MIPS_ABI2 (0x20): that bit is what the binfmt masks test.
  mips: { flags: 0, code: be32(...mips(4001)) },
  mipsel: { flags: 0, code: le32(...mips(4001)) },
  // n32 = ELF32 + EF_MIPS_ABI2.
  mipsn32: { flags: 0x20, code: be32(...mips(6058)) },
  mipsn32el: { flags: 0x20, code: le32(...mips(6058)) },
  mips64: { flags: 0, code: be32(...mips(5058)) },
  mips64el: { flags: 0, code: le32(...mips(5058)) },
  ppc: { flags: 0, code: be32(...PPC) },
  // ELFv2 (e_flags 2): otherwise QEMU reads e_entry as an ELFv1 function descriptor.
  ppc64: { flags: 2, code: be32(...PPC) },
  ppc64le: { flags: 2, code: le32(...PPC) },
  // lghi %r2,42; svc 1 (exit)
  s390x: { flags: 0, code: [0xa7, 0x29, 0x00, 0x2a, 0x0a, 0x01] },
  sparc: { flags: 0, code: sparc(0x10) },
  sparc32plus: { flags: 0, code: sparc(0x10) },
  sparc64: { flags: 0, code: sparc(0x6d) },
  // li a0,42; li a7,93 (exit); ecall -- uncompressed encodings.
  riscv32: { flags: 0, code: le32(0x02a00513, 0x05d00893, 0x00000073) },
  riscv64: { flags: 0, code: le32(0x02a00513, 0x05d00893, 0x00000073) },
  // addi.w $a0,$zero,42; addi.w $a7,$zero,93 (exit); syscall 0
  loongarch64: { flags: 0, code: le32(0x0280a804, 0x0281740b, 0x002b0000) },
  // l.addi r3,r0,42; l.addi r11,r0,93 (exit); l.sys 1; l.nop
  or1k: { flags: 0, code: be32(0x9c60002a, 0x9d60005d, 0x20000001, 0x15000000) },
  // One-instruction packets: r0=#42; r6=#93 (exit); trap0(#1).
  // e_flags names the ISA version; QEMU refuses anything but v5..v67 ("unable to find CPU model").
  hexagon: { flags: 0x67, code: le32(0x7800c540, 0x7800cba6, 0x5400c004) },
  // lda $16,42($31); lda $0,1($31) (exit); callsys
  alpha: { flags: 0, code: le32(0x221f002a, 0x201f0001, 0x00000083) },
  // moveq #1 (exit),%d0; moveq #42,%d1; trap #0
  m68k: { flags: 0, code: be16(0x7001, 0x722a, 0x4e40) },
  sh4: { flags: 0, code: le16(...SH4) },
  sh4eb: { flags: 0, code: be16(...SH4) },
  // ldi 42,%r26; ldi 1 (exit),%r20; be,l 0x100(%sr2,%r0) (syscall gateway); nop
  hppa: { flags: 0, code: be32(0x341a0054, 0x34140002, 0xe4008200, 0x08000240) },
  microblaze: { flags: 0, code: be32(...MICROBLAZE) },
  microblazeel: { flags: 0, code: le32(...MICROBLAZE) },
  xtensa: { flags: 0, code: XTENSA_LE },
  xtensaeb: { flags: 0, code: XTENSA_BE },
}

/** A complete, tiny, static ELF executable for `target` that does nothing but exit(PROBE_EXIT_STATUS) via the Linux syscall of that architecture. */
export function buildProbe(target: Target): Buffer {
  const probe = Object.hasOwn(PROBES, target.name) ? PROBES[target.name] : undefined
  if (!probe) throw new Error(`no probe for QEMU target '${target.name}'`)
  const magic = hexToBytes(target.magic)
  const is64 = magic[4] === 2
  const le = magic[5] === 1
  // e_machine is the one header field the magic fixes that we cannot derive
  // from class and byte order.
  const machine = le ? magic[18] | (magic[19] << 8) : (magic[18] << 8) | magic[19]

  const ehsize = is64 ? 64 : 52
  const phentsize = is64 ? 56 : 32
  const codeOff = ehsize + phentsize
  const size = codeOff + probe.code.length
  const entry = LOAD_ADDR + codeOff
  const buf = Buffer.alloc(size)

  let pos = 0
  const u8 = (v: number): void => void (pos = buf.writeUInt8(v, pos))
  const u16 = (v: number): void => void (pos = le ? buf.writeUInt16LE(v, pos) : buf.writeUInt16BE(v, pos))
  const u32 = (v: number): void => void (pos = le ? buf.writeUInt32LE(v, pos) : buf.writeUInt32BE(v, pos))
  const u64 = (v: number): void =>
    void (pos = le ? buf.writeBigUInt64LE(BigInt(v), pos) : buf.writeBigUInt64BE(BigInt(v), pos))
  // An address/offset-sized field (Elf32_Addr or Elf64_Addr).
  const word = is64 ? u64 : u32

  // e_ident: magic, class, data, EV_CURRENT, ELFOSABI_SYSV, padding.
  buf.write('\x7fELF', 0, 'latin1')
  pos = 4
  u8(is64 ? 2 : 1)
  u8(le ? 1 : 2)
  u8(1)
  pos = 16
  u16(ET_EXEC)
  u16(machine)
  u32(1) // e_version
  word(entry)
  word(ehsize) // e_phoff
  word(0) // e_shoff
  u32(probe.flags)
  u16(ehsize)
  u16(phentsize)
  u16(1) // e_phnum
  u16(0) // e_shentsize
  u16(0) // e_shnum
  u16(0) // e_shstrndx

  // One PT_LOAD mapping the whole file R+X at LOAD_ADDR.
  u32(PT_LOAD)
  if (is64) u32(PF_R | PF_X)
  word(0) // p_offset
  word(LOAD_ADDR) // p_vaddr
  word(LOAD_ADDR) // p_paddr
  word(size) // p_filesz
  word(size) // p_memsz
  if (!is64) u32(PF_R | PF_X)
  word(0x10000) // p_align: the largest page size any target uses

  Buffer.from(probe.code).copy(buf, codeOff)
  return buf
}
