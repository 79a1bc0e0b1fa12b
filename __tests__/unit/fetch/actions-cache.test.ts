import { parsePending, saveKey } from '../../../src/fetch/actions-cache'

// What the Actions cache entry is called and what post trusts of main's state.

const A = 'a'.repeat(64)
const B = 'b'.repeat(64)

test('a key names what the entry holds, whatever the order; after a bad entry it is new each time', () => {
  const key = saveKey('p', [{ slot: 'archive', sha256: A }], false)
  expect(key).toMatch(/^p-[0-9a-f]{16}$/)
  expect(saveKey('p', [{ slot: 'archive', sha256: A }], false)).toBe(key)
  expect(saveKey('p', [{ slot: 'archive', sha256: B }], false)).not.toBe(key)
  expect(
    saveKey(
      'p',
      [
        { slot: 'arm', sha256: A },
        { slot: 'aarch64', sha256: B },
      ],
      false,
    ),
  ).toBe(
    saveKey(
      'p',
      [
        { slot: 'aarch64', sha256: B },
        { slot: 'arm', sha256: A },
      ],
      false,
    ),
  )
  expect(saveKey('p', [{ slot: 'archive', sha256: A }], true)).toMatch(new RegExp(`^${key}-[0-9a-z]+$`))
})

test("post takes main's state only whole, and only slots that are plain names", () => {
  const ok = { dir: '/t/source', key: 'p-1', files: [{ slot: 'archive', sha256: A }] }
  expect(parsePending(JSON.stringify(ok))).toEqual(ok)
  expect(parsePending('')).toBeUndefined()
  expect(parsePending('{')).toBeUndefined()
  expect(parsePending(JSON.stringify({ dir: '/t/source', key: 'p-1' }))).toBeUndefined()
  expect(parsePending(JSON.stringify({ ...ok, files: [{ slot: '../etc/passwd', sha256: A }] }))).toBeUndefined()
})
