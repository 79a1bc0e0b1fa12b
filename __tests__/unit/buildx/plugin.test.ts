import * as fs from 'fs'
import * as os from 'os'
import * as path from 'path'
import { spawnSync } from 'child_process'
import { findBuildxPlugin } from '../../../src/buildx/plugin'
import { Docker } from '../../../src/docker/command'
import { ProcessRunner, RunResult } from '../../../src/process'

const uid = process.geteuid?.() ?? 0

let root: string
let config: string
let system: string[]
beforeEach(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'buildx-plugin-'))
  config = path.join(root, 'home', '.docker')
  system = [path.join(root, 'usr-local-lib'), path.join(root, 'usr-libexec')]
  for (const d of [path.join(config, 'cli-plugins'), ...system]) fs.mkdirSync(d, { recursive: true, mode: 0o755 })
})
afterEach(() => fs.rmSync(root, { recursive: true, force: true }))

const plugin = (dir: string, mode = 0o755): string => {
  const file = path.join(dir, 'docker-buildx')
  fs.writeFileSync(file, '#!/bin/sh\n', { mode })
  fs.chmodSync(file, mode)
  return file
}
const find = (env: NodeJS.ProcessEnv = {}): ReturnType<typeof findBuildxPlugin> => findBuildxPlugin({ DOCKER_CONFIG: config, ...env }, uid, system)

test('the one buildx plugin in docker’s directories, whichever it is in', () => {
  const file = plugin(system[1])
  expect(find()).toEqual({ path: file })
  fs.rmSync(file)
  const mine = plugin(path.join(config, 'cli-plugins'))
  expect(find()).toEqual({ path: mine })
})

test('the config directory is $HOME/.docker when DOCKER_CONFIG is unset', () => {
  const mine = plugin(path.join(config, 'cli-plugins'))
  expect(findBuildxPlugin({ HOME: path.join(root, 'home') }, uid, system)).toEqual({ path: mine })
})

test('anything that makes docker’s choice uncertain: docker buildx runs through docker', () => {
  expect(find()).toEqual({ why: 'no buildx plugin in the usual directories' })

  // two: docker takes the first it finds; which is first has changed between releases
  const a = plugin(system[0])
  const b = plugin(path.join(config, 'cli-plugins'))
  expect(find().why).toBe(`more than one buildx plugin: ${b}, ${a}`)
  fs.rmSync(b)

  // a broken one counts: docker would take it (and fail), not skip to the next
  fs.writeFileSync(path.join(system[1], 'docker-buildx'), 'not a program', { mode: 0o644 })
  expect(find().why).toMatch(/^more than one buildx plugin: /)
  fs.rmSync(a)
  expect(find().why).toBe(`${path.join(system[1], 'docker-buildx')} is not an executable file`)
  fs.rmSync(path.join(system[1], 'docker-buildx'))
  plugin(system[1])

  fs.writeFileSync(path.join(config, 'config.json'), JSON.stringify({ cliPluginsExtraDirs: ['/opt/plugins'] }))
  expect(find().why).toBe(`${path.join(config, 'config.json')} names cliPluginsExtraDirs`)
  fs.writeFileSync(path.join(config, 'config.json'), '{ not json')
  expect(find().why).toBe(`${path.join(config, 'config.json')} is not JSON`)
  fs.writeFileSync(path.join(config, 'config.json'), JSON.stringify({ auths: {}, cliPluginsExtraDirs: [] }))
  expect(find().path).toBe(path.join(system[1], 'docker-buildx'))

  // docker decodes its config's keys whatever their case
  fs.writeFileSync(path.join(config, 'config.json'), JSON.stringify({ CLIPluginsExtraDirs: ['/opt/plugins'] }))
  expect(find().why).toBe(`${path.join(config, 'config.json')} names cliPluginsExtraDirs`)
  fs.writeFileSync(path.join(config, 'config.json'), JSON.stringify({ currentContext: 'remote-tls' }))
  expect(find().why).toBe(`${path.join(config, 'config.json')} makes remote-tls the current context`)
  fs.writeFileSync(path.join(config, 'config.json'), JSON.stringify({ currentContext: 'default' }))
  expect(find().path).toBe(path.join(system[1], 'docker-buildx'))

  // run by docker as a plugin ourselves: a plugin that sees this expects docker's argv
  expect(find({ DOCKER_CLI_PLUGIN_ORIGINAL_CLI_COMMAND: '/usr/bin/docker' }).why).toBe('DOCKER_CLI_PLUGIN_ORIGINAL_CLI_COMMAND is set')
  // how the daemon is reached: buildx standalone before v0.23 ignored docker's TLS variables
  for (const v of ['DOCKER_TLS_VERIFY', 'DOCKER_TLS', 'DOCKER_CERT_PATH', 'DOCKER_CONTEXT']) expect(find({ [v]: '1' }).why).toBe(`${v} is set`)
  expect(find({ DOCKER_HOST: 'tcp://10.0.0.1:2376' }).why).toBe('DOCKER_HOST is not a unix socket')
  expect(find({ DOCKER_HOST: 'unix:///run/user/1000/docker.sock' }).path).toBe(path.join(system[1], 'docker-buildx'))
})

