// The QEMU user-mode target table. Magic and mask per target are the values of
// QEMU's scripts/qemu-binfmt-conf.sh (cross-checked in tests against the files
// Debian's qemu-user-static installs under /usr/lib/binfmt.d). A "family" groups
// targets a host of that family may run natively.

export interface Target {
  /** QEMU target name, also the binfmt entry suffix: qemu-<name>. */
  readonly name: string
  readonly family: string
  /** hex, no separators */
  readonly magic: string
  /** hex, same length as magic */
  readonly mask: string
}

const TABLE: readonly Target[] = [
  { name: 'i386', family: 'i386', magic: '7f454c4601010100000000000000000002000300', mask: 'fffffffffffefe00fffffffffffffffffeffffff' },
  { name: 'i486', family: 'i386', magic: '7f454c4601010100000000000000000002000600', mask: 'fffffffffffefe00fffffffffffffffffeffffff' },
  { name: 'alpha', family: 'alpha', magic: '7f454c4602010100000000000000000002002690', mask: 'ffffffffffffff00fffffffffffffffffeffffff' },
  { name: 'arm', family: 'arm', magic: '7f454c4601010100000000000000000002002800', mask: 'ffffffffffffff00fffffffffffffffffeffffff' },
  { name: 'armeb', family: 'armeb', magic: '7f454c4601020100000000000000000000020028', mask: 'ffffffffffffff00fffffffffffffffffffeffff' },
  { name: 'sparc', family: 'sparc', magic: '7f454c4601020100000000000000000000020002', mask: 'fffffffffffffffcfffffffffffffffffffeffff' },
  { name: 'sparc32plus', family: 'sparc', magic: '7f454c4601020100000000000000000000020012', mask: 'fffffffffffffffcfffffffffffffffffffeffff' },
  { name: 'sparc64', family: 'sparc', magic: '7f454c460202010000000000000000000002002b', mask: 'fffffffffffffffcfffffffffffffffffffeffff' },
  { name: 'ppc', family: 'ppc', magic: '7f454c4601020100000000000000000000020014', mask: 'fffffffffffffffcfffffffffffffffffffeffff' },
  { name: 'ppc64', family: 'ppc', magic: '7f454c4602020100000000000000000000020015', mask: 'fffffffffffffffcfffffffffffffffffffeffff' },
  { name: 'ppc64le', family: 'ppcle', magic: '7f454c4602010100000000000000000002001500', mask: 'fffffffffffffffcfffffffffffffffffeffff00' },
  { name: 'm68k', family: 'm68k', magic: '7f454c4601020100000000000000000000020004', mask: 'ffffffffffffff00fffffffffffffffffffeffff' },
  {
    name: 'mips',
    family: 'mips',
    magic: '7f454c46010201000000000000000000000200080000000000000000000000000000000000000000',
    mask: 'ffffffffffffff00fefffffffffffffffffeffff0000000000000000000000000000000000000020',
  },
  {
    name: 'mipsel',
    family: 'mips',
    magic: '7f454c46010101000000000000000000020008000000000000000000000000000000000000',
    mask: 'ffffffffffffff00fefffffffffffffffeffffff0000000000000000000000000000000020',
  },
  {
    name: 'mipsn32',
    family: 'mips',
    magic: '7f454c46010201000000000000000000000200080000000000000000000000000000000000000020',
    mask: 'ffffffffffffff00fefffffffffffffffffeffff0000000000000000000000000000000000000020',
  },
  {
    name: 'mipsn32el',
    family: 'mips',
    magic: '7f454c46010101000000000000000000020008000000000000000000000000000000000020',
    mask: 'ffffffffffffff00fefffffffffffffffeffffff0000000000000000000000000000000020',
  },
  { name: 'mips64', family: 'mips', magic: '7f454c4602020100000000000000000000020008', mask: 'ffffffffffffff00fefffffffffffffffffeffff' },
  { name: 'mips64el', family: 'mips', magic: '7f454c4602010100000000000000000002000800', mask: 'ffffffffffffff00fefffffffffffffffeffffff' },
  { name: 'sh4', family: 'sh4', magic: '7f454c4601010100000000000000000002002a00', mask: 'fffffffffffffffcfffffffffffffffffeffffff' },
  { name: 'sh4eb', family: 'sh4', magic: '7f454c460102010000000000000000000002002a', mask: 'fffffffffffffffcfffffffffffffffffffeffff' },
  { name: 's390x', family: 's390x', magic: '7f454c4602020100000000000000000000020016', mask: 'fffffffffffffffcfffffffffffffffffffeffff' },
  { name: 'aarch64', family: 'arm', magic: '7f454c460201010000000000000000000200b700', mask: 'ffffffffffffff00fffffffffffffffffeffffff' },
  { name: 'aarch64_be', family: 'armeb', magic: '7f454c46020201000000000000000000000200b7', mask: 'ffffffffffffff00fffffffffffffffffffeffff' },
  { name: 'hppa', family: 'hppa', magic: '7f454c460102010000000000000000000002000f', mask: 'ffffffffffffff00fffffffffffffffffffeffff' },
  { name: 'riscv32', family: 'riscv', magic: '7f454c460101010000000000000000000200f300', mask: 'ffffffffffffff00fffffffffffffffffeffffff' },
  { name: 'riscv64', family: 'riscv', magic: '7f454c460201010000000000000000000200f300', mask: 'ffffffffffffff00fffffffffffffffffeffffff' },
  { name: 'xtensa', family: 'xtensa', magic: '7f454c4601010100000000000000000002005e00', mask: 'ffffffffffffff00fffffffffffffffffeffffff' },
  { name: 'xtensaeb', family: 'xtensaeb', magic: '7f454c460102010000000000000000000002005e', mask: 'ffffffffffffff00fffffffffffffffffffeffff' },
  { name: 'microblaze', family: 'microblaze', magic: '7f454c460102010000000000000000000002baab', mask: 'ffffffffffffff00fffffffffffffffffffeffff' },
  { name: 'microblazeel', family: 'microblazeel', magic: '7f454c460101010000000000000000000200abba', mask: 'ffffffffffffff00fffffffffffffffffeffffff' },
  { name: 'or1k', family: 'or1k', magic: '7f454c460102010000000000000000000002005c', mask: 'ffffffffffffff00fffffffffffffffffffeffff' },
  { name: 'x86_64', family: 'i386', magic: '7f454c4602010100000000000000000002003e00', mask: 'fffffffffffefe00fffffffffffffffffeffffff' },
  { name: 'hexagon', family: 'hexagon', magic: '7f454c460101010000000000000000000200a400', mask: 'ffffffffffffff00fffffffffffffffffeffffff' },
  { name: 'loongarch64', family: 'loongarch', magic: '7f454c4602010100000000000000000002000201', mask: 'fffffffffffffffc00fffffffffffffffeffffff' },
]

