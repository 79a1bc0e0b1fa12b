import { execFileSync } from 'child_process'
import * as fs from 'fs'
import * as os from 'os'
import * as path from 'path'
import { readAll } from '../support/tar-read'

// Archives written by GNU tar (the system's), read by the action's tar reader.


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
