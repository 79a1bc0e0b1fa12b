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
