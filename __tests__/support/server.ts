// A file server on 127.0.0.1 for integration tests. It runs inside the jest
// process; the action (a separate `node dist/index.js` process) reaches it over
// HTTP, so downloads, retries and broken transfers are exercised for real.
import * as fs from 'fs'
import * as http from 'http'
import { AddressInfo } from 'net'
import * as path from 'path'

export interface RequestRecord {
  method: string
  /** the request target as sent (still URL-encoded), e.g. /releases/download/deploy%2Fv1-2/x.tar.gz */
  path: string
  headers: http.IncomingHttpHeaders
}

export interface TestServer {
  /** http://127.0.0.1:<port>, no trailing slash */
  url: string
  /** GET request targets (downloads) in arrival order, as sent (URL-encoded); HEADs are in `log` only */
  requests: string[]
  /** the same requests with method and headers (e.g. to check no Authorization leaks) */
  log: RequestRecord[]
  /** answer the next `times` requests for `urlPath` with `status`, then serve normally */
  failNext(urlPath: string, status: number, times?: number): void
  /** send only the first `bytes` of `urlPath` with the full Content-Length, then drop the connection; `times` defaults to every request */
  truncate(urlPath: string, bytes: number, times?: number): void
  /** answer `urlPath` with a redirect to `location` (absolute, or a path on this server) */
  redirect(urlPath: string, location: string, status?: number): void
  /** forget failNext/truncate/redirect rules and the request log */
  reset(): void
  close(): Promise<void>
}

// Rules are keyed by the decoded path so 'deploy%2Fv1' and 'deploy/v1' name the same file.
function key(urlPath: string): string {
  const p = urlPath.split('?')[0]
  let decoded: string
  try {
    decoded = decodeURIComponent(p)
  } catch {
    decoded = p
  }
  return decoded.startsWith('/') ? decoded : `/${decoded}`
}

/** Serves files under `dir`: `/a%2Fb` is the file `<dir>/a/b`. Missing files and directories are 404. */
export function startServer(dir: string): Promise<TestServer> {
  const root = path.resolve(dir)
  const failures = new Map<string, { status: number; left: number }>()
  const truncations = new Map<string, { bytes: number; left: number }>()
  const redirects = new Map<string, { location: string; status: number }>()
  const requests: string[] = []
  const log: RequestRecord[] = []

  const server = http.createServer((req, res) => {
    const raw = req.url ?? '/'
    // `requests` are downloads (GETs); the action's HEAD pre-flight for redirects is in `log` only.
    if (req.method !== 'HEAD') requests.push(raw)
    log.push({ method: req.method ?? 'GET', path: raw, headers: req.headers })
    const k = key(raw)

    // Injected failures are for downloads, so a HEAD never uses one up.
    const fail = req.method === 'HEAD' ? undefined : failures.get(k)
    if (fail && fail.left > 0) {
      fail.left--
      res.writeHead(fail.status, { 'Content-Type': 'text/plain' })
      res.end(`injected ${fail.status}\n`)
      return
    }
    const redir = redirects.get(k)
    if (redir) {
      res.writeHead(redir.status, { Location: redir.location })
      res.end()
      return
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { Allow: 'GET, HEAD' })
      res.end()
      return
    }
    const file = path.join(root, k)
    // path.join normalises '..'; anything that lands outside the served dir is refused.
    if (file !== root && !file.startsWith(root + path.sep)) {
      res.writeHead(403)
      res.end('forbidden\n')
      return
    }
    let stat: fs.Stats | undefined
    try {
      stat = fs.statSync(file)
    } catch {
      // missing: 404 below
    }
    if (!stat || !stat.isFile()) {
      res.writeHead(404, { 'Content-Type': 'text/plain' })
      res.end('not found\n')
      return
    }
    res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Length': stat.size })
    if (req.method === 'HEAD') {
      res.end()
      return
    }
    const cut = truncations.get(k)
    if (cut && cut.left > 0 && cut.bytes < stat.size) {
      cut.left--
      // Promise the whole file, send part of it, then cut the connection.
      const partial = fs.readFileSync(file).subarray(0, cut.bytes)
      res.write(partial, () => setTimeout(() => req.socket.destroy(), 20))
      return
    }
    fs.createReadStream(file)
      .on('error', () => req.socket.destroy())
      .pipe(res)
  })

  return new Promise((resolve, reject) => {
    server.once('error', reject)
    // Loopback only, ephemeral port: nothing outside this machine can reach it.
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as AddressInfo
      resolve({
        url: `http://127.0.0.1:${port}`,
        requests,
        log,
        failNext(urlPath, status, times = 1) {
          failures.set(key(urlPath), { status, left: times })
        },
        truncate(urlPath, bytes, times = Infinity) {
          truncations.set(key(urlPath), { bytes, left: times })
        },
        redirect(urlPath, location, status = 302) {
          redirects.set(key(urlPath), { location, status })
        },
        reset() {
          failures.clear()
          truncations.clear()
          redirects.clear()
          requests.length = 0
          log.length = 0
        },
        close() {
          return new Promise<void>(done => {
            server.closeAllConnections()
            server.close(() => done())
          })
        },
      })
    })
  })
}

export interface HandlerServer {
  /** http://127.0.0.1:<port>, no trailing slash */
  url: string
  /** every request, in arrival order */
  log: RequestRecord[]
  close(): Promise<void>
}

/**
 * A loopback server whose every answer is `handler`'s: for hostile servers
 * (any path answered, stalls, auth checks). Sockets are destroyed on close,
 * so a handler that never ends its response cannot keep the test alive.
 */
export function startHandlerServer(handler: (req: http.IncomingMessage, res: http.ServerResponse) => void): Promise<HandlerServer> {
  const log: RequestRecord[] = []
  const server = http.createServer((req, res) => {
    log.push({ method: req.method ?? 'GET', path: req.url ?? '/', headers: req.headers })
    handler(req, res)
  })
  return new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as AddressInfo
      resolve({
        url: `http://127.0.0.1:${port}`,
        log,
        close: () =>
          new Promise<void>(done => {
            server.closeAllConnections()
            server.close(() => done())
          }),
      })
    })
  })
}

/** A handler that answers every GET or HEAD, whatever its path, with `file`'s bytes. */
export function serveAnyPath(file: string): (req: http.IncomingMessage, res: http.ServerResponse) => void {
  return (req, res) => {
    const size = fs.statSync(file).size
    res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Length': size })
    if (req.method === 'HEAD') res.end()
    else fs.createReadStream(file).pipe(res)
  }
}
