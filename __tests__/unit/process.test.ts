import { commandLine } from '../../src/docker/command'
import { RunResult, describeRun, errorLine, failureReason } from '../../src/process'

// How a failed run is put into words, the one way every caller uses; the command line as logs show it.

const run = (over: Partial<RunResult>): RunResult => ({ code: 1, signal: null, stdout: '', stderr: '', ...over })

describe('describeRun', () => {
  test('exit status with the line that says what went wrong, or that there was none', () => {
    expect(describeRun(run({ stderr: 'mount: /x: permission denied.\ndmesg(1) may have more information after failed mount system call.\n' }))).toBe(
      'exited with status 1: mount: /x: permission denied.',
    )
    expect(describeRun(run({ code: 125, stdout: 'noise on stdout\n' }))).toBe('exited with status 125 and no message')
  })

  test('a run the runner stopped names its time limit; another signal is named as such', () => {
    expect(describeRun(run({ code: null, signal: 'SIGKILL', timedOut: true, stderr: 'half a line' }), 20_000)).toBe(
      'did not finish within 20 s and was stopped',
    )
    expect(describeRun(run({ code: null, signal: 'SIGTERM' }))).toBe('was killed by SIGTERM')
  })
})

describe('failureReason', () => {
  test('the error line alone (stderr, else stdout); else how the run ended, with the program named', () => {
    expect(failureReason(run({ stderr: 'sudo: a password is required\n' }))).toBe('sudo: a password is required')
    expect(failureReason(run({ stdout: 'ERROR: no builder "x" found\n' }))).toBe('no builder "x" found')
    expect(failureReason(run({ code: 32 }), undefined, 'mount')).toBe('mount exited with status 32 and no message')
  })

  test('a stopped run is reported as stopped, whatever it printed before', () => {
    expect(failureReason(run({ code: null, signal: 'SIGKILL', timedOut: true, stderr: 'Pulling fs layer\n' }), 300_000)).toBe(
      'did not finish within 300 s and was stopped',
    )
  })
})

test('errorLine: one line of at most 300 characters, control characters as spaces', () => {
  const line = errorLine(`first\n${'x'.repeat(400)}\tend\n`)
  expect(line).toHaveLength(300)
  expect(line.endsWith('...')).toBe(true)
  expect(errorLine('a\tb\n')).toBe('a b')
  expect(errorLine('\n \n')).toBe('')
})

test('commandLine: words as a shell takes them, a script as <script>', () => {
  expect(commandLine(['buildx', 'create', '--driver-opt', 'image=moby/buildkit:v0.20', '--buildkitd-flags', "--debug --x='y'"])).toBe(
    `docker buildx create --driver-opt image=moby/buildkit:v0.20 --buildkitd-flags '--debug --x='\\''y'\\'''`,
  )
  expect(commandLine(['create', 'busybox', 'sh', '-c', 'echo 1\necho 2', 'sh', ''])).toBe(`docker create busybox sh -c <script> sh ''`)
})
