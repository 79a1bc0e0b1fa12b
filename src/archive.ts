import { createReadStream, createWriteStream, promises as fs } from 'fs'
import * as os from 'os'
import * as path from 'path'
import { pipeline } from 'stream/promises'
import { ActionError, errorMessage } from './errors'
import { describeStart } from './elf'
import { ProcessRunner, RunOptions, RunResult, lastLine } from './process'
import { findTarget } from './targets'

export type ArchiveFormat = 'elf' | 'tar' | 'tar.gz' | 'tar.xz' | 'tar.zst' | 'deb'

type TarFormat = 'tar' | 'tar.gz' | 'tar.xz' | 'tar.zst'

const ACCEPTED = 'a static ELF binary, .tar, .tar.gz/.tgz, .tar.xz, .tar.zst or .deb'

/** tar's option for each compression (GNU tar runs gzip, xz or zstd itself). */
const TAR_FLAGS: Record<TarFormat, string[]> = {
  tar: [],
  'tar.gz': ['-z'],
  'tar.xz': ['-J'],
  'tar.zst': ['--zstd'],
}

const COMPRESSION: Record<TarFormat, string> = { tar: 'not', 'tar.gz': 'gzip', 'tar.xz': 'xz', 'tar.zst': 'zstd' }

/** Decompressor tar runs for each format, and the package that provides it. */
const DECOMPRESSOR: Record<string, string> = { gzip: 'gzip', xz: 'xz-utils', zstd: 'zstd' }

function startsWith(buf: Buffer, bytes: readonly number[], at = 0): boolean {
  if (buf.length < at + bytes.length) return false
  return bytes.every((b, i) => buf[at + i] === b)
}

/** A plain tar starts with a header block: "ustar" at 257, or (old v7 archives) a valid checksum. */
function looksLikeTar(buf: Buffer): boolean {
  if (buf.length < 512) return false
  if (buf.subarray(257, 262).toString('latin1') === 'ustar') return true
  const field = buf.subarray(148, 156).toString('latin1').replace(/[\0 ]+$/, '').trim()
  if (!/^[0-7]+$/.test(field)) return false
  let sum = 0
  for (let i = 0; i < 512; i++) sum += i >= 148 && i < 156 ? 0x20 : buf[i]
  return sum === parseInt(field, 8) && buf[0] !== 0
}

function formatOf(head: Buffer): ArchiveFormat | undefined {
  if (startsWith(head, [0x7f, 0x45, 0x4c, 0x46])) return 'elf'
  if (startsWith(head, [0x1f, 0x8b])) return 'tar.gz'
  if (startsWith(head, [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00])) return 'tar.xz'
  if (startsWith(head, [0x28, 0xb5, 0x2f, 0xfd])) return 'tar.zst'
  if (head.subarray(0, 8).toString('latin1') === '!<arch>\n') return 'deb'
  if (looksLikeTar(head)) return 'tar'
  return undefined
}

async function readRange(file: string, offset: number, length: number): Promise<Buffer> {
  const fh = await fs.open(file, 'r')
  try {
    const buf = Buffer.allocUnsafe(length)
    let done = 0
    while (done < length) {
      const { bytesRead } = await fh.read(buf, done, length - done, offset + done)
      if (bytesRead === 0) break
      done += bytesRead
    }
    return buf.subarray(0, done)
  } finally {
    await fh.close()
  }
}

async function readHead(file: string, label: string): Promise<Buffer> {
  try {
    return await readRange(file, 0, 512)
  } catch (e) {
    throw new ActionError(`${label} cannot be read (${errorMessage(e)}); check qemu-url`)
  }
}

/**
 * Detects the download's format from its first bytes (never from its name).
 * ActionError naming `label` (default: the file) for anything else.
 */
export async function detectFormat(file: string, label: string = file): Promise<ArchiveFormat> {
  const head = await readHead(file, label)
  const format = formatOf(head)
  if (!format) {
    const known = startsWith(head, [0x50, 0x4b, 0x03, 0x04])
      ? 'a zip archive'
      : startsWith(head, [0x42, 0x5a, 0x68])
        ? 'bzip2-compressed'
        : undefined
    if (known) {
      throw new ActionError(`${label} is ${known}, which this action cannot unpack; expected ${ACCEPTED}; check qemu-url`)
    }
    throw new ActionError(
      `${label} is not a supported emulator download (${describeStart(head)}); expected ${ACCEPTED}; check qemu-url`,
    )
  }
  return format
}

