import { ChecksumPolicy, parseChecksums } from '../../../src/fetch/checksum'
import { VersionScanner } from '../../../src/fetch/emulator-file'
import { toolVersion } from '../../../src/fetch'
import { settleAll } from '../../../src/fetch/limits'
import { EmulatorWant, pickEmulators } from '../../../src/plan'

// The fetch side's pure pieces; fetching real archives is in __tests__/integration/fetch-local.test.ts.

const list = (...names: string[]): EmulatorWant => ({ names, required: true })
const ALL: EmulatorWant = { names: ['aarch64', 'arm', 'riscv64', 'mips64el', 's390x'], required: false }

describe('plan: what to fetch is data', () => {
  test('a list is required as is; all is what the source offers of the wanted names', () => {
    expect(pickEmulators(list('arm', 'aarch64'), undefined)).toEqual(['arm', 'aarch64'])
    expect(pickEmulators(ALL, undefined)).toBeUndefined()
    expect(pickEmulators(ALL, ['riscv64', 'x86_64', 'arm'])).toEqual(['arm', 'riscv64'])
  })
})

describe('ChecksumPolicy', () => {
  const A = 'a'.repeat(64)
  const B = 'b'.repeat(64)
  test('one wording for a missing line; emulators covered by their own line or their file', () => {
    const none = new ChecksumPolicy(new Map())
    none.checkFile({ name: 'x.tar.gz', sha256: A }, false)
    const p = new ChecksumPolicy(parseChecksums(`${A}  x.tar.gz\n${B}  qemu-arm-static`))
    p.checkFile({ name: 'x.tar.gz', sha256: A }, false)
    expect(() => p.checkFile({ name: 'y.tar.gz', sha256: B }, false)).toThrow(
      `qemu-sha256: no line for y.tar.gz; add '${B}  y.tar.gz' once you have checked the file`,
    )
    p.checkFile({ name: 'qemu-aarch64', sha256: A }, true)
    p.checkEmulator('aarch64', B, { name: 'x.tar.gz', sha256: A })
    p.checkEmulator('arm', B, { name: 'qemu-arm-static', sha256: B })
    expect(() => p.checkEmulator('arm', A, { name: 'x.tar.gz', sha256: A })).toThrow(/^qemu-sha256: checksum mismatch for qemu-arm: expected b{64}, got a{64}/)
    expect(() => p.checkEmulator('riscv64', A, { name: 'qemu-riscv64', sha256: A })).toThrow(
      `qemu-sha256: no line for qemu-riscv64; add '${A}  qemu-riscv64' once you have checked the file`,
    )
  })
})

describe('VersionScanner', () => {
  test('finds the --version line across chunk boundaries', () => {
    const text = Buffer.from(`\0\0junk qemu-arm version 7.2.22 (Debian 1:7.2+dfsg-7)\0more`)
    for (let cut = 1; cut < text.length; cut += 3) {
      const s = new VersionScanner('arm')
      s.update(text.subarray(0, cut))
      s.update(text.subarray(cut))
      expect(s.version).toBe('qemu-arm version 7.2.22 (Debian 1:7.2+dfsg-7)')
    }
    const none = new VersionScanner('arm')
    none.update(Buffer.from('qemu-aarch64 version 1'))
    expect(none.version).toBeUndefined()
  })
})

describe('settleAll (one target per download: the first failure stops the others)', () => {
  const after = <T>(ms: number, f: () => T): Promise<T> =>
    new Promise((resolve, reject) =>
      setTimeout(() => {
        try {
          resolve(f())
        } catch (e) {
          reject(e)
        }
      }, ms),
    )

  test('rejects with the first failure in time, after every sibling has settled, and aborts the rest', async () => {
    const stop = new AbortController()
    const events: string[] = []
    const jobs = [
      after(200, () => events.push('slow sibling finished')),
      after(20, () => {
        throw new Error('HTTP 404')
      }),
      after(60, () => {
        events.push(`later failure (stop ${stop.signal.aborted ? 'aborted' : 'not aborted'})`)
        throw new Error('aborted')
      }),
    ]
    await expect(settleAll(jobs, stop).catch(e => (events.push(`rejected: ${e.message}`), Promise.reject(e)))).rejects.toThrow('HTTP 404')
    expect(events).toEqual(['later failure (stop aborted)', 'slow sibling finished', 'rejected: HTTP 404'])
    expect((stop.signal.reason as Error).message).toBe('HTTP 404')
  })

  test('all fine: the values in order, nothing aborted', async () => {
    const stop = new AbortController()
    await expect(settleAll([after(30, () => 'a'), after(5, () => 'b')], stop)).resolves.toEqual(['a', 'b'])
    expect(stop.signal.aborted).toBe(false)
  })
})

describe('tool-cache versions', () => {
  test.each([['7.2.0-1'], ['10.2.3-68'], ['1.2.3-rc.1'], ['8.2.1-1']])('%s is semver: kept as it is, so find() sees it', v => {
    expect(toolVersion(v)).toBe(v)
  })
  test.each([['7.2.0-01'], ['01.2.3'], ['1:8.2.1+ds-1'], ['v10.0']])('%s is not semver: a stable stand-in under 0.0.0', v => {
    expect(toolVersion(v)).toMatch(/^0\.0\.0-v[0-9a-f]{12}$/)
    expect(toolVersion(v)).toBe(toolVersion(v))
  })
})
