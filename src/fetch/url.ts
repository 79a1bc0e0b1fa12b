/**
 * Credentials in a URL (`https://user:token@host/...`): never shown, sent only
 * as HTTP Basic authentication to the URL's own origin.
 */

const USERINFO = /^([a-z][a-z0-9+.-]*:\/\/)([^/?#@]*@)/i

/** The URL or path with any userinfo replaced by `***@`: safe for logs, errors, summary, manifest and cache keys. */
export function redact(location: string): string {
  return location.replace(USERINFO, (_m, scheme: string) => `${scheme}***@`)
}

interface HttpTarget {
  /** the URL without userinfo: what is requested */
  readonly url: URL
  /** `Basic ...` when the URL carried credentials */
  readonly authorization?: string
}

/** Splits userinfo off a URL; the password (or token) is what a log must never show. */
export function httpTarget(location: string): HttpTarget & { secrets: string[] } {
  const url = new URL(location)
  if (!url.username && !url.password) return { url, secrets: [] }
  const user = decodeURIComponent(url.username)
  const pass = decodeURIComponent(url.password)
  url.username = ''
  url.password = ''
  const token = Buffer.from(`${user}:${pass}`).toString('base64')
  return { url, authorization: `Basic ${token}`, secrets: [user, pass, token].filter(s => s.length >= 3) }
}

/** Name of the file behind a URL or path, as a qemu-sha256 line names it: a label only, never a path to write to. */
export function fileNameOf(location: string): string {
  try {
    const p = new URL(location).pathname
    const last = p.slice(p.lastIndexOf('/') + 1)
    return decodeURIComponent(last)
  } catch {
    return location.slice(location.lastIndexOf('/') + 1)
  }
}
