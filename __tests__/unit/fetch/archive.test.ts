import * as fs from 'fs'
import * as os from 'os'
import * as path from 'path'
import * as zlib from 'zlib'
import { extractEmulators } from '../../../src/fetch/archive'
import { DEFAULT_LIMITS } from '../../../src/fetch/limits'
import { ustarHeader } from '../../support/tar'

// extractEmulators with the decompressors Node has (gzip, and plain tar): no system programs.

let work: string
beforeAll(() => (work = fs.mkdtempSync(path.join(os.tmpdir(), 'archive-unit-'))))
afterAll(() => fs.rmSync(work, { recursive: true, force: true }))

test('an abort stops the gzip decompression at once, also inside a large member that is being skipped', async () => {
  // A 3000 MiB member that is not an emulator, as concatenated gzip members of 1 MiB of zeros each
  // (3 MB on disk): reading through it takes seconds, and no header comes meanwhile to notice the abort.
  const zeros = zlib.gzipSync(Buffer.alloc(1 << 20), { level: 9 })
  const file = path.join(work, 'skip.tar.gz')
  fs.writeFileSync(file, Buffer.concat([zlib.gzipSync(ustarHeader('data/big', { size: 3000 * 2 ** 20 })), ...Array<Buffer>(3000).fill(zeros)]))
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
