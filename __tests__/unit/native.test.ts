// Native detection on stand-in hosts: the branches the machine running the
// tests may not have (a kernel without 32-bit x86, another x86-64 level, a
// level probe that fails). The real kernel and CPU are in
// __tests__/integration/probe-qemu.test.ts and no-ia32.test.ts.
import * as fs from 'fs'
import * as os from 'os'
import * as path from 'path'
import { BinfmtReader } from '../../src/binfmt'
import { detectHost, nativePlatforms } from '../../src/host'
import { AMD64_LEVEL_BASE, PROBE_EXIT_STATUS } from '../../src/test-programs'
import { RunResult } from '../../src/process'
import { ProbeHost, probeNative } from '../../src/verify'

type Answer = RunResult | NodeJS.ErrnoException
const exited = (code: number): RunResult => ({ code, signal: null, stdout: '', stderr: '' })
const enoexec = (): NodeJS.ErrnoException => Object.assign(new Error('spawn ENOEXEC'), { code: 'ENOEXEC' })

/** A host whose programs answer as `answers` says, by the probe's file name; records what ran. */
function standIn(answers: Record<string, Answer>): ProbeHost & { ran: string[] } {
  const ran: string[] = []
  return {
    ran,
    runAll: async (_dir, names) => {
      ran.push(...names)
      const out = new Map<string, RunResult | Error>()
      for (const name of names) {
        if (!answers[name]) throw new Error(`unexpected program ${name}`)
        out.set(name, answers[name])
      }
      return out
    },
  }
}

let dir: string
let table: string
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'native-test-'))
  table = path.join(dir, 'binfmt_misc')
  fs.mkdirSync(table)
  fs.writeFileSync(path.join(table, 'register'), '')
  fs.writeFileSync(path.join(table, 'status'), 'enabled\n')
})
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }))

const amd64 = detectHost('x64')
const log = (): undefined => undefined

test('a kernel that runs no 32-bit x86: i386 and i486 are foreign, the level still counts', async () => {
  const runner = standIn({ 'probe-i386': enoexec(), 'probe-i486': enoexec(), 'probe-amd64-level': exited(AMD64_LEVEL_BASE + 3) })
  const found = await probeNative(amd64, new BinfmtReader(table), dir, runner, log)
  expect(found.native).toEqual([])
  expect(found.amd64Level).toBe(3)
  expect(found.tried.map(t => [t.target.name, t.ok, t.detail])).toEqual([
    ['i386', false, 'exec format error: no binfmt_misc entry took the test program'],
    ['i486', false, 'exec format error: no binfmt_misc entry took the test program'],
  ])
  // One batch: the candidates and the level probe together.
  expect(runner.ran).toEqual(['probe-i386', 'probe-i486', 'probe-amd64-level'])
  expect(nativePlatforms(amd64, found.native, found.amd64Level)).toEqual(['linux/amd64', 'linux/amd64/v2', 'linux/amd64/v3'])
})

test('a kernel that runs 32-bit x86 and a CPU of level 4', async () => {
  const runner = standIn({
    'probe-i386': exited(PROBE_EXIT_STATUS),
    'probe-i486': exited(PROBE_EXIT_STATUS),
    'probe-amd64-level': exited(AMD64_LEVEL_BASE + 4),
  })
  const found = await probeNative(amd64, new BinfmtReader(table), dir, runner, log)
  expect(nativePlatforms(amd64, found.native, found.amd64Level)).toEqual(['linux/amd64', 'linux/amd64/v2', 'linux/amd64/v3', 'linux/amd64/v4', 'linux/386'])
})

test('a level probe that fails or is killed lists no level, and says why', async () => {
  for (const [answer, said] of [
    [exited(139), 'exited with status 139'],
    [{ ...exited(0), code: null, signal: 'SIGILL' } as RunResult, 'was killed by SIGILL'],
    [enoexec(), 'could not be started (ENOEXEC)'],
  ] as const) {
    const lines: string[] = []
    const runner = standIn({ 'probe-i386': enoexec(), 'probe-i486': enoexec(), 'probe-amd64-level': answer })
    const found = await probeNative(amd64, new BinfmtReader(table), dir, runner, m => void lines.push(m))
    expect(found.amd64Level).toBeUndefined()
    expect(nativePlatforms(amd64, found.native, found.amd64Level)).toEqual(['linux/amd64'])
    expect(lines).toContain(`x86-64 level unknown: the level probe ${said}; listing no linux/amd64/v2..v4`)
  }
})

test('an entry that would take a probe: that program is not run, its target counts as foreign', async () => {
  // An x86_64 entry (as a misconfigured host may have) takes the level probe; qemu-i386 takes i386.
  const entry = (name: string, magic: string): void =>
    fs.writeFileSync(
      path.join(table, name),
      `enabled\ninterpreter /usr/bin/qemu-${name}\nflags: F\noffset 0\nmagic ${magic}\nmask fffffffffffefe00fffffffffffffffffeffffff\n`,
    )
  entry('qemu-i386', '7f454c4601010100000000000000000002000300')
  entry('qemu-x86_64', '7f454c4602010100000000000000000002003e00')
  const lines: string[] = []
  const runner = standIn({ 'probe-i486': exited(PROBE_EXIT_STATUS) })
  const found = await probeNative(amd64, new BinfmtReader(table), dir, runner, m => void lines.push(m))
  expect(runner.ran).toEqual(['probe-i486'])
  expect(found.native.map(t => t.name)).toEqual(['i486'])
  expect(found.amd64Level).toBeUndefined()
  expect(lines).toEqual(
    expect.arrayContaining([
      'i386: not tried natively, binfmt entry qemu-i386 would run it',
      'x86-64 level: not tried, binfmt entry qemu-x86_64 would run the level probe; listing no linux/amd64/v2..v4',
    ]),
  )
})

test('an arm64 host runs no level probe', async () => {
  const runner = standIn({ 'probe-arm': enoexec() })
  const found = await probeNative(detectHost('arm64'), new BinfmtReader(table), dir, runner, log)
  expect(runner.ran).toEqual(['probe-arm'])
  expect(found).toMatchObject({ native: [], amd64Level: undefined })
})
