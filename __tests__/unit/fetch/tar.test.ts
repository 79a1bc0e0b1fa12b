import { TarFormatError, readTar, writeTar } from '../../../src/fetch/tar'
import { chunks, readAll, ustarHeader as header } from '../../support/tar'

// Archives built here, byte by byte, and by the writer; GNU tar's own are read (and the writer's
// checked by GNU tar) in __tests__/integration/tar-gnu.test.ts.

const pad = (data: Buffer): Buffer => Buffer.concat([data, Buffer.alloc((512 - (data.length % 512)) % 512)])
const member = (name: string, data: Buffer | string, type = '0'): Buffer => {
  const d = Buffer.from(data)
  return Buffer.concat([header(name, { size: d.length, type }), pad(d)])
}
const pax = (records: Record<string, string>): Buffer => {
  const body = Object.entries(records)
    .map(([k, v]) => {
      const rec = ` ${k}=${v}\n`
      let len = rec.length + 1
      while (`${len}${rec}`.length !== len) len++
      return `${len}${rec}`
    })
    .join('')
  return Buffer.concat([header('PaxHeader', { size: body.length, type: 'x' }), pad(Buffer.from(body))])
}
const END = Buffer.alloc(1024)

async function formatError(p: Promise<unknown>): Promise<TarFormatError> {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  )
  expect(e).toBeInstanceOf(TarFormatError)
  return e as TarFormatError
}

describe('readTar', () => {
  test('reads members, ustar prefixes, pax paths and GNU long names, in order', async () => {
    const long = `${'d/'.repeat(80)}qemu-aarch64`
    const buf = Buffer.concat([
      member('a.txt', 'hello'),
      Buffer.concat([header('qemu-arm', { size: 3, prefix: 'usr/bin' }), pad(Buffer.from('arm'))]),
      pax({ path: 'pax/qemu-riscv64' }),
      member('short-name-ignored', 'riscv'),
      Buffer.concat([header('././@LongLink', { size: long.length + 1, type: 'L' }), pad(Buffer.from(`${long}\0`))]),
      member('truncated-name', 'aarch64'),
      END,
    ])
    const r = await readAll(buf)
    expect(r.ending).toBe('end')
    expect([...r.data]).toEqual([
      ['a.txt', 'hello'],
      ['usr/bin/qemu-arm', 'arm'],
      ['pax/qemu-riscv64', 'riscv'],
      [long, 'aarch64'],
    ])
  })

  test('reports links, devices, directories and FIFOs as such (never as files)', async () => {
    const buf = Buffer.concat([
      member('qemu-a', '', '1'),
      header('qemu-b', { type: '2', linkname: '../../etc/passwd' }),
      header('qemu-c', { type: '3' }),
      header('qemu-d', { type: '5' }),
      header('qemu-e', { type: '6' }),
      END,
    ])
    const r = await readAll(buf)
    expect(r.headers.map(h => [h.name, h.type])).toEqual([
      ['qemu-a', 'hardlink'],
      ['qemu-b', 'symlink'],
      ['qemu-c', 'device'],
      ['qemu-d', 'directory'],
      ['qemu-e', 'fifo'],
    ])
    expect(r.headers[1].linkname).toBe('../../etc/passwd')
    expect(r.data.size).toBe(0)
  })

  test('stops at the end-of-archive block: trailing bytes are not read as members', async () => {
    const buf = Buffer.concat([member('x', 'x'), END, Buffer.from('garbage'.repeat(200))])
    expect((await readAll(buf)).headers.map(h => h.name)).toEqual(['x'])
  })

  test('stops when the caller says so, without reading further', async () => {
    let pulled = 0
    async function* counting(): AsyncGenerator<Buffer> {
      for await (const c of chunks(Buffer.concat([member('a', 'a'), member('b', 'b'), member('c', 'c'), END]), 512)) {
        pulled++
        yield c
      }
    }
    const seen: string[] = []
    const ending = await readTar(
      counting(),
      h => {
        seen.push(h.name)
        return { write: () => undefined, end: () => undefined }
      },
      () => seen.length === 1,
    )
    expect(ending).toBe('stopped')
    expect(seen).toEqual(['a'])
    expect(pulled).toBe(2)
  })

  test('malformed and truncated archives are errors, saying where', async () => {
    expect((await formatError(readAll(Buffer.alloc(0)))).notTar).toBe(true)
    expect((await formatError(readAll(Buffer.from('<html>'.repeat(200))))).notTar).toBe(true)
    const bad = await formatError(readAll(Buffer.concat([member('a', 'a'), header('b', { badSum: true }), END])))
    expect(bad.message).toBe('a header has a bad checksum')
    expect(bad.notTar).toBe(false)
    const whole = Buffer.concat([member('qemu-arm', 'x'.repeat(3000)), END])
    expect((await formatError(readAll(whole.subarray(0, 1500)))).message).toBe('it ends inside qemu-arm (988 of 3000 bytes)')
    expect((await formatError(readAll(whole.subarray(0, 300)))).message).toBe('it ends inside a header (300 of 512 bytes)')
    expect((await formatError(readAll(whole.subarray(0, 1500), () => false))).message).toMatch(/^it ends inside qemu-arm/)
    const hugeMeta = Buffer.concat([header('L', { size: 64 * 1024 * 1024, type: 'L' }), END])
    expect((await formatError(readAll(hugeMeta))).message).toMatch(/metadata record of 67108864 bytes/)
  })

  test('a sink error ends reading with that error', async () => {
    const buf = Buffer.concat([member('a', 'aaaa'), END])
    await expect(
      readTar(chunks(buf), () => ({
        write: () => {
          throw new Error('disk full')
        },
        end: () => undefined,
      })),
    ).rejects.toThrow('disk full')
  })
})

