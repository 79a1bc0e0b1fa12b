import { appendArgs, bootstrapArgs, createArgs, inspectArgs, lsJsonArgs, rmArgs, useArgs, versionArgs } from '../../../src/buildx/commands'

describe('createArgs', () => {
  test('everything set, in order', () => {
    expect(
      createArgs(
        {
          name: 'qemu-builder',
          driver: 'docker-container',
          endpoint: '',
          driverOpts: ['image=mirror.gcr.io/moby/buildkit:buildx-stable-1', 'network=host'],
          buildkitdFlags: '--debug --allow-insecure-entitlement security.insecure',
          use: true,
        },
        '/tmp/x/buildkitd-qemu-builder.toml',
      ),
    ).toEqual([
      'buildx',
      'create',
      '--name',
      'qemu-builder',
      '--node',
      'qemu-builder0',
      '--driver',
      'docker-container',
      '--driver-opt',
      'image=mirror.gcr.io/moby/buildkit:buildx-stable-1',
      '--driver-opt',
      'network=host',
      '--buildkitd-flags',
      '--debug --allow-insecure-entitlement security.insecure',
      '--config',
      '/tmp/x/buildkitd-qemu-builder.toml',
      '--use',
    ])
  })

  test('minimal: no options, no config, no --use, never --platform', () => {
    expect(createArgs({ name: 'b', driver: 'docker-container', endpoint: '', driverOpts: [], buildkitdFlags: '', use: false })).toEqual([
      'buildx',
      'create',
      '--name',
      'b',
      '--node',
      'b0',
      '--driver',
      'docker-container',
    ])
  })
})

describe('appendArgs', () => {
  test('with node name, platforms and driver opts; endpoint last', () => {
    expect(
      appendArgs('qemu-builder', {
        name: 'arm64-node',
        endpoint: 'tcp://10.0.0.5:1234',
        platforms: ['linux/arm64', 'linux/arm/v7'],
        driverOpts: ['env.BUILDKIT_STEP_LOG_MAX_SIZE=10485760'],
      }),
    ).toEqual([
      'buildx',
      'create',
      '--append',
      '--name',
      'qemu-builder',
      '--node',
      'arm64-node',
      '--platform',
      'linux/arm64,linux/arm/v7',
      '--driver-opt',
      'env.BUILDKIT_STEP_LOG_MAX_SIZE=10485760',
      '--',
      'tcp://10.0.0.5:1234',
    ])
  })

  test('endpoint only', () => {
    expect(appendArgs('b', { endpoint: 'ssh://ci@10.0.0.9', platforms: [], driverOpts: [] })).toEqual([
      'buildx',
      'create',
      '--append',
      '--name',
      'b',
      '--',
      'ssh://ci@10.0.0.9',
    ])
  })

  test('an endpoint that looks like an option still comes after --', () => {
    expect(appendArgs('b', { endpoint: '--config=/x', platforms: [], driverOpts: [] }).slice(-2)).toEqual(['--', '--config=/x'])
  })
})

test('the other commands', () => {
  expect(versionArgs()).toEqual(['buildx', 'version'])
  expect(bootstrapArgs('b')).toEqual(['buildx', 'inspect', '--bootstrap', '--builder', 'b'])
  expect(inspectArgs('b')).toEqual(['buildx', 'inspect', '--', 'b'])
  expect(inspectArgs()).toEqual(['buildx', 'inspect'])
  expect(lsJsonArgs()).toEqual(['buildx', 'ls', '--format', 'json'])
  expect(useArgs('b')).toEqual(['buildx', 'use', '--', 'b'])
  expect(rmArgs('b')).toEqual(['buildx', 'rm', '--', 'b'])
})
