import { execFileSync, spawnSync } from 'child_process'
import * as fs from 'fs'
import * as os from 'os'
import * as path from 'path'
import { writeTar } from '../../src/fetch/tar'
import { readAll } from '../support/tar'

// Archives written by GNU tar (the system's), read by the action's tar reader;
// archives the action's tar writer makes (for docker cp), read by GNU tar.

describe('readTar', () => {
  test('counts sparse members at their full size (GNU and pax formats)', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tar-sparse-'))
    try {
      fs.writeFileSync(path.join(dir, 'big'), 'x')
      fs.truncateSync(path.join(dir, 'big'), 5 * 1024 ** 3)
      for (const format of ['gnu', 'pax']) {
        const buf = execFileSync('tar', [`--format=${format}`, '-cSf', '-', 'big'], { cwd: dir, maxBuffer: 1 << 24 })
        expect(buf.length).toBeLessThan(100000)
        const r = await readAll(buf, () => false)
        expect(r.headers.map(h => [h.name, h.type, h.fullSize])).toEqual([['big', 'sparse', 5 * 1024 ** 3]])
      }
    } finally {
      fs.rmSync(dir, { recursive: true, force: true })
    }
  })
})

describe('writeTar', () => {
  let dir: string
  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tar-write-'))
  })
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }))

  const long = `${'d'.repeat(90)}/${'e'.repeat(60)}/file-with-a-long-name`
  const archive = (): Buffer =>
    writeTar([
      { name: 'a/b/one', data: Buffer.from('1'), mode: 0o755 },
      { name: 'a/b/two', data: Buffer.alloc(1000, 'x'), mode: 0o644 },
      { name: long, data: Buffer.from('long'), mode: 0o700 },
    ])

  test('tar -t lists every member, parent directories first, with their modes', () => {
    const r = spawnSync('tar', ['-tv', '-f', '-'], { input: archive(), encoding: 'utf8' })
    expect(r.stderr).toBe('')
    expect(r.status).toBe(0)
    const listed = r.stdout
      .trim()
      .split('\n')
      .map(l => {
        const f = l.split(/\s+/)
        return [f[0], f[f.length - 1]]
      })
    expect(listed).toEqual([
      ['drwxr-xr-x', 'a/'],
      ['drwxr-xr-x', 'a/b/'],
      ['-rwxr-xr-x', 'a/b/one'],
      ['-rw-r--r--', 'a/b/two'],
      ['drwxr-xr-x', `${'d'.repeat(90)}/`],
      ['drwxr-xr-x', `${'d'.repeat(90)}/${'e'.repeat(60)}/`],
      ['-rwx------', long],
    ])
  })

  test('tar -x unpacks directories, modes and contents, long paths included', () => {
    const out = fs.mkdtempSync(path.join(dir, 'untar-'))
    const r = spawnSync('tar', ['-x', '-C', out, '-f', '-'], { input: archive() })
    expect(r.stderr.toString()).toBe('')
    expect(r.status).toBe(0)
    const file = (name: string): { mode: number; content: string; dir: boolean } => {
      const st = fs.statSync(path.join(out, name))
      return { mode: st.mode & 0o777, content: st.isDirectory() ? '' : fs.readFileSync(path.join(out, name), 'utf8'), dir: st.isDirectory() }
    }
    expect(file('a')).toEqual({ mode: 0o755, content: '', dir: true })
    expect(file('a/b/one')).toEqual({ mode: 0o755, content: '1', dir: false })
    expect(file('a/b/two')).toEqual({ mode: 0o644, content: 'x'.repeat(1000), dir: false })
    expect(file(long)).toEqual({ mode: 0o700, content: 'long', dir: false })
  })
})