describe('writeTar', () => {
  test('the reader reads back what it wrote: parent directories once, then the file, with modes and contents', async () => {
    const long = `${'d'.repeat(90)}/${'e'.repeat(60)}/file-with-a-long-name`
    const buf = writeTar([
      { name: 'a/b/one', data: Buffer.from('1'), mode: 0o755 },
      { name: 'a/b/two', data: Buffer.alloc(1000, 'x'), mode: 0o644 },
      { name: 'a/empty', data: Buffer.alloc(0), mode: 0o600 },
      { name: long, data: Buffer.from('long'), mode: 0o700 },
    ])
    expect(buf.length % 512).toBe(0)
    const r = await readAll(buf)
    expect(r.ending).toBe('end')
    expect(r.headers.map(h => [h.name, h.type, h.mode, h.size])).toEqual([
      ['a/', 'directory', 0o755, 0],
      ['a/b/', 'directory', 0o755, 0],
      ['a/b/one', 'file', 0o755, 1],
      ['a/b/two', 'file', 0o644, 1000],
      ['a/empty', 'file', 0o600, 0],
      [`${'d'.repeat(90)}/`, 'directory', 0o755, 0],
      [`${'d'.repeat(90)}/${'e'.repeat(60)}/`, 'directory', 0o755, 0],
      [long, 'file', 0o700, 4],
    ])
    expect(r.data).toEqual(
      new Map([
        ['a/b/one', '1'],
        ['a/b/two', 'x'.repeat(1000)],
        ['a/empty', ''],
        [long, 'long'],
      ]),
    )
  })

  test('the same files give the same bytes for the same time', () => {
    const files = [{ name: 'x/y', data: Buffer.from('z'), mode: 0o755 }]
    expect(writeTar(files, 1700000000).equals(writeTar(files, 1700000000))).toBe(true)
    expect(writeTar(files, 1700000000).equals(writeTar(files, 1700000001))).toBe(false)
  })

  test('a path no ustar header can hold is refused, naming it', () => {
    const file = (name: string): { name: string; data: Buffer; mode: number } => ({ name, data: Buffer.alloc(0), mode: 0o644 })
    expect(() => writeTar([file('n'.repeat(101))])).toThrow(`path too long for a tar header: ${'n'.repeat(101)}`)
    expect(() => writeTar([file(`${'p'.repeat(156)}/f`)])).toThrow(/^path too long for a tar header: p+\/$/)
    expect(() => writeTar([file(`p/${'n'.repeat(101)}`)])).toThrow(/^path too long for a tar header: p\/n+$/)
  })
})
