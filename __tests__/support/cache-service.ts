// A stand-in for the GitHub Actions cache service (v2) on 127.0.0.1, for integration tests:
// the Twirp JSON endpoints @actions/cache calls, with the blob side served by Azurite
// (Microsoft's Azure Storage emulator) behind signed (SAS) URLs, as the real service
// hands out signed Azure Blob URLs. The action under test gets the environment a runner
// gives it (cacheEnv()), so @actions/cache speaks to this exactly as it would on GitHub.
//
// Shapes checked against @actions/cache's generated client
// (lib/generated/results/api/v1/cache.js): requests and responses are protobuf JSON with
// the proto field names (useProtoFieldName), i.e. snake_case.
import { ChildProcess, spawn } from 'child_process'
import * as fs from 'fs'
import * as http from 'http'
import * as net from 'net'
import * as os from 'os'
import * as path from 'path'
import { BlobSASPermissions, BlobServiceClient, StorageSharedKeyCredential, generateBlobSASQueryParameters } from '@azure/storage-blob'

const SERVICE = '/twirp/github.actions.results.api.v1.CacheService/'
export const METHODS = ['CreateCacheEntry', 'FinalizeCacheEntryUpload', 'GetCacheEntryDownloadURL'] as const
export type Method = (typeof METHODS)[number]

// Azurite's well-known development account (public, documented by Microsoft).
const ACCOUNT = 'devstoreaccount1'
const ACCOUNT_KEY = 'Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=='
const CONTAINER = 'actions-cache'
const AZURITE = path.resolve(__dirname, '..', '..', 'node_modules', 'azurite', 'dist', 'src', 'blob', 'main.js')

export interface CacheRequest {
  method: Method
  /** the JSON body as sent */
  body: Record<string, unknown>
  /** whether the Authorization header carried the runtime token */
  authorized: boolean
}

export interface CacheEntry {
  key: string
  version: string
  blob: string
  finalized: boolean
  sizeBytes?: number
}

export class CacheService {
  /** every Twirp call in arrival order */
  readonly requests: CacheRequest[] = []
  readonly entries: CacheEntry[] = []
  private readonly failures = new Map<Method, { status: number; left: number }>()
  private nextBlob = 1

  private constructor(
    private readonly server: http.Server,
    private readonly azurite: ChildProcess,
    private readonly blobEndpoint: string,
    private readonly workdir: string,
    readonly url: string,
    readonly token: string,
  ) {}

  static async start(): Promise<CacheService> {
    const workdir = fs.mkdtempSync(path.join(os.tmpdir(), 'cache-service-'))
    // Port 0: Azurite binds a free port itself and says which (a port found free here could be taken before Azurite binds it).
    const azurite = spawn(
      process.execPath,
      [AZURITE, '--blobHost', '127.0.0.1', '--blobPort', '0', '--location', workdir, '--silent', '--skipApiVersionCheck', '--disableTelemetry'],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    )
    try {
      const blobPort = await waitForListening(azurite, 30000)
      // Keep draining its output: a full pipe would block it.
      azurite.stdout?.resume()
      azurite.stderr?.resume()
      const blobEndpoint = `http://127.0.0.1:${blobPort}/${ACCOUNT}`
      await blobService(blobEndpoint).getContainerClient(CONTAINER).createIfNotExists()
      const token = `test-runtime-token-${process.pid}-${Date.now()}`
      // Requests come only once the address is handed out, after `service` exists.
      const server = http.createServer((req, res) => void service.handle(req, res))
      await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
      const { port } = server.address() as net.AddressInfo
      const service = new CacheService(server, azurite, blobEndpoint, workdir, `http://127.0.0.1:${port}/`, token)
      return service
    } catch (e) {
      azurite.kill('SIGKILL')
      fs.rmSync(workdir, { recursive: true, force: true })
      throw e
    }
  }

  /** What a runner gives a job that may use the cache service v2. */
  env(): Record<string, string> {
    return { ACTIONS_CACHE_SERVICE_V2: 'True', ACTIONS_RESULTS_URL: this.url, ACTIONS_RUNTIME_TOKEN: this.token }
  }

  /** Answer the next `times` calls of `method` with `status` (Twirp error JSON), then normally. */
  failNext(method: Method, status: number, times = 1): void {
    this.failures.set(method, { status, left: times })
  }

  calls(method: Method): CacheRequest[] {
    return this.requests.filter(r => r.method === method)
  }

  /** Replaces the stored archive of `key` with `bytes` (e.g. garbage). */
  async overwrite(key: string, bytes: Buffer): Promise<void> {
    const entry = this.entries.find(e => e.key === key && e.finalized)
    if (!entry) throw new Error(`no finalized cache entry for ${key}`)
    await blobService(this.blobEndpoint).getContainerClient(CONTAINER).getBlockBlobClient(entry.blob).upload(bytes, bytes.length)
  }

  /** The stored archive of `key`. */
  async read(key: string): Promise<Buffer> {
    const entry = this.entries.find(e => e.key === key && e.finalized)
    if (!entry) throw new Error(`no finalized cache entry for ${key}`)
    return blobService(this.blobEndpoint).getContainerClient(CONTAINER).getBlockBlobClient(entry.blob).downloadToBuffer()
  }

