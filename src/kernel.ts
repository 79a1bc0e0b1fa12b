import * as fs from 'fs'
import * as path from 'path'
import { BINFMT_ROOT, EntrySpec, registerLine } from './binfmt'
import { ActionError, errnoMessage, errorMessage, readOr } from './errors'
import { ProcessRunner, failureReason } from './process'
import { SUDO_CHECK_MS } from './timeouts'

/** One change to binfmt_misc. */
export type KernelOp =
  | { readonly kind: 'remove'; readonly name: string }
  | { readonly kind: 'register'; readonly spec: EntrySpec }
  /** only to put back an entry that was disabled before this run */
  | { readonly kind: 'disable'; readonly name: string }

/**
 * Changes binfmt_misc. Implementations: as root (plain writes), through `sudo -n`,
 * and (install-mode docker) through a privileged container. Ops come as one
 * batch so that a slow path (a container) pays its start-up once.
 */
export interface KernelWriter {
  /** for the `method` output */
  readonly method: 'direct' | 'docker' | 'userns'
  /** for logs: how the writes are made */
  readonly how: string
  /** the interpreter path to register for an emulator file on the runner */
  interpreterFor(emulatorPath: string): string
  /** mounts binfmt_misc when it is not, then applies the ops in order; throws on the first failure */
  apply(ops: readonly KernelOp[]): Promise<void>
}

class MountError extends ActionError {
  constructor(detail: string) {
    super(
      `binfmt_misc is not available: mounting ${BINFMT_ROOT} failed (${detail}); load the module with 'modprobe binfmt_misc', mount it before this step, or use install-mode: docker`,
    )
  }
}

const MOUNT_ARGS = ['-t', 'binfmt_misc', 'binfmt_misc', BINFMT_ROOT]

/** The direct path: this process (as root, or as the owner of a user namespace's table) or `sudo -n` writes the kernel's files. */
export abstract class DirectWriter implements KernelWriter {
  readonly method: KernelWriter['method'] = 'direct'
  abstract readonly how: string
  constructor(
    protected readonly runner: ProcessRunner,
    protected readonly root: string = BINFMT_ROOT,
  ) {}

  interpreterFor(emulatorPath: string): string {
    return emulatorPath
  }

  protected abstract mount(): Promise<void>
  protected abstract write(file: string, data: string): Promise<void>

  /** whether the table to change is mounted at `root` */
  protected mounted(): boolean {
    return fs.existsSync(path.join(this.root, 'register'))
  }

  async apply(ops: readonly KernelOp[]): Promise<void> {
    if (!this.mounted()) {
      try {
        await this.mount()
      } catch (e) {
        if (e instanceof ActionError) throw e
        throw new MountError(errorMessage(e))
      }
    }
    for (const op of ops) {
      if (op.kind === 'register') {
        const line = registerLine(op.spec)
        try {
          // One write() per line: the kernel parses each write as a whole entry.
          await this.write(path.join(this.root, 'register'), line)
        } catch (e) {
          throw new Error(`registering ${op.spec.name} failed: ${errnoMessage(e)}`)
        }
      } else if (fs.existsSync(path.join(this.root, op.name))) {
        const [value, doing] = op.kind === 'remove' ? ['-1', 'removing'] : ['0', 'disabling']
        try {
          await this.write(path.join(this.root, op.name), value)
        } catch (e) {
          throw new Error(`${doing} ${op.name} failed: ${errnoMessage(e)}`)
        }
      }
    }
  }
}

/** We are root: write the files ourselves. */
class RootWriter extends DirectWriter {
  readonly how = 'as root'

  protected async mount(): Promise<void> {
    const r = await this.runner.run('mount', MOUNT_ARGS)
    if (r.code !== 0) throw new Error(failureReason(r, undefined, 'mount'))
  }

  protected async write(file: string, data: string): Promise<void> {
    fs.writeFileSync(file, data)
  }
}

/** Not root, but `sudo -n` works: let `tee` do the writes. */
class SudoWriter extends DirectWriter {
  readonly how = 'through sudo -n'

  private async sudo(args: string[], input?: string): Promise<void> {
    const r = await this.runner.run('sudo', ['-n', ...args], { input })
    if (r.code !== 0) throw new Error(failureReason(r, undefined, `sudo ${args[0]}`))
  }

  protected mount(): Promise<void> {
    return this.sudo(['mount', ...MOUNT_ARGS])
  }

  protected write(file: string, data: string): Promise<void> {
    return this.sudo(['tee', file], data)
  }
}

export interface DirectAccess {
  readonly writer?: KernelWriter
  /** why direct registration is not possible, when it is not */
  readonly reason?: string
}

const CAP_SYS_ADMIN = 21

/** Why root here still cannot change binfmt_misc (an unprivileged container job), if it cannot. */
export function rootLimits(status: string, mountinfo: string): string | undefined {
  const capEff = /^CapEff:\s*([0-9a-f]+)/m.exec(status)?.[1]
  if (capEff && ((BigInt(`0x${capEff}`) >> BigInt(CAP_SYS_ADMIN)) & BigInt(1)) === BigInt(0)) {
    return 'root, but without CAP_SYS_ADMIN (an unprivileged container?)'
  }
  // The longest mount point covering binfmt_misc decides whether it can be written.
  let best: { point: string; ro: boolean } | undefined
  for (const line of mountinfo.split('\n')) {
    const f = line.split(' ')
    const point = f[4]
    if (!point || !(BINFMT_ROOT === point || BINFMT_ROOT.startsWith(point.endsWith('/') ? point : `${point}/`))) continue
    if (!best || point.length > best.point.length) best = { point, ro: f[5]?.split(',').includes('ro') ?? false }
  }
  if (best?.ro) return `root, but ${best.point} is mounted read-only here`
  return undefined
}

/** Root, or passwordless sudo; otherwise says why neither works. */
export async function directAccess(runner: ProcessRunner, uid: number = process.getuid?.() ?? -1): Promise<DirectAccess> {
  if (uid === 0) {
    const limit = rootLimits(
      readOr(() => fs.readFileSync('/proc/self/status', 'utf8'), ''),
      readOr(() => fs.readFileSync('/proc/self/mountinfo', 'utf8'), ''),
    )
    return limit ? { reason: limit } : { writer: new RootWriter(runner) }
  }
  let reason: string
  try {
    const r = await runner.run('sudo', ['-n', 'true'], { timeoutMs: SUDO_CHECK_MS })
    if (r.code === 0) return { writer: new SudoWriter(runner) }
    reason = `not root, and sudo -n: ${failureReason(r, SUDO_CHECK_MS)}`
  } catch (e) {
    reason = `not root, and sudo is not installed (${errnoMessage(e)})`
  }
  return { reason }
}