const BY_NAME = new Map(TABLE.map(t => [t.name, t]))

export function allTargets(): readonly Target[] {
  return TABLE
}

export function findTarget(name: string): Target | undefined {
  return BY_NAME.get(name)
}

export function getTarget(name: string): Target {
  const t = BY_NAME.get(name)
  if (!t) throw new Error(`unknown QEMU target '${name}'`)
  return t
}

/** i486 binaries run on qemu-i386; every other target has an emulator of its own name. */
export function emulatorName(target: Target): string {
  return target.name === 'i486' ? 'i386' : target.name
}

/** Docker platforms a target serves, in the order buildx lists them. */
const DOCKER_PLATFORMS: Readonly<Record<string, readonly string[]>> = {
  x86_64: ['linux/amd64'],
  i386: ['linux/386'],
  aarch64: ['linux/arm64'],
  arm: ['linux/arm/v7', 'linux/arm/v6'],
  ppc64le: ['linux/ppc64le'],
  ppc64: ['linux/ppc64'],
  s390x: ['linux/s390x'],
  riscv64: ['linux/riscv64'],
  mips64el: ['linux/mips64le'],
  mips64: ['linux/mips64'],
  mipsel: ['linux/mipsle'],
  mips: ['linux/mips'],
  loongarch64: ['linux/loong64'],
}

export function dockerPlatforms(target: Target): readonly string[] {
  return DOCKER_PLATFORMS[target.name] ?? []
}

export function hexToBytes(hex: string): Buffer {
  return Buffer.from(hex, 'hex')
}

/** The `\xNN` form binfmt_misc's register file expects. */
export function hexToEscaped(hex: string): string {
  return hex.replace(/(..)/g, '\\x$1')
}

/** Whether a file starting with `header` would be matched by the target's magic/mask. */
export function matchesHeader(magicHex: string, maskHex: string, header: Buffer, offset = 0): boolean {
  const magic = hexToBytes(magicHex)
  const mask = hexToBytes(maskHex)
  if (header.length < offset + magic.length) return false
  for (let i = 0; i < magic.length; i++) {
    if ((header[offset + i] & mask[i]) !== (magic[i] & mask[i])) return false
  }
  return true
}
