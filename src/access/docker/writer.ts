import { createHash } from 'crypto'
import * as fs from 'fs'
import * as path from 'path'
import { BINFMT_ROOT, BinfmtEntry, BinfmtReader, parseEntry, registerLine } from '../../binfmt'
import { ActionError } from '../../errors'
import { TarFile, writeTar } from '../../fetch/tar'
import { KernelOp, KernelWriter } from '../../kernel'
import { describeRun } from '../../process'
import { CONTAINER_MS } from '../../timeouts'
import { Docker } from '../../docker/command'
import { runContainer } from '../../docker/container'

/** Where the emulators go inside the registering container: `<dir>/<content digest>/<file name>`. */
export const CONTAINER_DIR = '/setup-qemu-binfmt'

/**
 * Runs in the privileged container with the ops as arguments (`r:<name>` remove,
 * `d:<name>` disable, `a:<register line>` register). Mounts binfmt_misc when the container's /proc has
 * none, applies the ops in order and stops at the first failure, naming it on
 * stderr. Whatever happened, it then prints the table as the kernel shows it.
 * Writes go through dd: one write() per line as the kernel wants, and unlike
 * the shell's printf, dd says why the kernel refused one.
 */
export const REGISTER_SCRIPT = `
b=${BINFMT_ROOT}
dump() {
  echo "@@userns $(readlink /proc/self/ns/user 2>/dev/null)"
  echo "@@boot_id $(cat /proc/sys/kernel/random/boot_id 2>/dev/null)"
  if [ -e "$b/register" ]; then
    echo "@@mounted"
    for f in "$b"/*; do
      n=\${f##*/}
      case $n in register|status|'*') continue ;; esac
      echo "@@entry $n"
      cat "$f"
    done
  fi
  echo "@@end"
}
trap dump EXIT
fail() { echo "$*" >&2; exit 1; }
put() {
  e=$(printf %s "$1" | dd of="$2" bs=4096 conv=notrunc 2>&1) && return 0
  e=$(echo "$e" | head -n 1)
  fail "$3 failed: \${e##*: }"
}
if [ ! -e "$b/register" ]; then
  e=$(mount -t binfmt_misc binfmt_misc "$b" 2>&1) || fail "mounting binfmt_misc failed: $e"
fi
for op in "$@"; do
  case $op in
    r:*) n=\${op#r:}; if [ -e "$b/$n" ]; then put -1 "$b/$n" "removing $n"; fi ;;
    d:*) n=\${op#d:}; if [ -e "$b/$n" ]; then put 0 "$b/$n" "disabling $n"; fi ;;
    a:*) l=\${op#a:}; n=\${l#:}; put "$l" "$b/register" "registering \${n%%:*}" ;;
    *) fail "unknown operation $op" ;;
  esac
done
`

/** binfmt_misc as a container showed it. */
export interface ContainerTable {
  readonly userns: string
  readonly bootId: string
  readonly mounted: boolean
  readonly entries: readonly BinfmtEntry[]
}

/** Reads the dump REGISTER_SCRIPT prints; undefined when it is missing or cut short. */
export function parseTable(stdout: string): ContainerTable | undefined {
  let userns = ''
  let bootId = ''
  let mounted = false
  let complete = false
  const entries: { name: string; lines: string[] }[] = []
  for (const line of stdout.split('\n')) {
    if (line.startsWith('@@userns ')) userns = line.slice('@@userns '.length).trim()
    else if (line.startsWith('@@boot_id ')) bootId = line.slice('@@boot_id '.length).trim()
    else if (line === '@@mounted') mounted = true
    else if (line.startsWith('@@entry ')) entries.push({ name: line.slice('@@entry '.length), lines: [] })
    else if (line === '@@end') complete = true
    else if (entries.length) entries[entries.length - 1].lines.push(line)
  }
  if (!complete) return undefined
  return { userns, bootId, mounted, entries: entries.map(e => parseEntry(e.name, e.lines.join('\n'))) }
}

/** The kernel's table as the last container of the daemon saw it: the reader for runners that cannot see it themselves. */
class ContainerView extends BinfmtReader {
  private table = new Map<string, BinfmtEntry>()
  private isMounted = false

  constructor() {
    super(`${BINFMT_ROOT} (as a container sees it)`)
  }

  update(t: ContainerTable): void {
    this.isMounted = t.mounted
    this.table = new Map(t.entries.map(e => [e.name, e]))
  }

  mounted(): boolean {
    return this.isMounted
  }

  names(): string[] {
    return [...this.table.keys()].sort()
  }

  read(name: string): BinfmtEntry | undefined {
    return this.table.get(name)
  }

  madeAtMs(): number | undefined {
    return undefined
  }
}

/**
 * The Docker path: registers through one privileged container per batch of ops,
 * with the emulators this action downloaded and checked copied into it.
 */
export class DockerWriter implements KernelWriter {
  readonly method = 'docker'
  readonly how: string
  /** binfmt_misc as the last container saw it */
  readonly view = new ContainerView()
  /** why this runner does not see the table the daemon's containers change; undefined when it does */
  hidden?: string
  /** container path -> emulator on the runner */
  private readonly emulators = new Map<string, string>()

  constructor(
    readonly docker: Docker,
    readonly image: string,
  ) {
    this.how = `through a privileged container (${image})`
  }

  /** Named by content: the same emulator gets the same path, so a second identical run keeps its entries. */
  interpreterFor(emulatorPath: string): string {
    const digest = createHash('sha256').update(fs.readFileSync(emulatorPath)).digest('hex').slice(0, 16)
    const inside = `${CONTAINER_DIR}/${digest}/${path.basename(emulatorPath)}`
    this.emulators.set(inside, emulatorPath)
    return inside
  }

  async apply(ops: readonly KernelOp[]): Promise<void> {
    if (ops.length) await this.run(ops)
  }

  /** Runs the privileged container for `ops` (none: only looks) and returns the table it left. */
  async run(ops: readonly KernelOp[]): Promise<ContainerTable> {
    const args = ops.map(op => (op.kind === 'register' ? `a:${registerLine(op.spec)}` : `${op.kind === 'remove' ? 'r' : 'd'}:${op.name}`))
    const files = new Map<string, TarFile>()
    for (const op of ops) {
      if (op.kind !== 'register' || files.has(op.spec.interpreter)) continue
      // Ours by digest; an entry put back on rollback names a file of the runner, copied to the same path if it is there.
      const source = this.emulators.get(op.spec.interpreter) ?? op.spec.interpreter
      if (!fs.existsSync(source) || !fs.statSync(source).isFile()) continue
      files.set(op.spec.interpreter, { name: op.spec.interpreter.replace(/^\/+/, ''), data: fs.readFileSync(source), mode: 0o755 })
    }
    const r = await runContainer(
      this.docker,
      ['--privileged', this.image, 'sh', '-c', REGISTER_SCRIPT, 'sh', ...args],
      files.size ? writeTar([...files.values()]) : undefined,
      // Kernel writes are short and always finish, so that a cancelled run's rollback completes.
      ops.length === 0,
    )
    const table = parseTable(r.stdout)
    if (table) this.view.update(table)
    if (r.code !== 0 || r.signal) throw new ActionError(`the privileged container (${this.image}) ${describeRun(r, CONTAINER_MS)}`)
    if (!table) throw new ActionError(`the privileged container (${this.image}) did not print binfmt_misc's entries; does its sh work?`)
    return table
  }
}
