import { createHash } from 'crypto'
import * as fs from 'fs'
import * as http from 'http'
import { AddressInfo } from 'net'
import * as os from 'os'
import * as path from 'path'
import { ActionError } from '../../../src/errors'
import { NetworkPolicy, download } from '../../../src/fetch/download'
import { fileNameOf, httpTarget, redact } from '../../../src/fetch/url'

// A loopback server per test; the downloader's timeouts scaled down so hangs are bounded.

const FAST: NetworkPolicy = { connectTimeoutMs: 1000, idleTimeoutMs: 500, attempts: 2, retryDelayMs: 50 }
const log = { info: () => undefined, debug: () => undefined, progress: () => undefined }
const BODY = Buffer.from('x'.repeat(100000))

let server: http.Server
let base: string
let handler: (req: http.IncomingMessage, res: http.ServerResponse) => void
const seen: http.IncomingMessage[] = []
let work: string

beforeAll(async () => {
  server = http.createServer((req, res) => {
    seen.push(req)
    handler(req, res)
  })
  await new Promise<void>(r => server.listen(0, '127.0.0.1', r))
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  work = fs.mkdtempSync(path.join(os.tmpdir(), 'download-test-'))
})
afterAll(async () => {
  server.closeAllConnections()
  await new Promise(r => server.close(r))
  fs.rmSync(work, { recursive: true, force: true })
})
beforeEach(() => {
  seen.length = 0
})

let n = 0
const dest = (): string => path.join(work, `d${n++}`)
const ok = (res: http.ServerResponse, body = BODY): void => {
  res.writeHead(200, { 'Content-Length': body.length })
  res.end(body)
}

test('streams to the file and hashes as it arrives', async () => {
  handler = (_q, s) => ok(s)
  const d = dest()
  const r = await download(`${base}/a.tar.gz`, d, { maxBytes: 1e6, network: FAST, log })
  expect(r).toEqual({ sha256: createHash('sha256').update(BODY).digest('hex'), size: BODY.length })
  expect(fs.readFileSync(d).equals(BODY)).toBe(true)
})

test('follows relative and absolute redirects', async () => {
  handler = (q, s) => {
    if (q.url === '/one') s.writeHead(302, { Location: '../two' }).end()
    else if (q.url === '/two') s.writeHead(301, { Location: `${base}/three` }).end()
    else ok(s)
  }
  await download(`${base}/one`, dest(), { maxBytes: 1e6, network: FAST, log })
  expect(seen.map(q => q.url)).toEqual(['/one', '/two', '/three'])
})

test('userinfo becomes Basic auth for its own origin only, and never shows', async () => {
  const other = `http://localhost:${new URL(base).port}`
  handler = (q, s) => (q.url === '/start' ? s.writeHead(302, { Location: `${other}/cdn` }).end() : ok(s))
  await download(`http://me:p%40ss@127.0.0.1:${new URL(base).port}/start`, dest(), { maxBytes: 1e6, network: FAST, log })
  expect(seen.map(q => q.headers.authorization)).toEqual([`Basic ${Buffer.from('me:p@ss').toString('base64')}`, undefined])
  expect(redact('https://me:tok@h/x')).toBe('https://***@h/x')
  expect(redact('/srv/qemu.tar.gz')).toBe('/srv/qemu.tar.gz')
  expect(httpTarget('https://me:tok@h/x').url.toString()).toBe('https://h/x')
})

test('the last path segment is a label only', () => {
  expect(fileNameOf('http://h/x/..%2F..%2Fetc%2Fcron.d%2Fjob')).toBe('../../etc/cron.d/job')
  expect(fileNameOf('https://h/releases/download/deploy%2Fv1/qemu.tar.gz')).toBe('qemu.tar.gz')
})

test('a stalled body times out, is retried, then fails naming the URL; the file is gone', async () => {
  handler = (_q, s) => {
    s.writeHead(200, { 'Content-Length': 1000000 })
    s.write('partial')
  }
  const d = dest()
  const t = Date.now()
  const e = await download(`http://u:secret@127.0.0.1:${new URL(base).port}/stall`, d, { maxBytes: 1e7, network: FAST, log }).catch(x => x)
  expect(e).toBeInstanceOf(ActionError)
  expect(e.message).toMatch(/^qemu-url: download of http:\/\/\*\*\*@127\.0\.0\.1:\d+\/stall failed: no data for 0\.5 s \(after 2 attempts\)/)
  // A hang guard, with room for a loaded machine: without the idle timeout the download would never end.
  expect(Date.now() - t).toBeLessThan(20000)
  expect(seen).toHaveLength(2)
  expect(fs.existsSync(d)).toBe(false)
})