// ---- .deb (ar archive) ----------------------------------------------------

interface DataMember {
  name: string
  offset: number
  size: number
  format: TarFormat
}

/** Finds data.tar.* in a Debian package: "!<arch>\n", then per member a 60-byte header and its data padded to even length. */
async function findDebData(file: string, label: string): Promise<DataMember> {
  const { size: fileSize } = await fs.stat(file)
  const truncated = (): ActionError =>
    new ActionError(
      `${label} is a truncated .deb (ar archive ends early); the download may be incomplete; re-run or check qemu-url`,
    )
  let pos = 8
  while (pos + 60 <= fileSize) {
    const header = await readRange(file, pos, 60)
    if (header.subarray(58, 60).toString('latin1') !== '`\n') {
      throw new ActionError(`${label} is a corrupt .deb (bad ar member header at byte ${pos}); re-run or check qemu-url`)
    }
    let name = header.subarray(0, 16).toString('latin1').trimEnd()
    let size = Number(header.subarray(48, 58).toString('latin1').trim())
    if (!Number.isSafeInteger(size) || size < 0) {
      throw new ActionError(`${label} is a corrupt .deb (bad ar member size at byte ${pos}); re-run or check qemu-url`)
    }
    let offset = pos + 60
    const stored = size
    const bsd = /^#1\/(\d+)$/.exec(name)
    if (bsd) {
      // BSD ar: the name is the first N bytes of the data
      const n = Number(bsd[1])
      name = (await readRange(file, offset, n)).toString('latin1').replace(/\0+$/, '')
      offset += n
      size -= n
    }
    name = name.replace(/\/$/, '')
    if (name.startsWith('data.tar')) {
      if (offset + size > fileSize) throw truncated()
      const inner = formatOf(await readRange(file, offset, Math.min(size, 512)))
      if (inner === undefined || inner === 'elf' || inner === 'deb') {
        throw new ActionError(
          `${label} has a ${name} this action cannot unpack (only gzip, xz, zstd or uncompressed data.tar); use another package or a .tar.gz`,
        )
      }
      return { name, offset, size, format: inner }
    }
    pos += 60 + stored + (stored % 2)
  }
  if (pos < fileSize) throw truncated()
  throw new ActionError(`${label} is a .deb without a data.tar member; check qemu-url`)
}

// ---- tar listing ------------------------------------------------------------

interface Member {
  /** name exactly as stored, passed back to tar */
  raw: string
  /** normalized: no leading "./", no trailing "/" */
  key: string
  /** first letter of `tar -tv`: '-' file, 'h' hard link, 'l' symlink, 'd' directory, ... */
  type: string
  size: number
  /** symlink target, or for hard links the member name linked to */
  link?: string
}

const C_ESCAPES: Record<string, number> = { a: 7, b: 8, f: 12, n: 10, r: 13, t: 9, v: 11, '\\': 92, '"': 34, '?': 63, "'": 39 }

/** Parses a C-quoted string ("...", as printed by tar --quoting-style=c) starting at s[start]. */
function parseCString(s: string, start: number): { value: string; end: number } | undefined {
  if (s[start] !== '"') return undefined
  const bytes: number[] = []
  let i = start + 1
  while (i < s.length) {
    const ch = s[i]
    if (ch === '"') return { value: Buffer.from(bytes).toString('utf8'), end: i + 1 }
    if (ch === '\\') {
      const next = s[i + 1]
      const oct = /^[0-7]{1,3}/.exec(s.slice(i + 1, i + 4))
      if (oct) {
        bytes.push(parseInt(oct[0], 8) & 0xff)
        i += 1 + oct[0].length
        continue
      }
      if (next !== undefined && next in C_ESCAPES) {
        bytes.push(C_ESCAPES[next])
        i += 2
        continue
      }
      bytes.push(92)
      i += 1
      continue
    }
    bytes.push(...Buffer.from(ch, 'utf8'))
    i += 1
  }
  return undefined
}

function normalizeKey(name: string): string {
  let key = path.posix.normalize(name.replace(/^\/+/, ''))
  key = key.replace(/\/+$/, '')
  return key === '.' ? '' : key
}

function isUnsafeName(name: string): boolean {
  return name.startsWith('/') || name.split('/').includes('..')
}

