// A probe is a tiny static ELF executable per QEMU target that reads its own
// argument vector from the initial process stack (argc, then the argv
// pointers) and exits with argc + the first byte of argv[1]. Run with
// PROBE_ARGS through binfmt_misc, it proves the emulator for that target is
// registered, works, and hands the program its arguments intact: a vector
// shifted by one (the emulator and the entry's preserve-argv0 flag disagree)
// gives another status. The ELF header is generated from the target's binfmt
// magic (class, byte order, e_machine), so the file is matched by exactly the
// entry it is meant to test.

import { Target, hexToBytes } from './targets'

/** What every probe runs with after argv[0] (its own path). */
export const PROBE_ARGS: readonly string[] = ['A', 'Q']

/** argc + first byte of argv[1] for [path, ...PROBE_ARGS]. */
export const PROBE_EXIT_STATUS = 1 + PROBE_ARGS.length + PROBE_ARGS[0].charCodeAt(0)

/** Status when argv[0] was lost: argv[1] is then the second argument. */
const ONE_TOO_FEW = PROBE_ARGS.length + PROBE_ARGS[1].charCodeAt(0)

const quote = (args: readonly string[]): string => args.map(a => `'${a}'`).join(' ')

/**
 * What a probe's exit status says about the arguments it received, in words;
 * undefined when they arrived intact.
 */
export function argumentsProblem(status: number): string | undefined {
  if (status === PROBE_EXIT_STATUS) return undefined
  const disagree = "the emulator and the entry's preserve-argv0 (P) flag disagree"
  if (status === ONE_TOO_FEW) {
    return `the test program received the arguments ${quote(PROBE_ARGS.slice(1))} instead of ${quote(PROBE_ARGS)} (argv[0] lost, one argument too few): ${disagree}`
  }
  // One too many: argv[1] is then argv[0] again, the probe's path ('/...' or './...').
  const first = String.fromCharCode(status - (PROBE_ARGS.length + 2))
  if (first === '/' || first === '.') {
    return `the test program received one argument too many (argv[1] starting with '${first}' instead of ${quote(PROBE_ARGS)}; argv[0] passed twice): ${disagree}`
  }
  return `the test program exited with status ${status} instead of ${PROBE_EXIT_STATUS} (argc + first byte of argv[1] for the arguments ${quote(PROBE_ARGS)}): it did not run as expected or its arguments did not arrive intact`
}

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
// Every probe computes status = argc + argv[1][0] and calls exit(status).
// Unless noted, argc is the word at the stack pointer and argv[1] the pointer
// two words above it.
const le32 = (...w: number[]): number[] => w.flatMap(x => [x & 0xff, (x >>> 8) & 0xff, (x >>> 16) & 0xff, x >>> 24])
const be32 = (...w: number[]): number[] => w.flatMap(x => [x >>> 24, (x >>> 16) & 0xff, (x >>> 8) & 0xff, x & 0xff])
const le16 = (...w: number[]): number[] => w.flatMap(x => [x & 0xff, x >>> 8])
const be16 = (...w: number[]): number[] => w.flatMap(x => [x >>> 8, x & 0xff])
const bytes = (hex: string): number[] => [...Buffer.from(hex, 'hex')]

