import * as fs from 'fs'
import * as os from 'os'
import * as path from 'path'

// Each test gets a fresh module: the queue and the loaded @actions/core live in it.
async function fresh(): Promise<typeof import('../../../src/action/core')> {
  jest.resetModules()
  return await import('../../../src/action/core')
}

let out: string[]
let write: jest.SpyInstance
beforeEach(() => {
  out = []
  write = jest.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
    out.push(String(chunk))
    return true
  })
})
afterEach(() => {
  write.mockRestore()
  process.exitCode = undefined
})

test('what is said before @actions/core is loaded waits, and comes out in order once it is', async () => {
  const { loadCore, withCore } = await fresh()
  withCore(core => core.info('first'))
  withCore(core => core.startGroup('group'))
  withCore(core => core.info('second'))
  expect(out).toEqual([])
  await loadCore()
  withCore(core => core.endGroup())
  expect(out.join('')).toBe(`first${os.EOL}::group::group${os.EOL}second${os.EOL}::endgroup::${os.EOL}`)
})

test('one that fails while the queue is written (the state file refused) fails the step; the lines after it still come out', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'core-queue-'))
  const saved = process.env.GITHUB_STATE
  process.env.GITHUB_STATE = path.join(dir, 'no-such-dir', 'state')
  try {
    const { loadCore, withCore } = await fresh()
    withCore(core => core.saveState('builder', 'x'))
    withCore(core => core.info('after'))
    await loadCore()
    expect(out.join('')).toMatch(/^::error::writing to the runner failed: Missing file at path: /)
    expect(out.join('')).toContain(`after${os.EOL}`)
    expect(process.exitCode).toBe(1)
  } finally {
    if (saved === undefined) delete process.env.GITHUB_STATE
    else process.env.GITHUB_STATE = saved
    fs.rmSync(dir, { recursive: true, force: true })
  }
})

test('inputs and saved state are read from the environment as @actions/core reads them', async () => {
  const { input, savedState } = await fresh()
  const core = await import('@actions/core')
  process.env['INPUT_DRIVER-OPTS'] = '  image=x \n'
  process.env.INPUT_BUILDER_NAME = 'b'
  process.env.STATE_builder = '{"name":"b"}'
  try {
    for (const name of ['driver-opts', 'builder name', 'missing']) expect(input(name)).toBe(core.getInput(name))
    for (const name of ['builder', 'missing']) expect(savedState(name)).toBe(core.getState(name))
    expect(input('driver-opts')).toBe('image=x')
  } finally {
    delete process.env['INPUT_DRIVER-OPTS']
    delete process.env.INPUT_BUILDER_NAME
    delete process.env.STATE_builder
  }
})

test('the main step marks itself in the state file at once, before @actions/core is loaded (a SIGINT then still leaves the post step knowing it is one)', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'core-state-'))
  const saved = process.env.GITHUB_STATE
  process.env.GITHUB_STATE = path.join(dir, 'state')
  fs.writeFileSync(process.env.GITHUB_STATE, '')
  try {
    jest.resetModules()
    const { stepState } = await import('../../../src/action/state')
    stepState.markMainRan()
    expect(fs.readFileSync(path.join(dir, 'state'), 'utf8')).toBe(`isPost=true${os.EOL}`)
    process.env.STATE_isPost = 'true'
    expect(stepState.isPost()).toBe(true)
  } finally {
    delete process.env.STATE_isPost
    if (saved === undefined) delete process.env.GITHUB_STATE
    else process.env.GITHUB_STATE = saved
    fs.rmSync(dir, { recursive: true, force: true })
  }
})