/** Parses `LC_ALL=C tar -tv --quoting-style=c --numeric-owner` output. */
function parseListing(stdout: string): Member[] {
  const members: Member[] = []
  for (const line of stdout.split('\n')) {
    if (!line.trim()) continue
    const q = line.indexOf('"')
    const name = q >= 0 ? parseCString(line, q) : undefined
    if (!name) throw new Error(`unexpected tar listing line: ${line}`)
    const fields = line.slice(0, q).trim().split(/\s+/)
    const size = Number(fields[2])
    const member: Member = {
      raw: name.value,
      key: normalizeKey(name.value),
      type: line[0],
      size: Number.isSafeInteger(size) ? size : 0,
    }
    const rest = line.slice(name.end)
    const arrow = rest.startsWith(' -> ') ? 4 : rest.startsWith(' link to ') ? 9 : -1
    if (arrow > 0) member.link = parseCString(rest, arrow)?.value
    members.push(member)
  }
  return members
}

/** Lines tar adds after the real error; skipped when picking the line to show. */
const TAR_NOISE = /Error is not recoverable|Child returned status|Exiting with failure status|Removing leading/

function tarErrorLine(res: RunResult): string {
  const useful = res.stderr
    .split('\n')
    .filter(l => l.trim() && !TAR_NOISE.test(l))
    .join('\n')
  const line = lastLine(useful) || lastLine(res.stderr)
  if (line) return line
  return res.signal ? `tar was killed by ${res.signal}` : `tar exited with status ${res.code}`
}

// ---- the archive ------------------------------------------------------------

const EMULATOR_NAME = /^qemu-([a-z0-9_]+?)(-static)?$/
const TARGET_NAME = /^[a-z0-9_]+$/

export class EmulatorArchive {
  /** target -> the regular-file member holding its emulator (links already followed) */
  private readonly picks = new Map<string, Member>()
  /** targets whose only candidates are broken links: why */
  private readonly broken = new Map<string, string>()

  private constructor(
    private readonly file: string,
    private readonly label: string,
    private readonly runner: ProcessRunner,
    readonly format: ArchiveFormat,
    private readonly tarFormat: TarFormat | undefined,
    private readonly debData: DataMember | undefined,
  ) {}

  /** Detects the format and (for archives) lists the members once. `label` is the URL or path shown in errors. */
  static async open(file: string, label: string, runner: ProcessRunner): Promise<EmulatorArchive> {
    const format = await detectFormat(file, label)
    if (format === 'elf') return new EmulatorArchive(file, label, runner, format, undefined, undefined)
    const debData = format === 'deb' ? await findDebData(file, label) : undefined
    const tarFormat: TarFormat = debData ? debData.format : (format as TarFormat)
    const archive = new EmulatorArchive(file, label, runner, format, tarFormat, debData)
    const res = await archive.tar(['-t', '-v', '--numeric-owner', '--quoting-style=c'])
    let members: Member[]
    try {
      members = parseListing(res.stdout)
    } catch (e) {
      throw new ActionError(`cannot read the member list of ${label} (${errorMessage(e)}); this action needs GNU tar`)
    }
    const unsafe = members.find(m => isUnsafeName(m.raw))
    if (unsafe) {
      throw new ActionError(
        `${label} contains the member "${unsafe.raw}", which would be written outside the destination; refusing to use this archive; check qemu-url`,
      )
    }
    archive.index(members)
    return archive
  }

  /** QEMU target names (T) for which the archive holds an emulator. For format 'elf' this is [] (the caller knows the target). */
  targets(): string[] {
    return [...this.picks.keys()].filter(t => findTarget(t) !== undefined).sort()
  }