// i386/i486: mov (%esp),%ebx; mov 8(%esp),%eax; movzbl (%eax),%eax; add %eax,%ebx;
// mov $1 (exit),%eax; int $0x80
const I386 = bytes('8b1c248b4424080fb60001c3b801000000cd80')
// ldr x0,[sp]; ldr x1,[sp,#16]; ldrb w1,[x1]; add x0,x0,x1; mov x8,#93 (exit); svc #0
// -- A64 instructions are always little-endian.
const AARCH64 = le32(0xf94003e0, 0xf9400be1, 0x39400021, 0x8b010000, 0xd2800ba8, 0xd4000001)
// ldr r0,[sp]; ldr r1,[sp,#8]; ldrb r1,[r1]; add r0,r0,r1; mov r7,#1 (exit); svc #0
const ARM = [0xe59d0000, 0xe59d1008, 0xe5d11000, 0xe0800001, 0xe3a07001, 0xef000000]
// <ld> $8,<2 words>($sp); <ld> $4,0($sp); lbu $9,0($8); li $2,NR; addu $4,$4,$9; syscall
// -- ordered so no load result is used in its load delay slot. <ld> is lw for
// 32-bit words, ld for 64-bit. NR is exit for the ABI: o32 4001, n64 5058, n32 6058.
const mips32 = (nr: number): number[] => [0x8fa80008, 0x8fa40000, 0x91090000, 0x24020000 | nr, 0x00892021, 0x0000000c]
const mips64 = (nr: number): number[] => [0xdfa80010, 0xdfa40000, 0x91090000, 0x24020000 | nr, 0x00892021, 0x0000000c]
// lwz r3,0(r1); lwz r4,8(r1); lbz r4,0(r4); add r3,r3,r4; li r0,1 (exit); sc
const PPC = [0x80610000, 0x80810008, 0x88840000, 0x7c632214, 0x38000001, 0x44000002]
// ld r3,0(r1); ld r4,16(r1); lbz r4,0(r4); add r3,r3,r4; li r0,1 (exit); sc
const PPC64 = [0xe8610000, 0xe8810010, 0x88840000, 0x7c632214, 0x38000001, 0x44000002]
// Linux/QEMU start SPARC programs with %sp 16 register-window words below argc
// (and, on sparc64, below the stack bias 2047).
// ld [%sp+64],%o0; ld [%sp+72],%o1; ldub [%o1],%o1; add %o0,%o1,%o0; mov 1 (exit),%g1; ta 0x10
const SPARC = be32(0xd003a040, 0xd203a048, 0xd20a4000, 0x90020009, 0x82102001, 0x91d02010)
// ldx [%sp+2175],%o0; ldx [%sp+2191],%o1; ldub [%o1],%o1; add %o0,%o1,%o0; mov 1 (exit),%g1; ta 0x6d
const SPARC64 = be32(0xd05ba87f, 0xd25ba88f, 0xd20a4000, 0x90020009, 0x82102001, 0x91d0206d)
// sh: mov.l @r15,r4; mov.l @(8,r15),r1; mov.b @r1,r1; extu.b r1,r1; add r1,r4;
// mov #1 (exit),r3; trapa #0x11
const SH4 = [0x64f2, 0x51f2, 0x6110, 0x611c, 0x341c, 0xe301, 0xc311]
// microblaze: lwi r5,r1,0; lwi r6,r1,8; lbui r6,r6,0; addk r5,r5,r6; addik r12,r0,1 (exit); brki r14,8
const MICROBLAZE = [0xe8a10000, 0xe8c10008, 0xe0c60000, 0x10a53000, 0x31800001, 0xb9cc0008]
// xtensa: l32i a6,a1,0; l32i a3,a1,8; l8ui a3,a3,0; add a6,a6,a3; movi a2,118 (exit);
// syscall. Big-endian cores store the fields of each 24-bit instruction in
// mirrored order (nibbles swapped; an 8-bit immediate stays a byte).
const XTENSA_LE = bytes('622100322102320300306680' + '22a076005000')
const XTENSA_BE = bytes('261200231202233000036608' + '220a76000500')

