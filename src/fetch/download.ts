import { createHash } from 'crypto'
import { promises as fs } from 'fs'
import * as http from 'http'
import { ActionError, errorMessage } from '../errors'
import { httpTarget, redact } from './url'
import { diskError, throwIfAborted } from './limits'
import { pause } from '../timeouts'
import { Log } from '../log'

export interface NetworkPolicy {
  /** until the TCP/TLS connection is up and the response headers have arrived */
  readonly connectTimeoutMs: number
  /** longest silence while the body arrives */
  readonly idleTimeoutMs: number
  readonly attempts: number
  /** wait before the second attempt; doubled for each later one */
  readonly retryDelayMs: number
}

export const DEFAULT_NETWORK: NetworkPolicy = { connectTimeoutMs: 30000, idleTimeoutMs: 30000, attempts: 3, retryDelayMs: 3000 }

interface DownloadOptions {
  readonly maxBytes: number
  readonly network: NetworkPolicy
  readonly signal?: AbortSignal
  readonly log: Pick<Log, 'info' | 'debug' | 'progress'>
  /** what messages call the download instead of its URL: for a URL whose query is a credential (a signed URL), which must never be shown */
  readonly label?: string
}

/** A download that failed for good; `why` says how without naming the URL or an input, for callers that word their own message. */
export class DownloadError extends ActionError {
  constructor(
    message: string,
    readonly why: string,
  ) {
    super(message)
  }
}

export interface Downloaded {
  readonly sha256: string
  readonly size: number
}

/** A failure worth another attempt (network, timeout, 5xx, cut transfer), as opposed to a final answer. */
export class Transient extends Error {}

const MAX_REDIRECTS = 10
/** A slow download says how far it got this often: a plain line in a log, a progress bar on a terminal (the command). */
const PROGRESS_MS = 2000

/**
 * Downloads `location` (http or https, credentials in its userinfo sent as Basic
 * auth to its own origin only) to `dest`, which must not exist, hashing the
 * bytes as they arrive. Timeouts, retries, size limit and cancellation end it;
 * on failure `dest` is removed and the error names the URL (redacted).
 */
export async function download(location: string, dest: string, opts: DownloadOptions): Promise<Downloaded> {
  const shown = opts.label ?? redact(location)
  const { attempts, retryDelayMs } = opts.network
  for (let attempt = 1; ; attempt++) {
    try {
      return await attemptDownload(location, dest, opts)
    } catch (e) {
      await fs.rm(dest, { force: true })
      if (!(e instanceof Transient)) throw e
      if (attempt >= attempts) {
        const why = `${e.message} (after ${attempts} attempts)`
        throw new DownloadError(`qemu-url: download of ${shown} failed: ${why}; check qemu-url and the network`, why)
      }
      const wait = retryDelayMs * 2 ** (attempt - 1) * (1 + Math.random() / 2)
      opts.log.info(`Download of ${shown} failed (${e.message}); retrying in ${(wait / 1000).toFixed(1)} s`)
      await pause(wait, opts.signal)
      throwIfAborted(opts.signal)
    }
  }
}

async function attemptDownload(location: string, dest: string, opts: DownloadOptions): Promise<Downloaded> {
  const first = httpTarget(location)
  let url = first.url
  let authorization = first.authorization
  const shown = (u: URL): string => opts.label ?? redact(u.toString())
  for (let hop = 0; hop <= MAX_REDIRECTS; hop++) {
    throwIfAborted(opts.signal)
    const res = await request(url, authorization, opts)
    const status = res.statusCode ?? 0
    // A body we do not read is not drained either: a server could send it forever and keep the process alive.
    if (status >= 300 && status < 400 && res.headers.location) {
      res.destroy()
      const next = new URL(res.headers.location, url)
      if (next.protocol !== 'http:' && next.protocol !== 'https:') {
        throw new DownloadError(
          `qemu-url: ${shown(url)} redirects to a ${next.protocol} URL, which is not followed; check qemu-url`,
          `it redirects to a ${next.protocol} URL, which is not followed`,
        )
      }
      // Credentials are for the URL's own origin (as curl does): a CDN redirect must not receive them.
      if (next.origin !== url.origin) authorization = undefined
      if (next.username || next.password) {
        const t = httpTarget(next.toString())
        authorization = t.authorization
        url = t.url
      } else url = next
      opts.log.debug(`redirected to ${shown(url)}`)
      continue
    }
    if (status !== 200) {
      res.destroy()
      const why = `HTTP ${status}${res.statusMessage ? ` ${res.statusMessage}` : ''}`
      if (status >= 500 || status === 408 || status === 429) throw new Transient(why)
      const hint = status === 401 || status === 403 ? 'check the credentials in qemu-url' : 'check qemu-version and qemu-url'
      throw new DownloadError(`qemu-url: download of ${opts.label ?? redact(location)} failed: ${why}; ${hint}`, why)
    }
    return receive(res, url, dest, opts)
  }
  throw new DownloadError(
    `qemu-url: ${opts.label ?? redact(location)} redirects more than ${MAX_REDIRECTS} times; check qemu-url`,
    `it redirects more than ${MAX_REDIRECTS} times`,
  )
}