  /**
   * Extracts the emulators for `targets` to `destDir/qemu-<T>` (mode 0755) with
   * a single tar run, through a fresh temporary directory under destDir.
   * Returns T -> absolute path.
   */
  async extract(targets: readonly string[], destDir: string): Promise<Map<string, string>> {
    const wanted = [...new Set(targets)]
    const bad = wanted.find(t => !TARGET_NAME.test(t))
    if (bad !== undefined) throw new ActionError(`'${bad}' is not a QEMU target name`)
    const result = new Map<string, string>()
    if (wanted.length === 0) return result
    if (this.format === 'elf' && wanted.length > 1) {
      throw new ActionError(
        `${this.label} is a single emulator binary, so it cannot provide ${wanted.join(', ')} at once; use an archive that holds all of them`,
      )
    }
    if (this.format !== 'elf') this.checkPresent(wanted)

    const dest = path.resolve(destDir)
    await fs.mkdir(dest, { recursive: true })
    const tmp = await fs.mkdtemp(path.join(dest, '.qemu-extract-'))
    try {
      const sources = new Map<string, string>()
      if (this.format === 'elf') {
        const out = path.join(tmp, 'emulator')
        await fs.copyFile(this.file, out)
        sources.set(wanted[0], out)
      } else {
        const root = path.join(tmp, 'root')
        await fs.mkdir(root)
        const picks = wanted.map(t => this.picks.get(t) as Member)
        const names = [...new Set(picks.map(p => p.raw))]
        await this.tar(
          ['-x', '-C', root, '--no-same-owner', '--no-same-permissions', '--no-wildcards', '--occurrence=1', '--', ...names],
          tmp,
        )
        for (const [i, t] of wanted.entries()) {
          const data = picks[i]
          const file = path.join(root, data.key)
          const st = await fs.lstat(file).catch(() => undefined)
          if (!st || !st.isFile() || st.size !== data.size) {
            throw new ActionError(
              `${this.label}: tar did not extract ${data.raw} intact (${st ? `${st.size} of ${data.size} bytes` : 'missing'}); the download may be incomplete; re-run or check qemu-url`,
            )
          }
          sources.set(t, file)
        }
      }
      // Several targets may share one member: copy for all but its last user.
      const lastUser = new Map<string, string>()
      for (const t of wanted) lastUser.set(sources.get(t) as string, t)
      for (const t of wanted) {
        const src = sources.get(t) as string
        const out = path.join(dest, `qemu-${t}`)
        try {
          if (lastUser.get(src) === t) {
            await fs.chmod(src, 0o755)
            await fs.rename(src, out)
          } else {
            const copy = path.join(tmp, `copy-${t}`)
            await fs.copyFile(src, copy)
            await fs.chmod(copy, 0o755)
            await fs.rename(copy, out)
          }
        } catch (e) {
          throw new ActionError(`cannot write ${out} (${errorMessage(e)})`)
        }
        result.set(t, out)
      }
    } finally {
      await fs.rm(tmp, { recursive: true, force: true })
    }
    return result
  }

  private checkPresent(wanted: readonly string[]): void {
    const missing = wanted.filter(t => !this.picks.has(t))
    if (missing.length === 0) return
    const why = missing.map(t => this.broken.get(t)).find(b => b !== undefined)
    if (why) throw new ActionError(`${this.label}: ${why}; check qemu-url`)
    const present = this.targets()
    const holds = present.length ? `it holds: ${present.join(', ')}` : 'it holds no qemu-<target> emulators'
    const looked = missing.map(t => `qemu-${t}[-static]`).join(', ')
    throw new ActionError(
      `${this.label} has no emulator for ${missing.join(', ')} (looked for ${looked}); ${holds}; choose from those targets or check qemu-url`,
    )
  }

  /** Finds the emulator candidates (by basename) and resolves links inside the archive. */
  private index(members: readonly Member[]): void {
    const byKey = new Map<string, Member>()
    for (const m of members) if (!byKey.has(m.key)) byKey.set(m.key, m)

    interface Candidate {
      target: string
      member: Member
      rank: number[]
    }
    const candidates: Candidate[] = []
    members.forEach((m, order) => {
      if (m.type === 'd' || byKey.get(m.key) !== m) return
      const parts = m.key.split('/')
      const match = EMULATOR_NAME.exec(parts[parts.length - 1])
      // usr/share holds docs, man pages and binfmt-support files named like emulators
      if (!match || parts.includes('share')) return
      const inBin = parts.length > 1 && /^s?bin$/.test(parts[parts.length - 2])
      candidates.push({ target: match[1], member: m, rank: [match[2] ? 0 : 1, inBin ? 0 : 1, parts.length, order] })
    })
    const cmp = (a: Candidate, b: Candidate): number => {
      for (let i = 0; i < a.rank.length; i++) if (a.rank[i] !== b.rank[i]) return a.rank[i] - b.rank[i]
      return 0
    }
    candidates.sort(cmp)
    for (const c of candidates) {
      if (this.picks.has(c.target)) continue
      const resolved = resolveMember(byKey, c.member.key)
      if (typeof resolved === 'string') {
        if (!this.broken.has(c.target)) this.broken.set(c.target, `${c.member.raw} ${resolved}`)
        continue
      }
      this.picks.set(c.target, resolved)
      this.broken.delete(c.target)
    }
  }

