import { ActionError } from '../../../src/errors'
import { parseAppend } from '../../../src/buildx/append'

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
      "    name: 'node-two'",
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
      { name: 'node-two', endpoint: 'docker-context-b', platforms: ['linux/arm64', 'linux/arm/v6'], driverOpts: ['network=host'] },
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

  test('YAML the old subset parser refused is read as YAML: folded blocks, continuation lines, anchors', () => {
    expect(parseAppend('- endpoint: e\n  driver-opts: >\n    a=1\n')).toEqual([{ endpoint: 'e', platforms: [], driverOpts: ['a=1'] }])
    expect(parseAppend('- endpoint: e\n  driver-opts:\n    a=1\n')).toEqual([{ endpoint: 'e', platforms: [], driverOpts: ['a=1'] }])
    expect(parseAppend('- endpoint: &ep tcp://h:1\n- endpoint: *ep\n  name: two\n').map(n => n.endpoint)).toEqual(['tcp://h:1', 'tcp://h:1'])
  })

  test('scalars stay the text written (failsafe schema): no booleans or octal numbers', () => {
    expect(parseAppend('- endpoint: on\n  name: 0777\n')).toEqual([{ name: '0777', endpoint: 'on', platforms: [], driverOpts: [] }])
  })

  test('errors name the input and the item (or the YAML line)', () => {
    expect(err('- name: a\n  endpoint: e\n- name: b\n')).toBe(
      'append: item 2 has no endpoint; set endpoint to a docker context name or an address such as tcp://host:1234',
    )
    expect(err('- endpoint: e\n  buildkitd-flags: --debug\n')).toMatch(
      /^append: item 1 has unknown key 'buildkitd-flags'; use name, endpoint, platforms, driver-opts$/,
    )
    expect(err('endpoint: tcp://x:1\n')).toMatch(/^append: expected a YAML list of nodes/)
    expect(err('- tcp://10.0.0.5:1234\n')).toMatch(/^append: item 1 must be a map/)
    expect(err('- endpoint: a\n  endpoint: b\n')).toMatch(/^append: line 2: duplicated mapping key; /)
    expect(err('- endpoint: [a, b]\n')).toBe("append: item 1: 'endpoint' must be a single value, not a list")
    expect(err('- endpoint: e\n name: x\n')).toMatch(/^append: line 2: bad indentation/)
    expect(err('- endpoint: e\n   name: x\n')).toMatch(/^append: line 2: bad indentation of a mapping entry/)
    expect(err('- endpoint: e\n\tname: x\n')).toMatch(/^append: line 2: tab characters must not be used in indentation/)
    expect(err('- endpoint: e\n  driver-opts:\n    - a: b\n')).toMatch(/list items must be plain values, not maps/)
    expect(err('- endpoint: "e\n')).toMatch(/^append: line 2: unexpected end of the stream within a double quoted scalar/)
    expect(err('- endpoint: e\n  platforms: {a: b}\n')).toMatch(/must be a plain value or a list, not a map/)
    expect(err('-\n')).toBe('append: item 1 is empty; give it at least an endpoint')
    expect(err('  - endpoint: a\n- endpoint: b\n')).toMatch(/^append: line 2: /)
    for (const text of ['- endpoint: e\n\tname: x\n', '- endpoint: "e\n', '- endpoint: a\n  endpoint: b\n']) expect(err(text)).not.toContain('\n')
  })

  test('values that would reach docker as options or garbage are refused', () => {
    // positional on the buildx command line: never an option, whatever follows
    expect(err('- endpoint: --config=/etc/shadow\n')).toBe(
      "append: item 1: endpoint '--config=/etc/shadow' starts with '-'; give a docker context name or an address such as tcp://host:1234",
    )
    expect(err("- endpoint: '-H'\n")).toMatch(/^append: item 1: endpoint '-H' starts with '-'/)
    expect(err('- endpoint: "tcp://h:1 --debug"\n')).toMatch(/endpoint .* contains whitespace or control characters/)
    expect(err('- endpoint: e\n  name: --node\n')).toMatch(/^append: item 1: name '--node' is not a valid node name/)
    expect(err('- endpoint: e\n  platforms: linux/arm64,--push\n')).toBe("append: item 1: platform '--push' is not os/arch[/variant] such as linux/arm64")
    expect(err('- endpoint: e\n  driver-opts: memory\n')).toMatch(/^append: item 1: driver-opts entry 'memory' is not key=value/)
    expect(err('- endpoint: e\n  driver-opts: [--privileged=true]\n')).toMatch(/driver-opts entry '--privileged=true' is not key=value/)
    expect(err(`- endpoint: ${'x'.repeat(70000)}\n`)).toMatch(/^append: the input is \d+ characters; keep it under 65536$/)
  })
})
