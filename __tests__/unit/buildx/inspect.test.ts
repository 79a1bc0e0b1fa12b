import * as fs from 'fs'
import * as path from 'path'
import { parseInspect, parseLsJson, unionPlatforms } from '../../../src/buildx/inspect'
import { BuilderNode } from '../../../src/buildx/types'

const transcript = (name: string): string => fs.readFileSync(path.join(__dirname, 'transcripts', name), 'utf8')

describe('parseInspect', () => {
  test('docker driver, default builder (buildx 0.13.1, dockerd 20.10)', () => {
    const b = parseInspect(transcript('inspect-docker-default.txt'))
    expect(b.name).toBe('default')
    expect(b.driver).toBe('docker')
    expect(b.nodes).toEqual([
      { name: 'default', endpoint: 'default', status: 'running', buildkit: 'v0.8+unknown', platforms: ['linux/amd64', 'linux/386', 'linux/arm64'] },
    ])
  })

  test('docker-container running with current key names; Features/Labels/Devices/GC sections are skipped', () => {
    const b = parseInspect(transcript('doc-inspect-container-running.txt'))
    expect(b.name).toBe('qemu-builder')
    expect(b.driver).toBe('docker-container')
    // the indented `Name:` under Devices must not start a node
    expect(b.nodes.map(n => n.name)).toEqual(['qemu-builder0'])
    const n = b.nodes[0]
    expect(n.endpoint).toBe('unix:///var/run/docker.sock')
    expect(n.status).toBe('running')
    expect(n.buildkit).toBe('v0.20.1')
    expect(n.platforms).toContain('linux/loong64')
    expect(n.platforms).toHaveLength(13)
    expect(n.preferred).toBeUndefined()
    expect(n.error).toBeUndefined()
  })

  // Captured from a real BuildKit (v0.13.2 built from Debian sources by .ci/buildkit.sh) with buildx 0.13.1.
  const NATIVE = ['linux/amd64', 'linux/amd64/v2', 'linux/amd64/v3', 'linux/amd64/v4', 'linux/386']

  test('real docker-container node, running (buildx 0.13.1, BuildKit v0.13.2): Labels and GC Policy sections skipped', () => {
    for (const file of ['inspect-container-running.txt', 'bootstrap-container-ok.stdout.txt']) {
      const b = parseInspect(transcript(file))
      expect(b.name).toBe('qbf-cap')
      expect(b.driver).toBe('docker-container')
      expect(b.nodes).toEqual([
        { name: 'qbf-cap0', endpoint: 'unix:///var/run/docker.sock', status: 'running', buildkit: 'v0.13.2+debian26.1.5-9+deb13u1', platforms: NATIVE },
      ])
    }
  })

  test('real docker-container node at a Docker context, and one made with driver-opts, not booted yet', () => {
    expect(parseInspect(transcript('inspect-container-context.txt')).nodes).toEqual([
      { name: 'qbf-ctx0', endpoint: 'qbf-cap-ctx', status: 'running', buildkit: 'v0.13.2+debian26.1.5-9+deb13u1', platforms: NATIVE },
    ])
    expect(parseInspect(transcript('inspect-container-inactive-image.txt')).nodes).toEqual([
      { name: 'qbf-cap0', endpoint: 'unix:///var/run/docker.sock', status: 'inactive', buildkit: '', platforms: [] },
    ])
  })

  test('real remote builder with an appended node: the platform set with --platform is marked * and kept as preferred', () => {
    const b = parseInspect(transcript('inspect-remote-appended.txt'))
    expect(b.driver).toBe('remote')
    expect(b.nodes).toEqual([
      { name: 'qbf-rem0', endpoint: 'tcp://127.0.0.1:23401', status: 'running', buildkit: 'v0.13.2+debian26.1.5-9+deb13u1', platforms: NATIVE },
      {
        name: 'qbf-rem-b',
        endpoint: 'tcp://127.0.0.1:23402',
        status: 'running',
        buildkit: 'v0.13.2+debian26.1.5-9+deb13u1',
        platforms: ['linux/arm64', ...NATIVE],
        preferred: ['linux/arm64'],
      },
    ])
  })

  test('real remote builder whose appended node is down: inactive, only its declared platform', () => {
    const b = parseInspect(transcript('inspect-remote-node-down.txt'))
    expect(b.nodes.map(n => [n.name, n.status])).toEqual([
      ['qbf-rem0', 'running'],
      ['qbf-rem-b', 'running'],
      ['qbf-rem-down', 'inactive'],
    ])
    // emulators registered after this BuildKit started are listed: inspect asks it again
    expect(b.nodes[0].platforms).toEqual([...NATIVE, 'linux/arm64', 'linux/riscv64', 'linux/mips64le'])
    expect(b.nodes[2]).toEqual({
      name: 'qbf-rem-down',
      endpoint: 'tcp://127.0.0.1:1',
      status: 'inactive',
      buildkit: '',
      platforms: ['linux/s390x'],
      preferred: ['linux/s390x'],
    })
    expect(parseInspect(transcript('inspect-remote-down.txt')).nodes).toEqual([
      { name: 'qbf-rem20', endpoint: 'tcp://127.0.0.1:1', status: 'inactive', buildkit: '', platforms: [] },
    ])
  })

  test('inactive node without a Platforms line (buildx 0.13.1)', () => {
    const b = parseInspect(transcript('inspect-container-inactive.txt'))
    expect(b.name).toBe('qemu-cap')
    expect(b.nodes).toEqual([
      {
        name: 'qemu-cap0',
        endpoint: 'unix:///var/run/docker.sock',
        status: 'inactive',
        buildkit: '',
        platforms: [],
      },
    ])
  })

  test('inactive node with an empty Platforms line (older buildx)', () => {
    const b = parseInspect(transcript('doc-inspect-old-inactive.txt'))
    expect(b.name).toBe('builder-0c5e')
    expect(b.nodes).toEqual([{ name: 'builder-0c5e0', endpoint: 'unix:///var/run/docker.sock', status: 'inactive', buildkit: '', platforms: [] }])
  })

  test('older key names: Buildkit', () => {
    const b = parseInspect(transcript('doc-inspect-old-keys.txt'))
    const n = b.nodes[0]
    expect(n.buildkit).toBe('v0.11.6')
    expect(n.platforms).toContain('linux/amd64/v4')
    expect(b.nodes).toHaveLength(1)
  })

  test('the intermediate `BuildKit:` spelling, and user-set (*) platforms', () => {
    const b = parseInspect(transcript('doc-inspect-buildkit-key.txt'))
    const n = b.nodes[0]
    expect(n.buildkit).toBe('v0.10.6')
    expect(n.platforms).toEqual(['linux/arm64', 'linux/arm/v7', 'linux/arm/v6'])
    expect(n.preferred).toEqual(['linux/arm64'])
  })

  test('multi-node output: inactive nodes with user-set (*) platforms and driver options', () => {
    const b = parseInspect(transcript('inspect-multi-node.txt'))
    expect(b.nodes.map(n => [n.name, n.endpoint, n.status])).toEqual([
      ['qemu-cap0', 'unix:///var/run/docker.sock', 'inactive'],
      ['arm64-node', 'sqb-same', 'inactive'],
    ])
    expect(b.nodes[0].platforms).toEqual(['linux/amd64'])
    expect(b.nodes[0].preferred).toEqual(['linux/amd64'])
    expect(b.nodes[1].platforms).toEqual(['linux/arm64', 'linux/arm/v7'])
    expect(b.nodes[1].preferred).toEqual(['linux/arm64', 'linux/arm/v7'])
  })

  test('a node buildx could not load prints Error instead of Status', () => {
    const b = parseInspect(transcript('inspect-node-error.txt'))
    expect(b.nodes[1]).toEqual({
      name: 'arm64-node',
      endpoint: 'sqb-same',
      status: 'error',
      buildkit: '',
      platforms: [],
      error: 'Cannot connect to the Docker daemon at tcp://127.0.0.1:1. Is the docker daemon running?',
    })
    expect(parseInspect(transcript('inspect-node-context-gone.txt')).nodes[1].error).toBe('unable to parse docker host `sqb-same`')
  })

  test('CRLF line ends, a builder-level Error (not a node) and empty input', () => {
    const b = parseInspect('Name:   x\r\nDriver: docker-container\r\nError:  context deadline exceeded\r\n')
    expect(b).toEqual({ name: 'x', driver: 'docker-container', nodes: [] })
    expect(parseInspect('')).toEqual({ name: '', driver: '', nodes: [] })
  })

  test('node keys before any node Name and unknown keys are ignored', () => {
    const b = parseInspect('Name: x\nDriver: d\n\nNodes:\nStatus: running\nName: x0\nFuture Key: 1\nStatus: running\n')
    expect(b.nodes).toEqual([{ name: 'x0', endpoint: '', status: 'running', buildkit: '', platforms: [] }])
  })
})