const PROBES: Readonly<Record<string, ProbeCode>> = {
  // mov (%rsp),%edi; mov 16(%rsp),%rax; movzbl (%rax),%eax; add %eax,%edi; mov $60 (exit),%eax; syscall
  x86_64: { flags: 0, code: bytes('8b3c24488b4424100fb60001c7b83c0000000f05') },
  i386: { flags: 0, code: I386 },
  i486: { flags: 0, code: I386 },
  aarch64: { flags: 0, code: AARCH64 },
  aarch64_be: { flags: 0, code: AARCH64 },
  // EABI version 5.
  arm: { flags: 0x05000000, code: le32(...ARM) },
  // EABI5 + BE8: big-endian data, little-endian instructions (what armv6+ BE Linux uses).
  armeb: { flags: 0x05800000, code: le32(...ARM) },
  // o32 must NOT carry EF_MIPS_ABI2 (0x20): that bit is what the binfmt masks test.
  mips: { flags: 0, code: be32(...mips32(4001)) },
  mipsel: { flags: 0, code: le32(...mips32(4001)) },
  // n32 = ELF32 + EF_MIPS_ABI2.
  mipsn32: { flags: 0x20, code: be32(...mips32(6058)) },
  mipsn32el: { flags: 0x20, code: le32(...mips32(6058)) },
  mips64: { flags: 0, code: be32(...mips64(5058)) },
  mips64el: { flags: 0, code: le32(...mips64(5058)) },
  ppc: { flags: 0, code: be32(...PPC) },
  // ELFv2 (e_flags 2): otherwise QEMU reads e_entry as an ELFv1 function descriptor.
  ppc64: { flags: 2, code: be32(...PPC64) },
  ppc64le: { flags: 2, code: le32(...PPC64) },
  // lg %r2,0(%r15); lg %r3,16(%r15); llgc %r3,0(%r3); agr %r2,%r3; svc 1 (exit)
  s390x: { flags: 0, code: bytes('e320f0000004e330f0100004e33030000090b9080023' + '0a01') },
  sparc: { flags: 0, code: SPARC },
  sparc32plus: { flags: 0, code: SPARC },
  sparc64: { flags: 0, code: SPARC64 },
  // lw a0,0(sp); lw a1,8(sp); lbu a1,0(a1); add a0,a0,a1; li a7,93 (exit); ecall -- uncompressed encodings.
  riscv32: { flags: 0, code: le32(0x00012503, 0x00812583, 0x0005c583, 0x00b50533, 0x05d00893, 0x00000073) },
  // ld a0,0(sp); ld a1,16(sp); lbu a1,0(a1); add a0,a0,a1; li a7,93 (exit); ecall
  riscv64: { flags: 0, code: le32(0x00013503, 0x01013583, 0x0005c583, 0x00b50533, 0x05d00893, 0x00000073) },
  // ld.d $a0,$sp,0; ld.d $a1,$sp,16; ld.bu $a1,$a1,0; add.d $a0,$a0,$a1; addi.w $a7,$zero,93 (exit); syscall 0
  loongarch64: { flags: 0, code: le32(0x28c00064, 0x28c04065, 0x2a0000a5, 0x00109484, 0x0281740b, 0x002b0000) },
  // l.lwz r3,0(r1); l.lwz r4,8(r1); l.lbz r4,0(r4); l.add r3,r3,r4; l.addi r11,r0,93 (exit); l.sys 1; l.nop
  or1k: { flags: 0, code: be32(0x84610000, 0x84810008, 0x8c840000, 0xe0632000, 0x9d60005d, 0x20000001, 0x15000000) },
  // One-instruction packets: r0=memw(r29+#0); r1=memw(r29+#8); r1=memub(r1+#0);
  // r0=add(r0,r1); r6=#93 (exit); trap0(#1).
  // e_flags names the ISA version; QEMU refuses anything but v5..v67 ("unable to find CPU model").
  hexagon: { flags: 0x67, code: le32(0x919dc000, 0x919dc041, 0x9121c001, 0xf300c100, 0x7800cba6, 0x5400c004) },
  // ldq $16,0($30); ldq $1,16($30); ldq_u $2,0($1); extbl $2,$1,$2; addq $16,$2,$16;
  // lda $0,1($31) (exit); callsys -- byte loads without the BWX extension.
  alpha: { flags: 0, code: le32(0xa61e0000, 0xa43e0010, 0x2c410000, 0x484100c2, 0x42020410, 0x201f0001, 0x00000083) },
  // move.l (%sp),%d1; movea.l 8(%sp),%a0; moveq #0,%d0; move.b (%a0),%d0; add.l %d0,%d1;
  // moveq #1 (exit),%d0; trap #0
  m68k: { flags: 0, code: be16(0x2217, 0x206f, 0x0008, 0x7000, 0x1010, 0xd280, 0x7001, 0x4e40) },
  sh4: { flags: 0, code: le16(...SH4) },
  sh4eb: { flags: 0, code: be16(...SH4) },
  // The stack grows up on PA-RISC; Linux/QEMU pass argc in %r25 and argv in %r24.
  // ldw 4(%r24),%r19; ldb 0(%r19),%r19; add %r25,%r19,%r26; ldi 1 (exit),%r20;
  // be,l 0x100(%sr2,%r0) (syscall gateway); nop
  hppa: { flags: 0, code: be32(0x0f081093, 0x0e601013, 0x0a79061a, 0x34140002, 0xe4008200, 0x08000240) },
  microblaze: { flags: 0, code: be32(...MICROBLAZE) },
  microblazeel: { flags: 0, code: le32(...MICROBLAZE) },
  xtensa: { flags: 0, code: XTENSA_LE },
  xtensaeb: { flags: 0, code: XTENSA_BE },
}

