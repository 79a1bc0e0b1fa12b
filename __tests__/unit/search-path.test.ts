// Audit (issue 23): as root, a program found through a PATH entry another user can write is that user's program.
import * as fs from 'fs'
import * as os from 'os'
import * as path from 'path'
import { rootSearchPath } from '../../src/search-path'

test("as root, only directories only root can change are searched: not another user's, a writable one, '' or a relative one", () => {
  const base = fs.mkdtempSync(path.join(os.tmpdir(), 'search-path-'))
  try {
    const mine = path.join(base, 'root-bin')
    const theirs = path.join(base, 'user-bin')
    const open = path.join(base, 'open-bin')
    const below = path.join(open, 'bin')
    for (const d of [mine, theirs, open, below]) fs.mkdirSync(d)
    fs.chmodSync(mine, 0o755)
    fs.chownSync(theirs, 1001, 1001)
    fs.chmodSync(open, 0o777)
    fs.chmodSync(below, 0o755)
    // Missing: only root could make it under /usr, anyone under /tmp.
    const value = ['/usr/bin', mine, theirs, open, below, '', '.', 'bin', '/usr/no-such-dir', path.join(os.tmpdir(), 'no-such-dir-for-sure')].join(':')
    expect(rootSearchPath(value)).toEqual({
      kept: ['/usr/bin', mine, '/usr/no-such-dir'],
      dropped: [theirs, open, below, '', '.', 'bin', path.join(os.tmpdir(), 'no-such-dir-for-sure')],
    })
  } finally {
    fs.rmSync(base, { recursive: true, force: true })
  }
})