describe('parseLsJson', () => {
  test('single running builder (documentation-only fixture)', () => {
    const b = parseLsJson(transcript('doc-ls-json-single.json'), 'qemu-builder')!
    expect(b.name).toBe('qemu-builder')
    expect(b.driver).toBe('docker-container')
    expect(b.nodes).toHaveLength(1)
    expect(b.nodes[0]).toMatchObject({
      name: 'qemu-builder0',
      endpoint: 'unix:///var/run/docker.sock',
      status: 'running',
      buildkit: 'v0.20.1',
    })
    expect(b.nodes[0].platforms).toHaveLength(13)
    expect(b.nodes[0].platforms[0]).toBe('linux/amd64')
  })

  test('real BuildKit (buildx 0.13.1, BuildKit v0.13.2): running docker-container and remote builders among others; no * in JSON', () => {
    const NATIVE = ['linux/amd64', 'linux/amd64/v2', 'linux/amd64/v3', 'linux/amd64/v4', 'linux/386']
    expect(parseLsJson(transcript('ls-json-container-running.json'), 'qbf-cap')).toEqual({
      name: 'qbf-cap',
      driver: 'docker-container',
      nodes: [{ name: 'qbf-cap0', endpoint: 'unix:///var/run/docker.sock', status: 'running', buildkit: 'v0.13.2+debian26.1.5-9+deb13u1', platforms: NATIVE }],
    })
    const remote = parseLsJson(transcript('ls-json-remote-appended.json'), 'qbf-rem')!
    expect(remote.driver).toBe('remote')
    expect(remote.nodes.map(n => [n.name, n.endpoint, n.status, n.buildkit])).toEqual([
      ['qbf-rem0', 'tcp://127.0.0.1:23401', 'running', 'v0.13.2+debian26.1.5-9+deb13u1'],
      ['qbf-rem-b', 'tcp://127.0.0.1:23402', 'running', 'v0.13.2+debian26.1.5-9+deb13u1'],
    ])
    expect(remote.nodes[1].platforms).toEqual(['linux/arm64', ...NATIVE])
    expect(remote.nodes[1].preferred).toBeUndefined()
    const down = parseLsJson(transcript('ls-json-remote-node-down.json'), 'qbf-rem')!
    expect(down.nodes[2]).toEqual({ name: 'qbf-rem-down', endpoint: 'tcp://127.0.0.1:1', status: 'inactive', buildkit: '', platforms: ['linux/s390x'] })
  })

  test('several builders, each repeated (buildx 0.13): picks the named one, keeps inactive nodes', () => {
    const text = transcript('ls-json-multi.json')
    const b = parseLsJson(text, 'qemu-cap')!
    expect(b.nodes.map(n => [n.name, n.endpoint, n.status, n.platforms])).toEqual([
      ['qemu-cap0', 'unix:///var/run/docker.sock', 'inactive', ['linux/amd64']],
      ['arm64-node', 'sqb-same', 'inactive', ['linux/arm64', 'linux/arm/v7']],
    ])
    expect(parseLsJson(text, 'default')!.nodes[0]).toEqual({
      name: 'default',
      endpoint: 'default',
      status: 'running',
      buildkit: 'v0.8+unknown',
      platforms: ['linux/amd64', 'linux/386', 'linux/arm64'],
    })
    expect(parseLsJson(text, 'missing')).toBeUndefined()
    expect(parseLsJson(transcript('ls-json-default.json'), 'default')!.driver).toBe('docker')
  })

  test('node errors', () => {
    const text = transcript('ls-json-node-error.json')
    expect(parseLsJson(text, 'qemu-cap')!.nodes[1]).toMatchObject({
      name: 'arm64-node',
      status: 'error',
      error: 'Cannot connect to the Docker daemon at tcp://127.0.0.1:1. Is the docker daemon running?',
    })
  })

  test('tolerates missing fields, other spellings, platform objects and stray lines', () => {
    const text = [
      'WARNING: something unrelated',
      '{"Name":"b","Nodes":[{"Name":"b0","BuildkitVersion":"v0.9.0","Platforms":[{"os":"linux","architecture":"arm","variant":"v7"},{"os":"linux","architecture":"amd64"}]},{}],"LastActivity":"0001-01-01T00:00:00Z"}',
      '{not json',
    ].join('\n')
    const b = parseLsJson(text, 'b')!
    expect(b.driver).toBe('')
    expect(b.nodes[0]).toEqual({ name: 'b0', endpoint: '', status: '', buildkit: 'v0.9.0', platforms: ['linux/arm/v7', 'linux/amd64'] })
    expect(b.nodes[1]).toEqual({ name: '', endpoint: '', status: '', buildkit: '', platforms: [] })
  })

  test('a JSON array is accepted; non-JSON output gives undefined', () => {
    expect(parseLsJson('[{"Name":"a","Driver":"docker","Nodes":[]}]', 'a')).toEqual({ name: 'a', driver: 'docker', nodes: [] })
    expect(parseLsJson('NAME/NODE DRIVER/ENDPOINT STATUS\nqemu-builder docker-container', 'qemu-builder')).toBeUndefined()
    expect(parseLsJson('', 'x')).toBeUndefined()
  })
})

