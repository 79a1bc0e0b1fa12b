import * as fs from 'fs'
import * as os from 'os'
import * as path from 'path'
import * as zlib from 'zlib'
import { extractEmulators } from '../../../src/archive'
import { DEFAULT_LIMITS } from '../../../src/fetch/limits'

// extractEmulators with the decompressors Node has (gzip, and plain tar): no system programs.

let work: string
beforeAll(() => (work = fs.mkdtempSync(path.join(os.tmpdir(), 'archive-unit-'))))
afterAll(() => fs.rmSync(work, { recursive: true, force: true }))

/** A ustar header for a regular file `name` of `size` bytes. */
function header(name: string, size: number): Buffer {
  const b = Buffer.alloc(512)
  b.write(name, 0, 'utf8')
  b.write('0000644\0', 100, 'latin1')
  b.write('0000000\0', 108, 'latin1')
  b.write('0000000\0', 116, 'latin1')
  b.write(size.toString(8).padStart(11, '0') + '\0', 124, 'latin1')
  b.write('00000000000\0', 136, 'latin1')
  b.write('        ', 148, 'latin1')
  b.write('0', 156, 'latin1')
  b.write('ustar\0' + '00', 257, 'latin1')
  let sum = 0
  for (const x of b) sum += x
  b.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 'latin1')
  return b
}

test('an abort stops the gzip decompression at once, also inside a large member that is being skipped', async () => {
  // A 3000 MiB member that is not an emulator, as concatenated gzip members of 1 MiB of zeros each
  // (3 MB on disk): reading through it takes seconds, and no header comes meanwhile to notice the abort.
  const zeros = zlib.gzipSync(Buffer.alloc(1 << 20), { level: 9 })
  const file = path.join(work, 'skip.tar.gz')
  fs.writeFileSync(file, Buffer.concat([zlib.gzipSync(header('data/big', 3000 * 2 ** 20)), ...Array<Buffer>(3000).fill(zeros)]))
  const dest = fs.mkdtempSync(path.join(work, 'dest-'))
  const ctl = new AbortController()
  const run = extractEmulators(file, 'skip.tar.gz', { names: ['aarch64'], required: true }, dest, { host: 'amd64', limits: DEFAULT_LIMITS, signal: ctl.signal })
  setTimeout(() => ctl.abort(new Error('cancelled')), 50)
  // A hang guard, not a speed test: the whole member takes far longer than this to read.
  const settled = await Promise.race([
    run.then(
      () => 'resolved',
      (e: Error) => e.message,
    ),
    new Promise(r => setTimeout(() => r('still reading'), 2000).unref()),
  ])
  expect(settled).toBe('cancelled')
  expect(fs.readdirSync(dest)).toEqual([])
  await run.catch(() => undefined)
}, 60000)
