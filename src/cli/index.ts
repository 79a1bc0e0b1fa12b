// setup-qemu-binfmt as a command, for any Linux machine or CI: the action's engine
// (fetch, check, register with F, prove) behind subcommands. install and run call the
// engine with the flags as its inputs; status, verify and uninstall read and change
// binfmt_misc's table directly.
import { errorMessage } from '../errors'
import { securePathForRoot } from '../search-path'
import { HELP, Parsed, UsageError, VERSION, parseArgs } from './args'
import { install, runCommand } from './install'
import { print } from './output'
import { statusOrVerify, uninstall } from './table'

export async function main(argv: readonly string[]): Promise<number> {
  let parsed: Parsed | 'help' | 'version'
  try {
    parsed = parseArgs(argv)
  } catch (e) {
    print(process.stderr, `setup-qemu-binfmt: ${errorMessage(e)}\n`)
    return 2
  }
  if (parsed === 'help') {
    print(process.stdout, `${HELP}\n`)
    return 0
  }
  if (parsed === 'version') {
    print(process.stdout, `${VERSION}\n`)
    return 0
  }
  // Before any program is looked up: as root, none from a directory another user could write.
  securePathForRoot(m => void print(process.stderr, `setup-qemu-binfmt: warning: ${m}\n`))
  try {
    if (parsed.command === 'install') return await install(parsed)
    if (parsed.command === 'run') return await runCommand(parsed)
    if (parsed.command === 'uninstall') return await uninstall(parsed)
    return await statusOrVerify(parsed)
  } catch (e) {
    print(process.stderr, `setup-qemu-binfmt: ${errorMessage(e)}\n`)
    return e instanceof UsageError ? 2 : 1
  }
}
