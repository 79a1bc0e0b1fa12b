// A hostile and unlucky pass over the shared-host machinery (issues 7 and 8):
// pid namespaces, leftovers with our own pid.
import * as fs from 'fs'
import * as path from 'path'
import { actionScript, runAction } from '../support/action'
import { VERSION, closeFixtures, CoreFixtures, debianLine, expectRegistered, expectSuccess, freshDir, myRaw, registerMine, startFixtures, withKernel } from './core-helpers'

let fx: CoreFixtures
beforeAll(async () => {
  fx = await startFixtures()
}, 120000)
afterAll(() => closeFixtures(fx))

/** A script that runs the action as pid 1 of a new pid namespace (a container's job): its pid is the same every time. */
function asPidOne(): string {
  const script = path.join(freshDir('pid1'), 'pid1.js')
  fs.writeFileSync(
    script,
    `const r = require('child_process').spawnSync('unshare', ['--pid', '--fork', process.execPath, ${JSON.stringify(actionScript('main'))}], { stdio: 'inherit' })
process.exit(r.status === null ? 1 : r.status)
`,
  )
  return script
}

test('a staging entry left by a killed run whose pid this run has again (pid namespaces): removed, the run succeeds', async () => {
  await withKernel(async () => {
    // What a SIGKILLed run at pid 1 of an earlier container left.
    registerMine(debianLine('aarch64', 'F').replace(':qemu-aarch64:', ':qemu-aarch64.staged-1:'))
    expect([...myRaw().keys()]).toContain('qemu-aarch64.staged-1')
    const r = await runAction({ platforms: 'linux/arm64', 'qemu-version': VERSION, 'qemu-url': fx.tarGzUrl, buildx: 'false' }, { script: asPidOne() })
    expectSuccess(r)
    expect(r.stdout).toMatch(/^Removing entries left by runs that were killed before they finished: qemu-aarch64\.staged-1$/m)
    expectRegistered('qemu-aarch64', `${r.toolCache}/`)
    expect([...myRaw().keys()].filter(n => n.includes('.staged-'))).toEqual([])
  })
})