/** A complete, tiny, static ELF executable for `target` that exits with argc + argv[1][0] via the Linux syscall of that architecture: PROBE_EXIT_STATUS when run with PROBE_ARGS. */
export function buildProbe(target: Target): Buffer {
  const probe = Object.hasOwn(PROBES, target.name) ? PROBES[target.name] : undefined
  if (!probe) throw new Error(`no probe for QEMU target '${target.name}'`)
  const magic = hexToBytes(target.magic)
  const le = magic[5] === 1
  // e_machine is the one header field the magic fixes that we cannot derive
  // from class and byte order.
  const machine = le ? magic[18] | (magic[19] << 8) : (magic[18] << 8) | magic[19]
  return elfExecutable({ is64: magic[4] === 2, le, machine, ...probe })
}

// The x86-64 psABI level the CPU supports, decided as glibc does (CPUID, with
// XGETBV for the AVX and AVX-512 register state the OS enables), not from
// /proc/cpuinfo, whose flags some hypervisors trim. Exits with
// AMD64_LEVEL_BASE + level (1..4):
//   ebp=1; leaf 0 -> r8d (max leaf); leaf 0x80000000 < 0x80000001 -> done;
//   leaf 0x80000001 ecx -> r9d; leaf 1 ecx -> r10d
//   v2: leaf 1 ecx has SSE3, SSSE3, CX16, SSE4.1, SSE4.2, POPCNT (0x00982201), r9d has LAHF (bit 0): ebp=2
//   v3: leaf 1 ecx has FMA, MOVBE, OSXSAVE, AVX, F16C (0x38401000), r9d has LZCNT (bit 5), max leaf >= 7,
//       XCR0 has SSE+AVX state (6), leaf 7 ebx has BMI1, AVX2, BMI2 (0x128): ebp=3
//   v4: leaf 7 ebx has AVX512F, DQ, CD, BW, VL (0xd0030000), XCR0 has opmask+ZMM state (0xe6): ebp=4
//   done: lea AMD64_LEVEL_BASE(%rbp),%edi; mov $60 (exit),%eax; syscall
const AMD64_LEVEL_CODE = bytes(
  'bd0100000031c00fa24189c0b8000000800fa23d010000800f8298000000b8010000800fa24189c9b8010000000fa24189ca' +
    '4489d025012298003d01229800757541f6c101746fbd020000004489d025001040383d00104038755b41f6c12074554183f8' +
    '07724f31c90f01d04189c383e00683f806753fb80700000031c90fa289d825280100003d280100007528bd0300000081e300' +
    '0003d081fb000003d075154181e3e60000004181fbe60000007505bd040000008d7d50b83c0000000f05',
)
/** What the level probe adds to the level in its exit status, so that no other failure reads as a level. */
export const AMD64_LEVEL_BASE = 80
const EM_X86_64 = 62

/** A static x86-64 program whose exit status is AMD64_LEVEL_BASE + the x86-64 level (1..4) this CPU runs. */
export function buildAmd64LevelProbe(): Buffer {
  return elfExecutable({ is64: true, le: true, machine: EM_X86_64, flags: 0, code: AMD64_LEVEL_CODE })
}

/** The x86-64 level an exit status of the level probe reports; undefined for any other status. */
export function amd64LevelOf(status: number | null): number | undefined {
  if (status === null) return undefined
  const level = status - AMD64_LEVEL_BASE
  return level >= 1 && level <= 4 ? level : undefined
}

interface ElfLayout extends ProbeCode {
  readonly is64: boolean
  readonly le: boolean
  readonly machine: number
}

/** An ELF executable that maps itself whole at LOAD_ADDR and starts at its code. */
function elfExecutable({ is64, le, machine, flags, code }: ElfLayout): Buffer {
  const ehsize = is64 ? 64 : 52
  const phentsize = is64 ? 56 : 32
  const codeOff = ehsize + phentsize
  const size = codeOff + code.length
  const entry = LOAD_ADDR + codeOff
  const buf = Buffer.alloc(size)

  let pos = 0
  const u8 = (v: number): void => void (pos = buf.writeUInt8(v, pos))
  const u16 = (v: number): void => void (pos = le ? buf.writeUInt16LE(v, pos) : buf.writeUInt16BE(v, pos))
  const u32 = (v: number): void => void (pos = le ? buf.writeUInt32LE(v, pos) : buf.writeUInt32BE(v, pos))
  const u64 = (v: number): void => void (pos = le ? buf.writeBigUInt64LE(BigInt(v), pos) : buf.writeBigUInt64BE(BigInt(v), pos))
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
  u32(flags)
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

  Buffer.from(code).copy(buf, codeOff)
  return buf
}
