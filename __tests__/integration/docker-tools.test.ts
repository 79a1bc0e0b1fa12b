import { spawnSync } from 'child_process'
import * as fs from 'fs'
import * as os from 'os'
import * as path from 'path'
import { EntrySpec, registerLine } from '../../src/binfmt'
import { REGISTER_SCRIPT, parseTable } from '../../src/access/docker/writer'
import { getTarget } from '../../src/targets'

// What the Docker path hands to a system program, checked with the system's own:
// the register script (sh). The tar stream for docker cp: tar-gnu.test.ts.

const ppc = getTarget('ppc64le')
const s390x = getTarget('s390x')

let dir: string
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'docker-tools-'))
})
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }))

const kernelText = (s: EntrySpec, flags: string): string =>
  `enabled\ninterpreter ${s.interpreter}\nflags: ${flags}\noffset 0\nmagic ${s.magic}\nmask ${s.mask}\n`

function spec(target = ppc, interpreter = '/x', flags = 'POCF'): EntrySpec {
  return { name: `qemu-${target.name}`, offset: 0, magic: target.magic, mask: target.mask, interpreter, flags }
}

describe('REGISTER_SCRIPT under a POSIX sh', () => {
  // Against a directory standing in for binfmt_misc (plain files, so no kernel
  // semantics): what is written where, in which order, and the dump.
  function runScript(root: string, ops: string[]): { code: number | null; stdout: string; stderr: string } {
    const script = REGISTER_SCRIPT.replace('b=/proc/sys/fs/binfmt_misc', `b=${root}`)
    expect(script).not.toBe(REGISTER_SCRIPT)
    const r = spawnSync('sh', ['-c', script, 'sh', ...ops], { encoding: 'utf8' })
    return { code: r.status, stdout: r.stdout, stderr: r.stderr }
  }

  function fakeBinfmt(): string {
    const root = fs.mkdtempSync(path.join(dir, 'binfmt-'))
    fs.writeFileSync(path.join(root, 'register'), '')
    fs.writeFileSync(path.join(root, 'status'), 'enabled\n')
    fs.writeFileSync(path.join(root, 'qemu-s390x'), kernelText(spec(s390x), 'F'))
    return root
  }

  test('removes existing entries, skips missing ones, writes each line verbatim in order, then dumps', () => {
    const root = fakeBinfmt()
    const line = registerLine(spec(ppc, '/setup-qemu-binfmt/0123456789abcdef/qemu-ppc64le'))
    const r = runScript(root, ['r:qemu-s390x', 'r:qemu-missing', `a:${line}`])
    expect(r).toMatchObject({ code: 0, stderr: '' })
    // (dd does not truncate: the kernel's files need no truncation, these plain files keep their tail)
    expect(fs.readFileSync(path.join(root, 'qemu-s390x'), 'utf8')).toMatch(/^-1abled\n/)
    expect(fs.existsSync(path.join(root, 'qemu-missing'))).toBe(false)
    // Backslash escapes reach the kernel untouched, without a newline.
    expect(fs.readFileSync(path.join(root, 'register'), 'utf8')).toBe(line)
    const t = parseTable(r.stdout)!
    expect(t.mounted).toBe(true)
    expect(t.entries.map(e => e.name)).toEqual(['qemu-s390x'])
  })

  test('stops at the first failure, names it on stderr, exits 1, still dumps', () => {
    const root = fakeBinfmt()
    fs.rmSync(path.join(root, 'register'))
    fs.mkdirSync(path.join(root, 'register'))
    const r = runScript(root, [`a:${registerLine(spec(ppc))}`, 'r:qemu-s390x'])
    expect(r.code).toBe(1)
    expect(r.stderr.trim()).toBe('registering qemu-ppc64le failed: Is a directory')
    expect(fs.readFileSync(path.join(root, 'qemu-s390x'), 'utf8')).toContain('enabled')
    expect(parseTable(r.stdout)!.entries.map(e => e.name)).toEqual(['qemu-s390x'])
  })

  test('rejects an unknown operation', () => {
    const r = runScript(fakeBinfmt(), ['x:y'])
    expect(r.code).toBe(1)
    expect(r.stderr.trim()).toBe('unknown operation x:y')
  })
})