  /**
   * Runs tar on the archive; ActionError when it fails. A .deb's data.tar.* is
   * first copied to a file in `scratch` (default: a temp dir, removed after):
   * tar reads a file faster than a pipe, and nothing large is held in memory.
   */
  private async tar(args: readonly string[], scratch?: string): Promise<RunResult> {
    if (!this.debData) return this.runTar(this.file, args)
    const dir = scratch ?? (await fs.mkdtemp(path.join(os.tmpdir(), 'qemu-deb-')))
    const inner = path.join(dir, this.debData.name)
    try {
      const { offset, size } = this.debData
      if (size > 0) await pipeline(createReadStream(this.file, { start: offset, end: offset + size - 1 }), createWriteStream(inner))
      else await fs.writeFile(inner, '')
      return await this.runTar(inner, args)
    } finally {
      await fs.rm(scratch ? inner : dir, { recursive: true, force: true })
    }
  }

  private async runTar(source: string, args: readonly string[]): Promise<RunResult> {
    const fmt = this.tarFormat as TarFormat
    // C locale: tar's listing and messages are parsed. xz 5.4+ decompresses multi-block
    // files (Debian's data.tar.xz) in parallel with -T0; older xz ignores it.
    const options: RunOptions = { env: { XZ_OPT: '-T0', ...process.env, LC_ALL: 'C' } }
    const full = [...TAR_FLAGS[fmt], '-f', source, ...args]
    let res: RunResult
    try {
      res = await this.runner.run('tar', full, options)
    } catch (e) {
      throw new ActionError(`cannot run tar to unpack ${this.label} (${errorMessage(e)}); install tar`)
    }
    if (res.code === 0) return res
    const line = tarErrorLine(res)
    const exec = /(\S+): Cannot exec/.exec(res.stderr)
    if (exec) {
      const prog = path.basename(exec[1].replace(/^"(.*)"$/, '$1'))
      throw new ActionError(
        `${this.label} is ${COMPRESSION[fmt]}-compressed but this runner cannot decompress it (${line}); install ${DECOMPRESSOR[prog] ?? prog}`,
      )
    }
    if (/does not look like a tar archive/.test(res.stderr)) {
      throw new ActionError(
        `${this.label} is ${fmt === 'tar' ? 'not' : `${COMPRESSION[fmt]}-compressed but not`} a tar archive; expected ${ACCEPTED}; check qemu-url`,
      )
    }
    const badOption = /(unrecognized|invalid|unknown) option/i.exec(res.stderr)
    if (badOption) {
      const hint = fmt === 'tar.zst' && /zstd/.test(res.stderr) ? 'install zstd and GNU tar 1.31 or newer' : 'install GNU tar'
      throw new ActionError(`this runner's tar cannot unpack ${this.label} (${line}); ${hint}`)
    }
    const what = this.debData ? `${this.debData.name} in ${this.label}` : this.label
    throw new ActionError(
      `${what} is corrupt or truncated (${line}); the download may be incomplete; re-run or check qemu-url`,
    )
  }
}

/**
 * Follows symlinks (in any path component, relative to the link's directory;
 * absolute targets are taken relative to the archive root) and hard links
 * to the regular-file member holding the data. A string says why it failed,
 * phrased to follow the name of the member asked for.
 */
function resolveMember(byKey: ReadonlyMap<string, Member>, key: string, depth = 0): Member | string {
  if (depth > 40) return 'is part of a link loop'
  const parts = key.split('/')
  for (let i = 1; i <= parts.length; i++) {
    const prefix = parts.slice(0, i).join('/')
    const m = byKey.get(prefix)
    if (!m || m.type !== 'l') continue
    if (m.link === undefined) return `links to ${prefix}, a symlink without a target`
    const base = m.link.startsWith('/') ? m.link : path.posix.join(path.posix.dirname(prefix), m.link)
    const next = path.posix.normalize(path.posix.join(base, ...parts.slice(i)).replace(/^\/+/, ''))
    if (next === '..' || next.startsWith('../')) return `links to ${m.link}, which points outside the archive`
    return resolveMember(byKey, normalizeKey(next), depth + 1)
  }
  const m = byKey.get(key)
  const it = depth ? `links to ${key}, which` : ''
  if (!m) return `${it} is not in the archive`.trim()
  if (m.type === 'h') {
    if (m.link === undefined || isUnsafeName(m.link)) return `links to ${m.link ?? '(nothing)'}, which is outside the archive`
    return resolveMember(byKey, normalizeKey(m.link), depth + 1)
  }
  if (m.type === '-' || m.type === 'C') return m
  return `${it} is ${m.type === 'd' ? 'a directory' : `not a regular file (tar type "${m.type}")`}`.trim()
}
