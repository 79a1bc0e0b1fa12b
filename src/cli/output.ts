import { untrusted, untrustedLines } from '../errors'
import { DownloadProgress, Log, mb, progressLine } from '../log'
import { SetupIO } from '../setup'

/** What the command prints: as safe as the action's log (see untrusted), since a CI step's runner reads it too. */
export const print = (stream: NodeJS.WriteStream, text: string): boolean => stream.write(untrustedLines(text))

export interface Voice {
  json: boolean
  quiet: boolean
  verbose: boolean
  /** stdout is someone else's (run's command): the log goes to stderr */
  quietStdout: boolean
}

/**
 * The engine's log as a person reads it: plain lines, warnings and errors on stderr, and on a terminal
 * a download's progress as one bar redrawn in place. With --json stdout holds the one JSON document
 * and with run it is the command's: the log then goes to stderr.
 */
export function commandLog(voice: Voice): Log & { group(title: string): void; error(m: string): void } {
  const out = (s: string): boolean => (voice.json || voice.quietStdout ? process.stderr : process.stdout).write(s)
  const err = (s: string): boolean => process.stderr.write(s)
  const tty = !voice.json && !voice.quiet && process.stdout.isTTY === true
  let bar = false
  // A line after a bar starts on a line of its own.
  const line = (write: (s: string) => boolean, text: string): void => {
    if (bar) {
      out('\n')
      bar = false
    }
    write(`${untrustedLines(text)}\n`)
  }
  return {
    info: m => voice.quiet || line(out, m),
    debug: m => voice.verbose && line(out, `debug: ${m}`),
    notice: m => voice.quiet || line(out, `notice: ${m}`),
    warning: m => line(err, `warning: ${m}`),
    error: m => line(err, `error: ${m}`),
    group: title => voice.quiet || line(out, title),
    progress: p => {
      if (voice.quiet) return
      if (!tty) return line(out, progressLine(p))
      out(`\r${untrusted(progressBar(p))}`)
      bar = true
    },
    // The command never shows a URL's credentials (redact), and has no log to mask them in.
    secret: () => undefined,
  }
}

/** The engine's io in the command: groups are heading lines; nothing is handed over, since no post step follows. */
export function commandIO(voice: Voice): { io: SetupIO; log: ReturnType<typeof commandLog> } {
  const log = commandLog(voice)
  return {
    log,
    io: {
      log,
      group: (title, step) => {
        log.group(title)
        return step()
      },
      handoff: { cacheSave: () => undefined, builder: () => undefined, uninstall: () => undefined },
    },
  }
}

/** A download's progress as a terminal bar. */
export function progressBar(p: DownloadProgress, width = 30): string {
  const name = p.shown.slice(p.shown.lastIndexOf('/') + 1)
  if (!Number.isFinite(p.declared)) return `${name} ${mb(p.bytes)} MB`
  const share = Math.min(1, p.bytes / p.declared)
  const filled = Math.round(share * width)
  return `${name} [${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ${Math.round(share * 100)}% ${mb(p.bytes)}/${mb(p.declared)} MB`
}
