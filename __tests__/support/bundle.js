// Integration tests run the bundle as other users too (a docker-group user, a sudo user, rootless
// Docker's): a clone in a directory only root can enter (mktemp -d, /root/src) is out of their reach.
// So each jest run stages what they run (dist/ and action.yml) once in a world-readable temporary
// directory (globalSetup), support/action.ts runs it from there, and globalTeardown removes it.
const fs = require('fs')
const os = require('os')
const path = require('path')

const ENV = 'SETUP_QEMU_BINFMT_TEST_BUNDLE'
const REPO = path.resolve(__dirname, '..', '..')

/** Every user may read everything under `p`, and run what its owner may run. */
function readable(p) {
  const st = fs.lstatSync(p)
  if (st.isSymbolicLink()) return
  fs.chmodSync(p, st.isDirectory() || st.mode & 0o100 ? (st.mode | 0o555) & 0o7777 : (st.mode | 0o444) & 0o7777)
  if (st.isDirectory()) for (const e of fs.readdirSync(p)) readable(path.join(p, e))
}

async function setup() {
  // Without a build there is nothing to stage: runAction then says to run 'npm run build'.
  if (!fs.existsSync(path.join(REPO, 'dist'))) return
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'setup-qemu-binfmt-bundle-'))
  fs.cpSync(path.join(REPO, 'dist'), path.join(dir, 'dist'), { recursive: true })
  fs.copyFileSync(path.join(REPO, 'action.yml'), path.join(dir, 'action.yml'))
  readable(dir)
  process.env[ENV] = dir
}

async function teardown() {
  const dir = process.env[ENV]
  if (dir && path.basename(dir).startsWith('setup-qemu-binfmt-bundle-')) fs.rmSync(dir, { recursive: true, force: true })
  delete process.env[ENV]
}

module.exports = { ENV, setup, teardown }