test('a docker config that is no small regular file, or that others could change, is not read: docker buildx runs through docker', () => {
  plugin(system[1])
  const file = path.join(config, 'config.json')
  // a FIFO: reading it would wait for a writer that never comes
  expect(spawnSync('mkfifo', [file]).status).toBe(0)
  expect(find().why).toBe(`${file} cannot be read (not a regular file)`)
  fs.rmSync(file)
  fs.writeFileSync(file, `{"x":"${'a'.repeat(1 << 20)}"}`)
  expect(find().why).toBe(`${file} cannot be read (larger than 1048576 bytes)`)
  fs.rmSync(file)
  fs.symlinkSync('/dev/zero', file)
  expect(find().why).toMatch(new RegExp(`^${file} cannot be read \\(`))
  fs.rmSync(file)
  fs.chmodSync(config, 0o777)
  expect(find().why).toBe(`docker's config directory: ${config} is writable by others (mode 777)`)
})

test('a plugin someone else could swap is not run directly: its directory, the directory a symlink leads to, the file', () => {
  const open = path.join(root, 'open')
  fs.mkdirSync(open)
  fs.chmodSync(open, 0o777)
  fs.rmSync(system[1], { recursive: true })
  fs.symlinkSync(open, system[1])
  plugin(open)
  // the plugin directory itself is a symlink to a world-writable directory
  expect(find().why).toMatch(/is not a directory|writable by others/)
  fs.rmSync(system[1])
  fs.mkdirSync(system[1])

  // a symlink in a safe directory to a program in a world-writable one
  fs.symlinkSync(path.join(open, 'docker-buildx'), path.join(system[1], 'docker-buildx'))
  expect(find().why).toBe(`${open} is writable by others (mode 777)`)
  fs.rmSync(path.join(system[1], 'docker-buildx'))

  // a chain whose middle link lies in a world-writable directory, though the program at its end is safe
  const safe = path.join(root, 'safe')
  fs.mkdirSync(safe)
  const real = plugin(safe)
  fs.symlinkSync(real, path.join(open, 'hop'))
  fs.symlinkSync(path.join(open, 'hop'), path.join(system[1], 'docker-buildx'))
  expect(find().why).toBe(`${open} is writable by others (mode 777)`)
  // through safe links only: the real path is what runs, so what was checked is what runs
  fs.rmSync(path.join(system[1], 'docker-buildx'))
  fs.symlinkSync(path.relative(system[1], real), path.join(system[1], 'docker-buildx'))
  expect(find()).toEqual({ path: real })
  fs.rmSync(path.join(system[1], 'docker-buildx'))

  // a program others may write
  const file = plugin(system[1], 0o757)
  expect(find().why).toBe(`${file} is writable by others (mode 757)`)
})

/** Records what the Docker wrapper starts. */
class Recorder implements ProcessRunner {
  readonly started: string[] = []
  async run(command: string, args: readonly string[]): Promise<RunResult> {
    this.started.push([command, ...args].join(' '))
    return { code: 0, signal: null, stdout: '', stderr: '' }
  }
}

test('with a plugin, the Docker wrapper runs buildx commands with it (standalone) and everything else with docker; the log shows what runs', async () => {
  const runner = new Recorder()
  const lines: string[] = []
  const log = { info: (s: string) => lines.push(s), debug: (s: string) => lines.push(s) }
  const direct = new Docker(runner, log, { cli: 'docker', buildx: '/usr/libexec/docker/cli-plugins/docker-buildx' })
  await direct.run(['buildx', 'ls', '--format', 'json'], { timeoutMs: 1000, loud: true })
  await direct.run(['container', 'inspect', '--', 'x'], { timeoutMs: 1000 })
  await new Docker(runner, log).run(['buildx', 'version'], { timeoutMs: 1000 })
  expect(runner.started).toEqual(['/usr/libexec/docker/cli-plugins/docker-buildx ls --format json', 'docker container inspect -- x', 'docker buildx version'])
  expect(lines[0]).toBe('[command]/usr/libexec/docker/cli-plugins/docker-buildx ls --format json')
})
