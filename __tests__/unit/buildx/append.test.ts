import { ActionError } from '../../../src/errors'
import { parseAppend } from '../../../src/buildx/builder'

const err = (text: string): string => {
  try {
    parseAppend(text)
  } catch (e) {
    expect(e).toBeInstanceOf(ActionError)
    return (e as Error).message
  }
  throw new Error('expected parseAppend to throw')
}

describe('parseAppend', () => {
  test('the documented shape', () => {
    expect(
      parseAppend(
        [
          '- name: arm64-node',
          '  endpoint: tcp://10.0.0.5:1234',
          '  platforms: linux/arm64,linux/arm/v7',
          '  driver-opts:',
          '    - env.BUILDKIT_STEP_LOG_MAX_SIZE=10485760',
        ].join('\n'),
      ),
    ).toEqual([
      {
        name: 'arm64-node',
        endpoint: 'tcp://10.0.0.5:1234',
        platforms: ['linux/arm64', 'linux/arm/v7'],
        driverOpts: ['env.BUILDKIT_STEP_LOG_MAX_SIZE=10485760'],
      },
    ])
  })

  test('several items, lists, block text, quotes, comments, CRLF and indentation of the whole block', () => {
    const text = [
      '# extra nodes',
      '  - endpoint: "ssh://ci@10.0.0.9"   # riscv box',
      '    platforms:',
      '      - linux/riscv64',
      '      - linux/s390x, linux/ppc64le',
      '    driver-opts: |',
      '      env.A=1',
      '      env.B=2',
      '',
      '  -',
      "    name: 'node two'",
      '    endpoint: docker-context-b',
      '    platforms: [linux/arm64, "linux/arm/v6"]',
      '    driver-opts: network=host',
      '  - endpoint: tcp://10.0.0.7:2376',
      '    driver-opts: []',
    ].join('\r\n')
    expect(parseAppend(text)).toEqual([
      {
        endpoint: 'ssh://ci@10.0.0.9',
        platforms: ['linux/riscv64', 'linux/s390x', 'linux/ppc64le'],
        driverOpts: ['env.A=1', 'env.B=2'],
      },
      { name: 'node two', endpoint: 'docker-context-b', platforms: ['linux/arm64', 'linux/arm/v6'], driverOpts: ['network=host'] },
      { endpoint: 'tcp://10.0.0.7:2376', platforms: [], driverOpts: [] },
    ])
  })

  test('list items indented at the key column are fine too', () => {
    expect(parseAppend('- endpoint: e\n  driver-opts:\n  - a=1\n  - b=2\n  platforms:\n  - linux/arm64\n- endpoint: f\n')).toEqual([
      { endpoint: 'e', platforms: ['linux/arm64'], driverOpts: ['a=1', 'b=2'] },
      { endpoint: 'f', platforms: [], driverOpts: [] },
    ])
  })

  test('empty input, comments only and [] mean no nodes', () => {
    expect(parseAppend('')).toEqual([])
    expect(parseAppend('  \n# nothing\n')).toEqual([])
    expect(parseAppend('[]')).toEqual([])
  })

  test('errors name the input and the item', () => {
    expect(err('- name: a\n  endpoint: e\n- name: b\n')).toBe(
      'append: item 2 has no endpoint; set endpoint to a docker context name or an address such as tcp://host:1234',
    )
    expect(err('- endpoint: e\n  buildkitd-flags: --debug\n')).toMatch(/^append: item 1 has unknown key 'buildkitd-flags'; use name, endpoint, platforms, driver-opts$/)
    expect(err('endpoint: tcp://x:1\n')).toMatch(/^append: expected a YAML list of nodes/)
    expect(err('- tcp://10.0.0.5:1234\n')).toMatch(/^append: item 1 must be a map/)
    expect(err('- endpoint: a\n  endpoint: b\n')).toBe("append: item 1 has 'endpoint' twice")
    expect(err('- endpoint: [a, b]\n')).toBe("append: item 1: 'endpoint' must be a single value, not a list")
    expect(err('- endpoint: e\n name: x\n')).toBe('append: item 1: line 2 is not aligned with the keys above it')
    expect(err('- endpoint: e\n   name: x\n')).toMatch(/'endpoint' has a value and also indented lines under it/)
    expect(err('- endpoint: e\n\tname: x\n')).toBe('append: line 2 is indented with a tab; YAML needs spaces')
    expect(err('- endpoint: e\n  driver-opts:\n    - a: b\n')).toMatch(/list items must be plain values, not maps/)
    expect(err('- endpoint: e\n  driver-opts:\n    a=1\n')).toMatch(/must be a value on the same line or a list/)
    expect(err('- endpoint: "e\n')).toMatch(/unterminated double-quoted value/)
    expect(err('- endpoint: e\n  platforms: {a: b}\n')).toMatch(/must be a plain value or a list/)
    expect(err('- endpoint: e\n  driver-opts: >\n    a=1\n')).toMatch(/folded block/)
    expect(err('-\n')).toBe('append: item 1 is empty; give it at least an endpoint')
    expect(err('  - endpoint: a\n- endpoint: b\n')).toMatch(/line 2 is indented less/)
  })
})
