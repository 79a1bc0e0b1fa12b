// What a hostile server, URL or local file can do to the fetch side: nothing it
// sends or names picks a path, hangs the run, fills the disk or reaches a log.
import * as fs from 'fs'
import { runAction } from '../support/action'
import { HandlerServer, serveAnyPath, startHandlerServer } from '../support/server'
import {
  CoreFixtures,
  VERSION,
  closeFixtures,
  expectRegistered,
  expectSuccess,
  freshDir,
  startFixtures,
  transcript,
  withKernel,
} from './core-helpers'

let fx: CoreFixtures
beforeAll(async () => {
  fx = await startFixtures()
}, 120000)
afterAll(() => closeFixtures(fx))

/** Every file under `dir`, relative to it. */
function filesUnder(dir: string): string[] {
  if (!fs.existsSync(dir)) return []
  return (fs.readdirSync(dir, { recursive: true }) as string[]).sort()
}

describe('a server that answers any path', () => {
  let any: HandlerServer
  beforeAll(async () => {
    any = await startHandlerServer(serveAnyPath(fx.archives.tarGz))
  })
  afterAll(() => any?.close())

  test('a URL whose last segment decodes to ../../.. writes nothing outside the action dirs', async () => {
    const victim = freshDir('victim')
    const temp = freshDir('temp')
    const cache = freshDir('toolcache')
    // From RUNNER_TEMP/<run dir>/<download dir>, enough '..' reach / whatever the depth.
    const escape = `${'..%2F'.repeat(16)}${victim.slice(1).split('/').join('%2F')}%2Fjob`
    const url = `${any.url}/x/${escape}`
    await withKernel(async () => {
      const r = await runAction({ platforms: 'linux/arm64', 'qemu-version': VERSION, 'qemu-url': url, buildx: 'false' }, { toolCache: cache, temp })
      // The bytes are a good archive: the run itself is fine.
      expectSuccess(r)
      expectRegistered('qemu-aarch64', `${cache}/`)
      expect(r.outputs.emulators).toBe('aarch64')
      // The server got the request as sent; the decoded name chose no path.
      expect(any.log.some(l => l.path.includes('..%2F'))).toBe(true)
      expect(filesUnder(victim)).toEqual([])
      // The run's temp dir is gone; the tool cache holds only the action's own names.
      expect(filesUnder(temp)).toEqual([])
      expect(filesUnder(cache).filter(f => /job/.test(f))).toEqual([])
      if (filesUnder(victim).length) throw new Error(transcript(r))
    })
  })
})