test('no response headers within the connect timeout', async () => {
  handler = () => undefined
  const e = await download(`${base}/silent`, dest(), { maxBytes: 1e6, network: { ...FAST, attempts: 1 }, log }).catch(x => x)
  expect(e.message).toMatch(/failed: no response within 1 s \(after 1 attempts\)/)
})

test('5xx is retried; 404 is final', async () => {
  let calls = 0
  handler = (_q, s) => (calls++ === 0 ? s.writeHead(503).end() : ok(s))
  await download(`${base}/flaky`, dest(), { maxBytes: 1e6, network: FAST, log })
  expect(calls).toBe(2)
  handler = (_q, s) => s.writeHead(404).end()
  const e = await download(`${base}/missing`, dest(), { maxBytes: 1e6, network: FAST, log }).catch(x => x)
  expect(e.message).toMatch(/^qemu-url: download of http:\/\/127\.0\.0\.1:\d+\/missing failed: HTTP 404 Not Found; check qemu-version and qemu-url$/)
  expect(seen).toHaveLength(3)
})

test('a body over the limit is refused: by Content-Length before writing, or as it streams', async () => {
  handler = (_q, s) => ok(s)
  const d = dest()
  const e = await download(`${base}/big`, d, { maxBytes: 1000, network: FAST, log }).catch(x => x)
  expect(e.message).toMatch(/is larger than 1000 bytes, the limit for one download/)
  expect(fs.existsSync(d)).toBe(false)
  handler = (_q, s) => {
    s.writeHead(200)
    s.end(BODY) // chunked: no length announced
  }
  const e2 = await download(`${base}/big2`, d, { maxBytes: 1000, network: FAST, log }).catch(x => x)
  expect(e2.message).toMatch(/is larger than 1000 bytes/)
  expect(fs.existsSync(d)).toBe(false)
})

test('an abort stops the transfer promptly and removes the file', async () => {
  handler = (_q, s) => {
    s.writeHead(200, { 'Content-Length': 1000000 })
    s.write('partial')
  }
  const ctl = new AbortController()
  const d = dest()
  const t = Date.now()
  setTimeout(() => ctl.abort(new Error('cancelled')), 100)
  await expect(download(`${base}/slow`, d, { maxBytes: 1e7, network: { ...FAST, idleTimeoutMs: 30000 }, log, signal: ctl.signal })).rejects.toThrow('cancelled')
  // Well inside the 30 s idle timeout, which would end it without the abort; room for a loaded machine.
  expect(Date.now() - t).toBeLessThan(10000)
  expect(fs.existsSync(d)).toBe(false)
})

/** Serves `status` (with `headers`) and then a body that never ends; resolves `closed` when the client hangs up. */
function endlessBody(status: number, headers: http.OutgoingHttpHeaders = {}): { respond: (s: http.ServerResponse) => void; closed: Promise<void> } {
  let hungUp: () => void = () => undefined
  const closed = new Promise<void>(r => (hungUp = r))
  return {
    closed,
    respond: s => {
      s.writeHead(status, headers)
      const drip = setInterval(() => s.write('x'.repeat(100)), 20)
      s.on('close', () => {
        clearInterval(drip)
        hungUp()
      })
    },
  }
}

/** Whether `p` settles within `ms`. */
const within = (p: Promise<void>, ms: number): Promise<boolean> =>
  Promise.race([p.then(() => true), new Promise<boolean>(r => setTimeout(() => r(false), ms).unref())])

test('the body of a refused answer (404 that never ends) is not read on: the connection is closed', async () => {
  const error = endlessBody(404)
  handler = (_q, s) => error.respond(s)
  const e = await download(`${base}/endless-404`, dest(), { maxBytes: 1e6, network: FAST, log }).catch(x => x)
  expect(e.message).toMatch(/failed: HTTP 404/)
  // Left reading, the socket would keep the process (the action's step) alive as long as the server keeps sending.
  expect(await within(error.closed, 2000)).toBe(true)
})

test('the body of a redirect (one that never ends) is not read on once the next hop is asked', async () => {
  const redirect = endlessBody(302, { Location: '/target' })
  handler = (q, s) => (q.url === '/endless-302' ? redirect.respond(s) : ok(s))
  await download(`${base}/endless-302`, dest(), { maxBytes: 1e6, network: FAST, log })
  expect(await within(redirect.closed, 2000)).toBe(true)
})
