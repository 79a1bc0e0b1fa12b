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
