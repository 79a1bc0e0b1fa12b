// Built-in digests for the default release's assets. tonistiigi/binfmt
// publishes no checksum file, so the default download is checked against
// digests recorded here (each confirmed by independent public pins of the same
// asset). They apply only to the default source and version without a
// qemu-sha256 input: a user's qemu-sha256 always wins, and any other source or
// version is the user's to pin.

import { ChecksumList } from './checksum'
import { HostArch } from '../elf'
import { ActionError } from '../errors'
import { DEFAULT_QEMU_URL, DEFAULT_QEMU_VERSION } from '../inputs'

/** A file the emulators came from, with its digest. */
export interface FileDigest {
  /** base name, as a qemu-sha256 line names it */
  readonly name: string
  readonly sha256: string
}

/** Known digests of the default release's assets (DEFAULT_QEMU_VERSION), per host. */
const DEFAULT_RELEASE: Readonly<Record<HostArch, FileDigest | undefined>> = {
  amd64: { name: 'qemu_v10.2.3_linux-amd64.tar.gz', sha256: '8e7d8f4c0c7809fc3fea0085199fd6b16f671e7c73d9bf6bec711e1cb535920a' },
  arm64: undefined,
}

/** Which digests the downloads are checked against. */
export type Pinning =
  /** the user's qemu-sha256 */
  | { readonly kind: 'user'; readonly list: ChecksumList }
  /** the default release, with a built-in digest for this host's asset */
  | { readonly kind: 'built-in'; readonly list: ChecksumList; readonly file: FileDigest }
  /** the default release, but no digest is known for this host's asset */
  | { readonly kind: 'not-pinned'; readonly list: ChecksumList; readonly fileName: string }
  /** another source or version and no qemu-sha256: nothing to check against */
  | { readonly kind: 'none'; readonly list: ChecksumList }

/** The default release's asset name for `host` (the default URL's last segment). */
export function defaultAssetName(host: HostArch, version = DEFAULT_QEMU_VERSION): string {
  const qemu = version.replace(/-[^-]*$/, '')
  const url = DEFAULT_QEMU_URL.replace(/\{version\}/g, version)
    .replace(/\{qemu\}/g, qemu)
    .replace(/\{host\}/g, host)
  return decodeURIComponent(url.slice(url.lastIndexOf('/') + 1))
}

/**
 * The checksum list fetching must enforce: the user's qemu-sha256 when given;
 * else, for the default qemu-url and qemu-version, the built-in digest of this
 * host's asset when one is known.
 */
export function pinning(input: { qemuUrl: string; qemuVersion: string; sha256: ChecksumList }, host: HostArch): Pinning {
  if (input.sha256.size) return { kind: 'user', list: input.sha256 }
  if (input.qemuUrl !== DEFAULT_QEMU_URL || input.qemuVersion !== DEFAULT_QEMU_VERSION) return { kind: 'none', list: new Map() }
  const fileName = defaultAssetName(host)
  const known = DEFAULT_RELEASE[host]
  // A digest recorded for another asset name (the default version moved on) pins nothing.
  if (!known || known.name !== fileName) return { kind: 'not-pinned', list: new Map(), fileName }
  return { kind: 'built-in', list: new Map([[known.name, known.sha256]]), file: known }
}

/** A qemu-sha256 line for `file`, in sha256sum's format. */
export function checksumLine(file: FileDigest): string {
  return `${file.sha256}  ${file.name}`
}

/** Whether `file` was checked, in words for the summary. */
export function pinnedStatus(p: Pinning, file: FileDigest): string {
  switch (p.kind) {
    case 'user':
      return p.list.has(file.name) ? 'pinned by qemu-sha256' : 'pinned by qemu-sha256 (its emulators are listed)'
    case 'built-in':
      return file.name === p.file.name ? 'pinned by the built-in digest of the default release' : 'not pinned'
    case 'not-pinned':
      return `not pinned: no built-in digest for ${p.fileName}; check it and set qemu-sha256`
    case 'none':
      return 'not pinned: set qemu-sha256'
  }
}

/**
 * A mismatch with a built-in digest is not a wrong list of the user's: says
 * that the default release's asset is not the one pinned, and what to do.
 */
export function explainPinFailure(p: Pinning, e: unknown): unknown {
  const got = e instanceof ActionError && /checksum mismatch/.test(e.message) ? /got ([0-9a-f]{64})/.exec(e.message)?.[1] : undefined
  if (p.kind !== 'built-in' || !got) return e
  return new ActionError(
    `the default release's ${p.file.name} has sha256 ${got}, not the ${p.file.sha256} built into this action: ` +
      `the asset changed upstream or was altered on the way; nothing was registered - set qemu-version and qemu-url to a release you have checked and pin it with qemu-sha256`,
  )
}
