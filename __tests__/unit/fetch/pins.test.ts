import { ActionError } from '../../../src/errors'
import { DEFAULT_QEMU_URL, DEFAULT_QEMU_VERSION } from '../../../src/inputs'
import { checksumLine, defaultAssetName, explainPinFailure, pinnedStatus, pinning } from '../../../src/fetch/pins'
import { checksumRows } from '../../../src/report'
import { checkDigest, parseChecksums } from '../../../src/fetch/checksum'

const AMD64_SHA = '8e7d8f4c0c7809fc3fea0085199fd6b16f671e7c73d9bf6bec711e1cb535920a'
const AMD64_FILE = 'qemu_v10.2.3_linux-amd64.tar.gz'
const defaults = { qemuUrl: DEFAULT_QEMU_URL, qemuVersion: DEFAULT_QEMU_VERSION, sha256: new Map<string, string>() }
const user = parseChecksums(`${'a'.repeat(64)}  mine.tar.gz`)

describe('pinning: which digests the download must match', () => {
  test('the default source and version on amd64: the built-in digest of that asset', () => {
    const p = pinning(defaults, 'amd64')
    expect(p.kind).toBe('built-in')
    expect([...p.list]).toEqual([[AMD64_FILE, AMD64_SHA]])
  })

  test('the built-in digest names the asset the default URL and version resolve to', () => {
    expect(defaultAssetName('amd64')).toBe(AMD64_FILE)
    expect(defaultAssetName('arm64')).toBe('qemu_v10.2.3_linux-arm64.tar.gz')
  })

  test('the default source and version on arm64: not pinned, nothing enforced, the asset named', () => {
    const p = pinning(defaults, 'arm64')
    expect(p).toEqual({ kind: 'not-pinned', list: new Map(), fileName: 'qemu_v10.2.3_linux-arm64.tar.gz' })
  })

  test("a user's qemu-sha256 wins, also for the default source and version", () => {
    for (const host of ['amd64', 'arm64'] as const) {
      const p = pinning({ ...defaults, sha256: user }, host)
      expect(p).toEqual({ kind: 'user', list: user })
    }
  })

  test('another qemu-version: no built-in digest applies', () => {
    expect(pinning({ ...defaults, qemuVersion: '10.0.4-56' }, 'amd64')).toEqual({ kind: 'none', list: new Map() })
  })

  test('another qemu-url: no built-in digest applies, even for the same file name', () => {
    const mirror = 'https://mirror.example/binfmt/qemu_v{qemu}_linux-{host}.tar.gz'
    expect(pinning({ ...defaults, qemuUrl: mirror }, 'amd64')).toEqual({ kind: 'none', list: new Map() })
    expect(pinning({ ...defaults, qemuUrl: '/usr/bin' }, 'amd64')).toEqual({ kind: 'none', list: new Map() })
  })
})

describe('summary lines', () => {
  const file = { name: AMD64_FILE, sha256: AMD64_SHA }

  test('sha256sum format: digest, two spaces, file name', () => {
    expect(checksumLine(file)).toBe(`${AMD64_SHA}  ${AMD64_FILE}`)
    // What the summary shows is what qemu-sha256 accepts.
    expect([...parseChecksums(checksumLine(file))]).toEqual([[AMD64_FILE, AMD64_SHA]])
  })

  test('says for each file whether and how it was pinned', () => {
    expect(pinnedStatus(pinning(defaults, 'amd64'), file)).toBe('pinned by the built-in digest of the default release')
    expect(pinnedStatus(pinning({ ...defaults, sha256: parseChecksums(checksumLine(file)) }, 'amd64'), file)).toBe('pinned by qemu-sha256')
    expect(pinnedStatus(pinning(defaults, 'arm64'), { name: 'qemu_v10.2.3_linux-arm64.tar.gz', sha256: 'b'.repeat(64) })).toBe(
      'not pinned: no built-in digest for qemu_v10.2.3_linux-arm64.tar.gz; check it and set qemu-sha256',
    )
    expect(pinnedStatus(pinning({ ...defaults, qemuVersion: '9.2.2-52' }, 'amd64'), file)).toBe('not pinned: set qemu-sha256')
  })

  test('rows are sorted by file name', () => {
    const rows = checksumRows(
      [
        { name: 'qemu-arm', sha256: 'c'.repeat(64) },
        { name: 'qemu-aarch64', sha256: 'd'.repeat(64) },
      ],
      { kind: 'none', list: new Map() },
    )
    expect(rows.map(r => r.line)).toEqual([`${'d'.repeat(64)}  qemu-aarch64`, `${'c'.repeat(64)}  qemu-arm`])
  })
})

describe('explainPinFailure', () => {
  // The error fetching raises for a digest that differs from the list's.
  const mismatch = ((): unknown => {
    try {
      checkDigest(pinning(defaults, 'amd64').list, AMD64_FILE, 'e'.repeat(64), AMD64_FILE)
    } catch (e) {
      return e
    }
    throw new Error('checkDigest accepted a wrong digest')
  })()

  test('a mismatch with the built-in digest says the default asset is not the pinned one', () => {
    const e = explainPinFailure(pinning(defaults, 'amd64'), mismatch) as Error
    expect(e).toBeInstanceOf(ActionError)
    expect(e.message).toBe(
      `the default release's ${AMD64_FILE} has sha256 ${'e'.repeat(64)}, not the ${AMD64_SHA} built into this action: ` +
        'the asset changed upstream or was altered on the way; nothing was registered - set qemu-version and qemu-url to a release you have checked and pin it with qemu-sha256',
    )
  })

  test("the user's own list and other errors pass through unchanged", () => {
    expect(explainPinFailure(pinning({ ...defaults, sha256: user }, 'amd64'), mismatch)).toBe(mismatch)
    const other = new ActionError('qemu-url: download of x failed: HTTP 404; check qemu-version and qemu-url')
    expect(explainPinFailure(pinning(defaults, 'amd64'), other)).toBe(other)
  })
})
