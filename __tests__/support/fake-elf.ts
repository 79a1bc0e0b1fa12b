// Minimal ELF files built byte by byte, for the ELF reader's tests.

export interface FakeElf {
  bits: 32 | 64
  le?: boolean
  type?: number
  machine: number
  interp?: string
}

/** A minimal ELF: header, a PT_LOAD, optionally a PT_INTERP and its string. */
export function makeElf({ bits, le = true, type = 2, machine, interp }: FakeElf): Buffer {
  const ehsize = bits === 64 ? 64 : 52
  const phentsize = bits === 64 ? 56 : 32
  const phnum = interp ? 2 : 1
  const interpAt = ehsize + phnum * phentsize
  const interpBytes = interp ? Buffer.from(interp + '\0', 'latin1') : Buffer.alloc(0)
  const buf = Buffer.alloc(interpAt + interpBytes.length + 64)
  const u16 = (o: number, v: number): number => (le ? buf.writeUInt16LE(v, o) : buf.writeUInt16BE(v, o))
  const u32 = (o: number, v: number): number => (le ? buf.writeUInt32LE(v, o) : buf.writeUInt32BE(v, o))
  const addr = (o: number, v: number): number => (bits === 64 ? (le ? buf.writeBigUInt64LE(BigInt(v), o) : buf.writeBigUInt64BE(BigInt(v), o)) : u32(o, v))
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
