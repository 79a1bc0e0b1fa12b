import * as fs from 'fs'
import * as os from 'os'
import * as path from 'path'
import { writeSummary } from '../../src/action/summary'
import { Outcome, outputs } from '../../src/report'
import { Registration } from '../../src/register'
import { getTarget } from '../../src/targets'

function registered(name: string): Registration {
  const target = getTarget(name)
  return {
    target,
    action: 'added',
    staged: `qemu-${name}.staged-1`,
    spec: { name: `qemu-${name}`, offset: 0, magic: target.magic, mask: target.mask, interpreter: `/x/qemu-${name}`, flags: 'F' },
  }
}

const base: Outcome = {
  nativePlatforms: ['linux/amd64', 'linux/386'],
  registrations: [registered('aarch64'), registered('riscv64'), registered('s390x')],
  emulators: new Map(),
  // s390x failed its check: in neither list.
  probes: [
    { target: getTarget('aarch64'), ok: true, detail: '', ms: 1 },
    { target: getTarget('riscv64'), ok: true, detail: '', ms: 1 },
    { target: getTarget('s390x'), ok: false, detail: 'exit 1', ms: 1 },
  ],
  qemuVersion: '10.2.3-68',
  cacheHit: false,
  method: 'direct',
  files: [],
  pinning: { kind: 'none', list: new Map() },
}

test('platforms-json is the platforms output as a JSON array, in the same order', () => {
  const o = outputs(base)
  expect(o.platforms).toBe('linux/amd64,linux/386,linux/arm64,linux/riscv64')
  expect(o['platforms-json']).toBe('["linux/amd64","linux/386","linux/arm64","linux/riscv64"]')
  expect(JSON.parse(o['platforms-json'])).toEqual(o.platforms.split(','))
})

test('no platforms at all: platforms is empty and platforms-json an empty array, not [""]', () => {
  const o = outputs({ ...base, nativePlatforms: [], registrations: [], probes: [] })
  expect(o.platforms).toBe('')
  expect(o['platforms-json']).toBe('[]')
})

// Issue 23.3: a remote BuildKit node and an emulator's output say what they like; the summary shows it as text.
test('what nodes and programs say reaches the summary as text: no workflow command, no markup', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'summary-'))
  const file = path.join(dir, 'summary')
  fs.writeFileSync(file, '')
  const before = process.env.GITHUB_STEP_SUMMARY
  process.env.GITHUB_STEP_SUMMARY = file
  try {
    const evil = '##[set-output name=platforms;]pwned <img src=//evil.example/x>'
    await writeSummary(
      { ...base, probes: [...base.probes.slice(0, 2), { target: getTarget('s390x'), ok: false, detail: `exit 1: ${evil}`, ms: 1 }] },
      {
        name: 'b',
        driver: 'remote',
        created: true,
        platforms: ['linux/amd64'],
        nodes: [{ name: 'n0', endpoint: 'tcp://h:1234', status: evil, buildkit: `\u001b[31m${evil}`, platforms: ['linux/amd64'], remote: true }],
      },
    )
    const text = fs.readFileSync(file, 'utf8')
    expect(text).toContain('## [set-output name=platforms;]pwned &lt;img src=//evil.example/x&gt;')
    expect(text).not.toContain('##[')
    expect(text).not.toContain('<img')
    expect(text).not.toContain('\u001b')
  } finally {
    if (before === undefined) delete process.env.GITHUB_STEP_SUMMARY
    else process.env.GITHUB_STEP_SUMMARY = before
    fs.rmSync(dir, { recursive: true, force: true })
  }
})
