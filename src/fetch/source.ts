import * as fs from 'fs'
import * as path from 'path'
import { fileURLToPath } from 'url'
import { ActionError } from '../errors'
import { HostArch } from '../elf'
import { redact } from './url'

const PLACEHOLDERS = ['version', 'qemu', 'host', 'target'] as const

/**
 * Where emulators come from, resolved from the `qemu-url` template. An archive
 * source holds every emulator in one file; a per-target source (`{target}` in the
 * template) is one file per emulator. Local sources need no download.
 */
export interface EmulatorSource {
  /** the template with {version}, {qemu} and {host} filled in, credentials redacted: identifies the source in cache keys and messages */
  readonly id: string
  readonly perTarget: boolean
  /** a local directory or file (plain path or file:// URL) rather than an HTTP(S) URL */
  readonly local: boolean
  /** the template names the version ({version} or {qemu}): else the qemu-version input says nothing of what it holds */
  readonly versioned: boolean
  /** URL or local path of the file holding `target`'s emulator (target ignored for archive sources) */
  locate(target?: string): string
}

export function resolveSource(template: string, version: string, host: HostArch): EmulatorSource {
  for (const m of template.matchAll(/\{([^}]*)\}/g)) {
    if (!(PLACEHOLDERS as readonly string[]).includes(m[1])) {
      throw new ActionError(`qemu-url: unknown placeholder {${m[1]}}; use ${PLACEHOLDERS.map(p => `{${p}}`).join(', ')}`)
    }
  }
  const qemu = version.replace(/-[^-]*$/, '')
  const filled = template
    .replace(/\{version\}/g, version)
    .replace(/\{qemu\}/g, qemu)
    .replace(/\{host\}/g, host)
  const perTarget = filled.includes('{target}')
  const versioned = /\{(version|qemu)\}/.test(template)
  const locate = (target?: string): string => (perTarget ? filled.replace(/\{target\}/g, target ?? '') : filled)

  const scheme = /^([a-zA-Z][a-zA-Z0-9+.-]*):/.exec(filled)?.[1].toLowerCase()
  if (scheme === 'http' || scheme === 'https') {
    try {
      new URL(locate('x'))
    } catch {
      throw new ActionError(`qemu-url: '${redact(template)}' is not a valid URL; use https://..., file://... or a local path`)
    }
    return { id: redact(filled), perTarget, local: false, versioned, locate }
  }
  if (scheme === 'file') {
    let p: string
    try {
      p = fileURLToPath(filled.replace(/\{target\}/g, '__TARGET__'))
    } catch {
      throw new ActionError(`qemu-url: '${redact(template)}' is not a valid file:// URL; use file:///absolute/path`)
    }
    return localSource(p)
  }
  if (scheme && scheme.length > 1) {
    throw new ActionError(`qemu-url: unsupported scheme '${scheme}:' in '${redact(template)}'; use https://, http://, file:// or a local path`)
  }
  return localSource(filled.replace(/\{target\}/g, '__TARGET__'))

  function localSource(p: string): EmulatorSource {
    const abs = path.resolve(p)
    return {
      id: `file:${abs}`,
      perTarget,
      local: true,
      versioned,
      locate: (target?: string) => (perTarget ? abs.replace(/__TARGET__/g, target ?? '') : abs),
    }
  }
}

/** For a local directory source: the emulator files in it, by QEMU target name (qemu-T-static preferred over qemu-T). */
export function scanDirectory(dir: string): Map<string, string> {
  const found = new Map<string, string>()
  let names: string[]
  try {
    names = fs.readdirSync(dir)
  } catch (e) {
    throw new ActionError(`qemu-url: cannot read directory ${dir} (${(e as NodeJS.ErrnoException).code}); check the path`)
  }
  for (const name of names.sort()) {
    const m = /^qemu-(.+?)(-static)?$/.exec(name)
    if (!m) continue
    const file = path.join(dir, name)
    if (m[2] || !found.has(m[1])) {
      try {
        if (fs.statSync(file).isFile()) found.set(m[1], file)
      } catch {
        // dangling link: not an emulator
      }
    }
  }
  return found
}