describe('unionPlatforms', () => {
  const node = (platforms: string[], preferred?: string[]): BuilderNode => ({
    name: 'n',
    endpoint: 'e',
    status: 'running',
    buildkit: '',
    platforms,
    ...(preferred ? { preferred } : {}),
  })

  test('preferred platforms first, then node order, no duplicates', () => {
    const nodes = [
      node(['linux/amd64', 'linux/386', 'linux/arm64']),
      node(['linux/arm64', 'linux/arm/v7', 'linux/arm/v6'], ['linux/arm64', 'linux/arm/v7']),
      node([]),
    ]
    expect(unionPlatforms(nodes)).toEqual(['linux/arm64', 'linux/arm/v7', 'linux/amd64', 'linux/386', 'linux/arm/v6'])
  })

  test('from a parsed multi-node transcript', () => {
    const b = parseInspect(transcript('inspect-multi-node.txt'))
    expect(unionPlatforms(b.nodes)).toEqual(['linux/amd64', 'linux/arm64', 'linux/arm/v7'])
  })

  test('strips a stray * and ignores empties', () => {
    expect(unionPlatforms([node(['linux/s390x*', '', 'linux/s390x'])])).toEqual(['linux/s390x'])
    expect(unionPlatforms([])).toEqual([])
  })
})