  async stop(): Promise<void> {
    const closed = new Promise<void>(resolve => this.server.close(() => resolve()))
    this.server.closeAllConnections()
    await closed
    if (this.azurite.exitCode === null) {
      const exited = new Promise(resolve => this.azurite.once('exit', resolve))
      this.azurite.kill('SIGTERM')
      await Promise.race([exited, new Promise(resolve => setTimeout(resolve, 5000))])
      if (this.azurite.exitCode === null) this.azurite.kill('SIGKILL')
    }
    fs.rmSync(this.workdir, { recursive: true, force: true })
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const chunks: Buffer[] = []
    let size = 0
    for await (const c of req as AsyncIterable<Buffer>) {
      size += c.length
      if (size > 1 << 20) return twirpError(res, 400, 'malformed', 'body too large')
      chunks.push(c)
    }
    const url = req.url ?? ''
    const method = url.startsWith(SERVICE) ? (url.slice(SERVICE.length) as Method) : undefined
    if (req.method !== 'POST' || !method || !METHODS.includes(method)) return twirpError(res, 404, 'bad_route', `no handler for ${req.method} ${url}`)
    let body: Record<string, unknown>
    try {
      body = JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}') as Record<string, unknown>
    } catch {
      return twirpError(res, 400, 'malformed', 'the body is not JSON')
    }
    const authorized = req.headers.authorization === `Bearer ${this.token}`
    this.requests.push({ method, body, authorized })
    if (!authorized) return twirpError(res, 401, 'unauthenticated', 'a valid runtime token is required')
    if (!/^application\/json/.test(req.headers['content-type'] ?? '')) return twirpError(res, 415, 'malformed', 'JSON only')

    const failure = this.failures.get(method)
    if (failure && failure.left > 0) {
      failure.left--
      return twirpError(res, failure.status, 'internal', 'injected failure')
    }

    const key = str(body.key)
    const version = str(body.version)
    if (!key || !version) return twirpError(res, 400, 'invalid_argument', 'key and version are required')
    switch (method) {
      case 'CreateCacheEntry': {
        // What GitHub's service answers for an existing entry (@actions/cache logs it at info level).
        if (this.entries.some(e => e.key === key && e.version === version)) {
          return twirpError(res, 409, 'already_exists', 'cache entry with the same key, version, and scope already exists')
        }
        const blob = `entry-${this.nextBlob++}`
        this.entries.push({ key, version, blob, finalized: false })
        return json(res, { ok: true, signed_upload_url: this.sas(blob, 'cw') })
      }
      case 'FinalizeCacheEntryUpload': {
        const entry = this.entries.find(e => e.key === key && e.version === version && !e.finalized)
        if (!entry) return json(res, { ok: false, message: `no upload in progress for ${key}` })
        entry.finalized = true
        entry.sizeBytes = Number(body.size_bytes)
        return json(res, { ok: true, entry_id: String(this.entries.indexOf(entry) + 1) })
      }
      case 'GetCacheEntryDownloadURL': {
        const restoreKeys = Array.isArray(body.restore_keys) ? body.restore_keys.map(str) : []
        const ready = this.entries.filter(e => e.finalized && e.version === version)
        // exact key first, then the newest entry whose key starts with a restore key, in order
        const hit =
          ready.find(e => e.key === key) ??
          restoreKeys.map(k => [...ready].reverse().find(e => e.key.startsWith(k))).find((e): e is CacheEntry => e !== undefined)
        if (!hit) return json(res, { ok: false })
        return json(res, { ok: true, signed_download_url: this.sas(hit.blob, 'r'), matched_key: hit.key })
      }
    }
  }

  private sas(blob: string, permissions: string): string {
    const q = generateBlobSASQueryParameters(
      {
        containerName: CONTAINER,
        blobName: blob,
        permissions: BlobSASPermissions.parse(permissions),
        expiresOn: new Date(Date.now() + 60 * 60 * 1000),
      },
      new StorageSharedKeyCredential(ACCOUNT, ACCOUNT_KEY),
    )
    return `${this.blobEndpoint}/${CONTAINER}/${blob}?${q.toString()}`
  }
}

function blobService(endpoint: string): BlobServiceClient {
  return new BlobServiceClient(endpoint, new StorageSharedKeyCredential(ACCOUNT, ACCOUNT_KEY))
}

function str(v: unknown): string {
  return typeof v === 'string' ? v : ''
}

function json(res: http.ServerResponse, body: unknown): void {
  const text = JSON.stringify(body)
  res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) })
  res.end(text)
}

function twirpError(res: http.ServerResponse, status: number, code: string, msg: string): void {
  const text = JSON.stringify({ code, msg })
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) })
  res.end(text)
}

/** Resolves with the port Azurite says it listens on; rejects with its output if it exits or takes too long. */
function waitForListening(child: ChildProcess, timeoutMs: number): Promise<number> {
  return new Promise((resolve, reject) => {
    let output = ''
    const timer = setTimeout(() => done(new Error(`azurite did not start within ${timeoutMs / 1000} s: ${output}`)), timeoutMs)
    const onData = (d: Buffer): void => {
      output += d.toString()
      const m = /successfully listens? (?:on|at) http:\/\/127\.0\.0\.1:(\d+)\s/i.exec(output)
      if (m) done(undefined, Number(m[1]))
    }
    const onExit = (code: number | null): void => done(new Error(`azurite exited (${code}) before listening: ${output}`))
    function done(e?: Error, port?: number): void {
      clearTimeout(timer)
      child.stdout?.off('data', onData)
      child.stderr?.off('data', onData)
      child.off('exit', onExit)
      if (e || port === undefined) reject(e)
      else resolve(port)
    }
    child.stdout?.on('data', onData)
    child.stderr?.on('data', onData)
    child.once('exit', onExit)
  })
}