/** How a request to a URL is sent: the module's request function, through an agent. */
export interface Transport {
  readonly send: typeof http.request
  readonly agent: http.Agent
}

/**
 * How to reach `url`: through the runner's proxy settings (the toolkit's agent honours https_proxy/no_proxy).
 * @actions/http-client (with undici) and `https` (with `tls`) are loaded here, at the first request, not with
 * the action: ~25 ms that a run with nothing to download has no use for, and that would stand before the
 * builder's first command.
 */
export async function transport(url: URL): Promise<Transport> {
  const { HttpClient } = await import('@actions/http-client')
  const send = url.protocol === 'https:' ? (await import('https')).request : http.request
  return { send, agent: new HttpClient('setup-qemu-binfmt').getAgent(url.toString()) }
}

/**
 * An HTTP(S) request through a transport (transport()),
 * destroyed with a Transient failure when no answer comes within the connect timeout, and on cancellation.
 * A failure of the request reaches `reject` (as Transient, unless cancelled). `settled` stops both watches:
 * call it once the answer is in.
 */
export function openRequest(
  url: URL,
  options: { method: string; headers: http.OutgoingHttpHeaders; via: Transport },
  network: NetworkPolicy,
  signal: AbortSignal | undefined,
  reject: (e: unknown) => void,
): { req: http.ClientRequest; settled: () => void } {
  const { send, agent } = options.via
  const req = send(url, { method: options.method, headers: { 'User-Agent': 'setup-qemu-binfmt', ...options.headers }, agent })
  const timer = setTimeout(() => req.destroy(new Transient(`no response within ${network.connectTimeoutMs / 1000} s`)), network.connectTimeoutMs)
  const onAbort = (): void => void req.destroy(signal?.reason ?? new Error('aborted'))
  signal?.addEventListener('abort', onAbort, { once: true })
  const settled = (): void => {
    clearTimeout(timer)
    signal?.removeEventListener('abort', onAbort)
  }
  req.on('error', e => {
    settled()
    reject(e instanceof Transient || signal?.aborted ? e : new Transient(errorMessage(e)))
  })
  return { req, settled }
}

/** Sends the GET; resolves with the response once its headers arrive within the connect timeout. */
async function request(url: URL, authorization: string | undefined, opts: DownloadOptions): Promise<http.IncomingMessage> {
  const via = await transport(url)
  return new Promise((resolve, reject) => {
    const headers: http.OutgoingHttpHeaders = { Accept: 'application/octet-stream' }
    if (authorization) headers.Authorization = authorization
    const { req, settled } = openRequest(url, { method: 'GET', headers, via }, opts.network, opts.signal, reject)
    req.on('response', res => {
      settled()
      resolve(res)
    })
    req.end()
  })
}

/** Streams the body to `dest`, hashing it; the size limit applies before a byte is written. */
async function receive(res: http.IncomingMessage, url: URL, dest: string, opts: DownloadOptions): Promise<Downloaded> {
  const declared = Number(res.headers['content-length'])
  const shown = opts.label ?? redact(url.toString())
  const tooBig = (): ActionError =>
    new DownloadError(
      `qemu-url: ${shown} is larger than ${opts.maxBytes} bytes, the limit for one download; refusing it - check qemu-url`,
      `it is larger than ${opts.maxBytes} bytes, the limit for one download`,
    )
  if (Number.isFinite(declared) && declared > opts.maxBytes) {
    res.destroy()
    throw tooBig()
  }
  const hash = createHash('sha256')
  let size = 0
  const file = await fs.open(dest, 'wx', 0o600).catch(e => {
    res.destroy()
    throw diskError(e, dest)
  })
  // A server that sends headers then nothing must not hang the run.
  res.setTimeout(opts.network.idleTimeoutMs, () => res.destroy(new Transient(`no data for ${opts.network.idleTimeoutMs / 1000} s`)))
  const onAbort = (): void => void res.destroy(opts.signal?.reason ?? new Error('aborted'))
  opts.signal?.addEventListener('abort', onAbort, { once: true })
  // Cancelled while the file was being opened: the event has fired already, with nobody listening.
  if (opts.signal?.aborted) onAbort()
  let reported = Date.now()
  try {
    for await (const chunk of res as AsyncIterable<Buffer>) {
      size += chunk.length
      if (size > opts.maxBytes) throw tooBig()
      if (Date.now() - reported >= PROGRESS_MS) {
        reported = Date.now()
        opts.log.progress({ shown, bytes: size, declared })
      }
      hash.update(chunk)
      await file.write(chunk).catch(e => {
        throw diskError(e, dest)
      })
    }
  } catch (e) {
    res.destroy()
    if (e instanceof ActionError || e instanceof Transient || opts.signal?.aborted) throw opts.signal?.aborted ? opts.signal.reason : e
    throw new Transient(errorMessage(e))
  } finally {
    opts.signal?.removeEventListener('abort', onAbort)
    await file.close()
  }
  if (!res.complete || (Number.isFinite(declared) && size !== declared)) {
    throw new Transient(`the transfer ended after ${size} of ${Number.isFinite(declared) ? declared : '?'} bytes`)
  }
  return { sha256: hash.digest('hex'), size }
}
