import { Plan, emulatorNames } from '../../src/plan'
import { detectHost } from '../../src/host'
import { parsePlatforms } from '../../src/platform'
import { getTarget } from '../../src/targets'

const amd64 = detectHost('x64')
const arm64 = detectHost('arm64')
const names = (ts: { name: string }[]) => ts.map(t => t.name)

describe('plan', () => {
  test('requested native platforms are reported, not registered', () => {
    const plan = new Plan(amd64, parsePlatforms('linux/amd64,linux/386,linux/arm64'), [getTarget('i386')])
    expect(names(plan.requestedNative())).toEqual(['x86_64', 'i386'])
    expect(names(plan.foreignTargets([]))).toEqual(['aarch64'])
    expect(plan.selectionKey()).toBe('aarch64')
  })

  test('an amd64 kernel without 32-bit support gets qemu-i386', () => {
    const plan = new Plan(amd64, parsePlatforms('386'), [])
    expect(names(plan.foreignTargets([]))).toEqual(['i386'])
  })

  test('an arm64 host that cannot run 32-bit ARM gets qemu-arm; one that can does not', () => {
    expect(names(new Plan(arm64, parsePlatforms('linux/arm/v7'), []).foreignTargets([]))).toEqual(['arm'])
    expect(names(new Plan(arm64, parsePlatforms('linux/arm/v7'), [getTarget('arm')]).foreignTargets([]))).toEqual([])
  })

  test('all: every table target the source has, minus native ones; i486 shares qemu-i386', () => {
    const available = ['aarch64', 'arm', 'riscv64', 'i386', 'x86_64', 'cris']
    const onAmd64 = new Plan(amd64, parsePlatforms('all'), [getTarget('i386'), getTarget('i486')])
    expect(names(onAmd64.foreignTargets(available))).toEqual(['arm', 'aarch64', 'riscv64'])
    const onArm64 = new Plan(arm64, parsePlatforms('all'), [])
    expect(names(onArm64.foreignTargets(available))).toEqual(['i386', 'i486', 'arm', 'riscv64', 'x86_64'])
    expect(emulatorNames(onArm64.foreignTargets(available))).toEqual(['i386', 'arm', 'riscv64', 'x86_64'])
    expect(onArm64.selectionKey()).toBe('all')
  })
})
