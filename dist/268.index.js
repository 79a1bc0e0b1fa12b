"use strict";
exports.id = 268;
exports.ids = [268];
exports.modules = {

/***/ 8268:
/***/ ((__unused_webpack_module, __webpack_exports__, __webpack_require__) => {

// ESM COMPAT FLAG
__webpack_require__.r(__webpack_exports__);

// EXPORTS
__webpack_require__.d(__webpack_exports__, {
  start: () => (/* binding */ start)
});

;// CONCATENATED MODULE: ./src/errors.ts
/**
 * A failure the user can fix. The message is one line that names the input or
 * file at fault and what to do; main prints it as the step's error, without a stack.
 */
class errors_ActionError extends Error {
    constructor(message) {
        super(message);
        this.name = 'ActionError';
    }
}
function errors_errorMessage(e) {
    return e instanceof Error ? e.message : String(e);
}
/** A system call's error as `CODE: what`, without the call and path Node appends (`EINVAL: invalid argument`); else the message. */
function errnoMessage(e) {
    const err = e;
    return err.code ? `${err.code}: ${err.message.replace(/^\w+: /, '').split(',')[0]}` : errors_errorMessage(e);
}
/**
 * The one way text the action did not write (a lock holder's answer, a server's message, a URL, a file or
 * member name, a program's output) reaches a log line, the job summary or an output: one line (ANSI escapes
 * go; control characters, line separators and bidi overrides become spaces), with workflow commands made inert
 * in both of the runner's syntaxes, `::name::` at the start of a line and the older `##[name]` anywhere in it;
 * at most `max` characters, the rest cut with '...'.
 */
function untrusted(text, max = Infinity) {
    const one = text
        .replace(/\x1b\[[0-?]*[ -/]*[@-~]/g, '')
        .replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g, ' ')
        .replace(/##\[/g, '## [')
        .replace(/^(\s*)::/, '$1: :');
    return one.length > max ? `${one.slice(0, max - 3)}...` : one;
}
/** Each line of a message as untrusted() makes it, the line breaks kept: for whole log messages. */
function untrustedLines(text) {
    return text
        .split('\n')
        .map(l => untrusted(l))
        .join('\n');
}
/** What `read` gives, or `fallback` when it throws: for files the kernel may not offer (a /proc entry, an unmounted table). */
function readOr(read, fallback) {
    try {
        return read();
    }
    catch {
        return fallback;
    }
}

// EXTERNAL MODULE: external "crypto"
var external_crypto_ = __webpack_require__(6982);
// EXTERNAL MODULE: external "fs"
var external_fs_ = __webpack_require__(9896);
;// CONCATENATED MODULE: ./src/fetch/checksum.ts



/** Lines `<sha256>  <file name>` (sha256sum's format, also with `*` for binary mode); blank lines and # comments ignored. */
function parseChecksums(text) {
    const list = new Map();
    text.split('\n').forEach((raw, i) => {
        const line = raw.trim();
        if (!line || line.startsWith('#'))
            return;
        const m = /^([0-9a-fA-F]{64})\s+\*?(\S+)$/.exec(line);
        if (!m) {
            throw new errors_ActionError(`qemu-sha256: line ${i + 1} ('${line.slice(0, 60)}') is not '<sha256>  <file name>'; use the output of sha256sum`);
        }
        list.set(m[2], m[1].toLowerCase());
    });
    return list;
}
function sha256File(path) {
    return new Promise((resolve, reject) => {
        const hash = (0,external_crypto_.createHash)('sha256');
        (0,external_fs_.createReadStream)(path)
            .on('data', d => hash.update(d))
            .on('error', reject)
            .on('end', () => resolve(hash.digest('hex')));
    });
}
/** Throws when `name` is listed with another digest. Returns whether it was listed. */
function checkDigest(list, name, actual, what) {
    const expected = list.get(name);
    if (expected === undefined)
        return false;
    if (expected !== actual) {
        throw new errors_ActionError(`qemu-sha256: checksum mismatch for ${what}: expected ${expected}, got ${actual}; the file changed or the list is wrong - nothing was registered`);
    }
    return true;
}
/** The one wording of a missing line: what to add, once the file has been checked by hand. */
function noLine(names, sha, suggest) {
    return new errors_ActionError(`qemu-sha256: no line for ${names.join(' or ')}; add '${sha}  ${suggest}' once you have checked the file`);
}
/**
 * The qemu-sha256 policy, decided here only. Without lines, everything passes.
 * With lines, a file named in the list must match; every emulator used must be
 * covered by its own line (qemu-T, qemu-T-static, or its file's name) or by the
 * line of the file it came from. Checked on what is about to be registered,
 * before anything runs.
 */
class ChecksumPolicy {
    list;
    constructor(list) {
        this.list = list;
    }
    get active() {
        return this.list.size > 0;
    }
    /**
     * A downloaded or local file, as soon as its digest is known: a mismatch
     * fails at once; an unlisted archive fails at once too (its emulators could
     * only be covered by lines of their own when it is a single emulator).
     */
    checkFile(file, mayBeEmulator) {
        if (!this.active)
            return;
        if (checkDigest(this.list, file.name, file.sha256, file.name))
            return;
        if (!mayBeEmulator)
            throw noLine([file.name], file.sha256, file.name);
    }
    /** An emulator about to be used: `sha256` is the digest of the very bytes that will be registered. */
    checkEmulator(target, sha256, from) {
        if (!this.active)
            return;
        const own = [`qemu-${target}`, `qemu-${target}-static`, from.name].find(n => this.list.has(n) && n !== from.name);
        if (own) {
            checkDigest(this.list, own, sha256, `qemu-${target}`);
            return;
        }
        // The emulator is the file itself (per-target or a local directory): its line is the file's.
        if (from.sha256 === sha256 && checkDigest(this.list, from.name, sha256, from.name))
            return;
        if (from.sha256 !== sha256 && checkDigest(this.list, from.name, from.sha256, from.name))
            return;
        const names = from.name === `qemu-${target}` ? [from.name] : [from.name, `qemu-${target}`];
        throw noLine(names, from.sha256 || sha256, from.name);
    }
}

;// CONCATENATED MODULE: ./src/targets.ts
// The QEMU user-mode target table. Magic and mask per target are the values of
// QEMU's scripts/qemu-binfmt-conf.sh (cross-checked in tests against the files
// Debian's qemu-user-static installs under /usr/lib/binfmt.d). A "family" groups
// targets a host of that family may run natively.
const TABLE = [
    { name: 'i386', family: 'i386', magic: '7f454c4601010100000000000000000002000300', mask: 'fffffffffffefe00fffffffffffffffffeffffff' },
    { name: 'i486', family: 'i386', magic: '7f454c4601010100000000000000000002000600', mask: 'fffffffffffefe00fffffffffffffffffeffffff' },
    { name: 'alpha', family: 'alpha', magic: '7f454c4602010100000000000000000002002690', mask: 'ffffffffffffff00fffffffffffffffffeffffff' },
    { name: 'arm', family: 'arm', magic: '7f454c4601010100000000000000000002002800', mask: 'ffffffffffffff00fffffffffffffffffeffffff' },
    { name: 'armeb', family: 'armeb', magic: '7f454c4601020100000000000000000000020028', mask: 'ffffffffffffff00fffffffffffffffffffeffff' },
    { name: 'sparc', family: 'sparc', magic: '7f454c4601020100000000000000000000020002', mask: 'fffffffffffffffcfffffffffffffffffffeffff' },
    { name: 'sparc32plus', family: 'sparc', magic: '7f454c4601020100000000000000000000020012', mask: 'fffffffffffffffcfffffffffffffffffffeffff' },
    { name: 'sparc64', family: 'sparc', magic: '7f454c460202010000000000000000000002002b', mask: 'fffffffffffffffcfffffffffffffffffffeffff' },
    { name: 'ppc', family: 'ppc', magic: '7f454c4601020100000000000000000000020014', mask: 'fffffffffffffffcfffffffffffffffffffeffff' },
    { name: 'ppc64', family: 'ppc', magic: '7f454c4602020100000000000000000000020015', mask: 'fffffffffffffffcfffffffffffffffffffeffff' },
    { name: 'ppc64le', family: 'ppcle', magic: '7f454c4602010100000000000000000002001500', mask: 'fffffffffffffffcfffffffffffffffffeffff00' },
    { name: 'm68k', family: 'm68k', magic: '7f454c4601020100000000000000000000020004', mask: 'ffffffffffffff00fffffffffffffffffffeffff' },
    {
        name: 'mips',
        family: 'mips',
        magic: '7f454c46010201000000000000000000000200080000000000000000000000000000000000000000',
        mask: 'ffffffffffffff00fefffffffffffffffffeffff0000000000000000000000000000000000000020',
    },
    {
        name: 'mipsel',
        family: 'mips',
        magic: '7f454c46010101000000000000000000020008000000000000000000000000000000000000',
        mask: 'ffffffffffffff00fefffffffffffffffeffffff0000000000000000000000000000000020',
    },
    {
        name: 'mipsn32',
        family: 'mips',
        magic: '7f454c46010201000000000000000000000200080000000000000000000000000000000000000020',
        mask: 'ffffffffffffff00fefffffffffffffffffeffff0000000000000000000000000000000000000020',
    },
    {
        name: 'mipsn32el',
        family: 'mips',
        magic: '7f454c46010101000000000000000000020008000000000000000000000000000000000020',
        mask: 'ffffffffffffff00fefffffffffffffffeffffff0000000000000000000000000000000020',
    },
    { name: 'mips64', family: 'mips', magic: '7f454c4602020100000000000000000000020008', mask: 'ffffffffffffff00fefffffffffffffffffeffff' },
    { name: 'mips64el', family: 'mips', magic: '7f454c4602010100000000000000000002000800', mask: 'ffffffffffffff00fefffffffffffffffeffffff' },
    { name: 'sh4', family: 'sh4', magic: '7f454c4601010100000000000000000002002a00', mask: 'fffffffffffffffcfffffffffffffffffeffffff' },
    { name: 'sh4eb', family: 'sh4', magic: '7f454c460102010000000000000000000002002a', mask: 'fffffffffffffffcfffffffffffffffffffeffff' },
    { name: 's390x', family: 's390x', magic: '7f454c4602020100000000000000000000020016', mask: 'fffffffffffffffcfffffffffffffffffffeffff' },
    { name: 'aarch64', family: 'arm', magic: '7f454c460201010000000000000000000200b700', mask: 'ffffffffffffff00fffffffffffffffffeffffff' },
    { name: 'aarch64_be', family: 'armeb', magic: '7f454c46020201000000000000000000000200b7', mask: 'ffffffffffffff00fffffffffffffffffffeffff' },
    { name: 'hppa', family: 'hppa', magic: '7f454c460102010000000000000000000002000f', mask: 'ffffffffffffff00fffffffffffffffffffeffff' },
    { name: 'riscv32', family: 'riscv', magic: '7f454c460101010000000000000000000200f300', mask: 'ffffffffffffff00fffffffffffffffffeffffff' },
    { name: 'riscv64', family: 'riscv', magic: '7f454c460201010000000000000000000200f300', mask: 'ffffffffffffff00fffffffffffffffffeffffff' },
    { name: 'xtensa', family: 'xtensa', magic: '7f454c4601010100000000000000000002005e00', mask: 'ffffffffffffff00fffffffffffffffffeffffff' },
    { name: 'xtensaeb', family: 'xtensaeb', magic: '7f454c460102010000000000000000000002005e', mask: 'ffffffffffffff00fffffffffffffffffffeffff' },
    { name: 'microblaze', family: 'microblaze', magic: '7f454c460102010000000000000000000002baab', mask: 'ffffffffffffff00fffffffffffffffffffeffff' },
    { name: 'microblazeel', family: 'microblazeel', magic: '7f454c460101010000000000000000000200abba', mask: 'ffffffffffffff00fffffffffffffffffeffffff' },
    { name: 'or1k', family: 'or1k', magic: '7f454c460102010000000000000000000002005c', mask: 'ffffffffffffff00fffffffffffffffffffeffff' },
    { name: 'x86_64', family: 'i386', magic: '7f454c4602010100000000000000000002003e00', mask: 'fffffffffffefe00fffffffffffffffffeffffff' },
    { name: 'hexagon', family: 'hexagon', magic: '7f454c460101010000000000000000000200a400', mask: 'ffffffffffffff00fffffffffffffffffeffffff' },
    { name: 'loongarch64', family: 'loongarch', magic: '7f454c4602010100000000000000000002000201', mask: 'fffffffffffffffc00fffffffffffffffeffffff' },
];
const BY_NAME = new Map(TABLE.map(t => [t.name, t]));
function allTargets() {
    return TABLE;
}
function findTarget(name) {
    return BY_NAME.get(name);
}
function getTarget(name) {
    const t = BY_NAME.get(name);
    if (!t)
        throw new Error(`unknown QEMU target '${name}'`);
    return t;
}
/** i486 binaries run on qemu-i386; every other target has an emulator of its own name. */
function emulatorName(target) {
    return target.name === 'i486' ? 'i386' : target.name;
}
/** Docker platforms a target serves, in the order buildx lists them. */
const DOCKER_PLATFORMS = {
    x86_64: ['linux/amd64'],
    i386: ['linux/386'],
    aarch64: ['linux/arm64'],
    arm: ['linux/arm/v7', 'linux/arm/v6'],
    ppc64le: ['linux/ppc64le'],
    ppc64: ['linux/ppc64'],
    s390x: ['linux/s390x'],
    riscv64: ['linux/riscv64'],
    mips64el: ['linux/mips64le'],
    mips64: ['linux/mips64'],
    mipsel: ['linux/mipsle'],
    mips: ['linux/mips'],
    loongarch64: ['linux/loong64'],
};
function dockerPlatforms(target) {
    return DOCKER_PLATFORMS[target.name] ?? [];
}
function hexToBytes(hex) {
    return Buffer.from(hex, 'hex');
}
/** The `\xNN` form binfmt_misc's register file expects. */
function hexToEscaped(hex) {
    return hex.replace(/(..)/g, '\\x$1');
}
/** Whether a file starting with `header` would be matched by the target's magic/mask. */
function matchesHeader(magicHex, maskHex, header, offset = 0) {
    const magic = hexToBytes(magicHex);
    const mask = hexToBytes(maskHex);
    if (header.length < offset + magic.length)
        return false;
    for (let i = 0; i < magic.length; i++) {
        if ((header[offset + i] & mask[i]) !== (magic[i] & mask[i]))
            return false;
    }
    return true;
}

;// CONCATENATED MODULE: ./src/platform.ts


// Docker/Go architecture names (and common distro spellings) -> QEMU target.
const ARCH_ALIASES = {
    amd64: 'x86_64',
    'x86-64': 'x86_64',
    x64: 'x86_64',
    '386': 'i386',
    i686: 'i386',
    x86: 'i386',
    arm64: 'aarch64',
    armhf: 'arm',
    armel: 'arm',
    armv7: 'arm',
    armv7l: 'arm',
    armv6: 'arm',
    armv6l: 'arm',
    ppc64el: 'ppc64le',
    mips64le: 'mips64el',
    mipsle: 'mipsel',
    loong64: 'loongarch64',
    riscv: 'riscv64',
};
// Variants Docker platform strings may carry, per architecture.
const VARIANTS = {
    x86_64: ['v1', 'v2', 'v3', 'v4'],
    aarch64: ['v8', 'v9'],
    arm: ['v5', 'v6', 'v7'],
};
function resolveArch(name) {
    return findTarget(ARCH_ALIASES[name] ?? name);
}
/** One token: `linux/arm/v7`, `arm64`, `aarch64`, `linux/amd64/v2`, ... */
function parsePlatform(token) {
    const parts = token.toLowerCase().split('/');
    if (parts[0] === 'linux')
        parts.shift();
    if (parts.length === 0 || parts.length > 2 || !parts[0])
        return undefined;
    const target = resolveArch(parts[0]);
    if (!target)
        return undefined;
    if (parts.length === 2 && !(VARIANTS[target.name] ?? []).includes(parts[1]))
        return undefined;
    return target;
}
function splitList(value) {
    return value
        .split(/[\s,]+/)
        .map(s => s.trim())
        .filter(Boolean);
}
function parsePlatforms(value) {
    const tokens = splitList(value);
    if (tokens.length === 0 || tokens.some(t => t.toLowerCase() === 'all'))
        return { kind: 'all' };
    const targets = [];
    const unknown = [];
    for (const token of tokens) {
        const t = parsePlatform(token);
        if (!t)
            unknown.push(token);
        else if (!targets.includes(t))
            targets.push(t);
    }
    if (unknown.length) {
        throw new errors_ActionError(`platforms: unknown platform${unknown.length > 1 ? 's' : ''} ${unknown.map(u => `'${u}'`).join(', ')}; ` +
            `use 'all', Docker platforms (${knownDockerPlatforms().join(', ')}), ` +
            `their bare names (arm64, arm, 386, ...) or QEMU targets (${allTargets()
                .map(t => t.name)
                .join(', ')})`);
    }
    return { kind: 'list', targets };
}
function knownDockerPlatforms() {
    return allTargets().flatMap(t => [...dockerPlatforms(t)]);
}

// EXTERNAL MODULE: ./node_modules/js-yaml/dist/js-yaml.mjs
var js_yaml = __webpack_require__(3243);
;// CONCATENATED MODULE: ./src/buildx/append.ts
// The `append` input: a YAML list of extra builder nodes, e.g.
//
//   - name: arm64-node
//     endpoint: tcp://10.0.0.5:1234
//     platforms: linux/arm64,linux/arm/v7
//     driver-opts:
//       - env.BUILDKIT_STEP_LOG_MAX_SIZE=10485760
//
// Parsed with js-yaml (as docker/setup-buildx-action does), with the failsafe schema so
// every scalar stays the text the user wrote (no `on` -> true, no `0777` -> 511). Then
// each value is checked, because each one ends up on a docker command line: anything
// that could be read as an option, or is not what buildx takes, is a one-line error
// naming the item.


const KEYS = ['name', 'endpoint', 'platforms', 'driver-opts'];
// Far more than any real list of nodes; keeps a hostile input from costing time.
const MAX_TEXT = 64 * 1024;
// Node names as buildx takes them (it rejects others itself, later and less clearly).
const NODE_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;
// os/arch[/variant], as docker spells platforms.
const PLATFORM = /^[a-z0-9_]+\/[a-z0-9_]+(\/[a-z0-9_.]+)?$/;
// key=value, the key as buildx's driver options spell them (image, network, env.X, ...).
const DRIVER_OPT = /^[A-Za-z0-9][A-Za-z0-9_.-]*=/;
function parseAppend(yamlText) {
    if (yamlText.length > MAX_TEXT)
        fail(`the input is ${yamlText.length} characters; keep it under ${MAX_TEXT}`);
    let doc;
    try {
        doc = js_yaml/* load */.Hh(yamlText, { schema: js_yaml/* FAILSAFE_SCHEMA */.uH, filename: 'append' });
    }
    catch (e) {
        if (e instanceof js_yaml/* YAMLException */.tB) {
            const line = e.mark ? `line ${e.mark.line + 1}: ` : '';
            fail(`${line}${e.reason || 'not valid YAML'}; give a YAML list of nodes, each item starting with '- endpoint: ...'`);
        }
        throw e;
    }
    if (doc === undefined || doc === null)
        return [];
    if (!Array.isArray(doc))
        fail("expected a YAML list of nodes, each item starting with '- endpoint: ...'");
    return doc.map((item, i) => parseItem(item, i + 1));
}
function parseItem(item, n) {
    if (item === null || item === undefined)
        fail(`item ${n} is empty; give it at least an endpoint`);
    if (typeof item !== 'object' || Array.isArray(item)) {
        fail(`item ${n} must be a map of ${KEYS.join(', ')}; it is '${untrusted(String(item), 60)}'`);
    }
    const map = item;
    for (const key of Object.keys(map)) {
        if (!KEYS.includes(key))
            fail(`item ${n} has unknown key '${untrusted(key, 60)}'; use ${KEYS.join(', ')}`);
    }
    const endpoint = scalar(map.endpoint, n, 'endpoint');
    if (!endpoint)
        fail(`item ${n} has no endpoint; set endpoint to a docker context name or an address such as tcp://host:1234`);
    // Passed after `--` too; an endpoint never starts with '-', and whitespace means a mistake.
    if (endpoint.startsWith('-'))
        fail(`item ${n}: endpoint '${untrusted(endpoint, 60)}' starts with '-'; give a docker context name or an address such as tcp://host:1234`);
    if (/[\s\x00-\x1f\x7f]/.test(endpoint))
        fail(`item ${n}: endpoint '${untrusted(endpoint, 60)}' contains whitespace or control characters`);
    const node = {
        endpoint,
        platforms: platforms(map.platforms, n),
        driverOpts: driverOpts(map['driver-opts'], n),
    };
    const name = scalar(map.name, n, 'name');
    if (name) {
        if (!NODE_NAME.test(name))
            fail(`item ${n}: name '${untrusted(name, 60)}' is not a valid node name; use letters, digits, '.', '_' and '-', starting with a letter or digit`);
        node.name = name;
    }
    return node;
}
function scalar(v, n, key) {
    if (v === undefined || v === null)
        return '';
    if (Array.isArray(v))
        fail(`item ${n}: '${key}' must be a single value, not a list`);
    if (typeof v === 'object')
        fail(`item ${n}: '${key}' must be a single value, not a map`);
    return String(v).trim();
}
/** Plain values of a list, or the lines of one value; maps and nested lists are errors. */
function values(v, n, key) {
    if (v === undefined || v === null)
        return [];
    if (typeof v === 'object' && !Array.isArray(v))
        fail(`item ${n}: '${key}' must be a plain value or a list, not a map`);
    const items = Array.isArray(v) ? v : [v];
    return items.map(x => {
        if (x !== null && typeof x === 'object')
            fail(`item ${n}: '${key}' list items must be plain values, not ${Array.isArray(x) ? 'lists' : 'maps'}`);
        return x === null || x === undefined ? '' : String(x);
    });
}
/** `linux/arm64,linux/arm/v7`, a list (whose items may themselves hold commas) or block text. */
function platforms(v, n) {
    const out = [];
    for (const p of values(v, n, 'platforms')
        .flatMap(s => s.split(/[,\n]/))
        .map(s => s.trim())) {
        if (!p)
            continue;
        if (!PLATFORM.test(p))
            fail(`item ${n}: platform '${untrusted(p, 60)}' is not os/arch[/variant] such as linux/arm64`);
        if (!out.includes(p))
            out.push(p);
    }
    return out;
}
/** A list, or text with one option per line. Commas stay: buildx reads each --driver-opt as CSV itself. */
function driverOpts(v, n) {
    const out = [];
    for (const o of values(v, n, 'driver-opts')
        .flatMap(s => s.split('\n'))
        .map(s => s.trim())) {
        if (!o)
            continue;
        if (!DRIVER_OPT.test(o))
            fail(`item ${n}: driver-opts entry '${untrusted(o, 60)}' is not key=value (e.g. image=..., network=host, env.NAME=value)`);
        out.push(o);
    }
    return out;
}
function fail(message) {
    throw new errors_ActionError(`append: ${message}`);
}

;// CONCATENATED MODULE: ./src/inputs.ts





/** The pinned tonistiigi/binfmt release (tag deploy/v<qemu>-<build>). */
const DEFAULT_QEMU_VERSION = '10.2.3-68';
/** `{qemu}` is the version without its build suffix, as in the asset's file name. */
const DEFAULT_QEMU_URL = 'https://github.com/tonistiigi/binfmt/releases/download/deploy%2Fv{version}/qemu_v{qemu}_linux-{host}.tar.gz';
/** docker-image when empty (action.yml's default too): the image whose shell registers the emulators on the Docker path. */
const DEFAULT_DOCKER_IMAGE = 'busybox:stable';
function parseBoolean(name, value, fallback) {
    const v = value.trim().toLowerCase();
    if (v === '')
        return fallback;
    if (v === 'true')
        return true;
    if (v === 'false')
        return false;
    throw new errors_ActionError(`${name}: '${value.trim()}' is not a boolean; use true or false`);
}
function parseChoice(name, value, choices, fallback) {
    const v = value.trim().toLowerCase();
    if (v === '')
        return fallback;
    if (choices.includes(v))
        return v;
    throw new errors_ActionError(`${name}: '${value.trim()}' is not one of ${choices.join(', ')}`);
}
function parseSeconds(name, value, fallback) {
    const v = value.trim();
    if (v === '')
        return fallback;
    if (!/^\d{1,6}$/.test(v))
        throw new errors_ActionError(`${name}: '${v}' is not a whole number of seconds; use e.g. ${fallback}`);
    return Number(v);
}
function parseVersion(value) {
    const v = value.trim() || DEFAULT_QEMU_VERSION;
    // It ends up in URLs and directory names: keep it to what versions are made of.
    if (!/^[A-Za-z0-9][A-Za-z0-9._+~-]*$/.test(v)) {
        throw new errors_ActionError(`qemu-version: '${v}' is not a version; use e.g. ${DEFAULT_QEMU_VERSION}`);
    }
    return v;
}
/** Turns the raw `INPUT_*` strings into typed values; every bad value fails here, before anything is touched. */
function readInputs(get) {
    return {
        platforms: parsePlatforms(get('platforms')),
        qemuVersion: parseVersion(get('qemu-version')),
        qemuUrl: get('qemu-url').trim() || DEFAULT_QEMU_URL,
        sha256: parseChecksums(get('qemu-sha256')),
        cache: parseBoolean('cache', get('cache'), true),
        reset: parseBoolean('reset', get('reset'), false),
        preserveArgv0: parseBoolean('preserve-argv0', get('preserve-argv0'), true),
        credential: parseBoolean('credential', get('credential'), true),
        installMode: parseChoice('install-mode', get('install-mode'), ['auto', 'direct', 'docker', 'userns'], 'auto'),
        dockerImage: get('docker-image').trim() || DEFAULT_DOCKER_IMAGE,
        uninstall: parseBoolean('uninstall', get('uninstall'), false),
        lockTimeoutMs: parseSeconds('lock-timeout', get('lock-timeout'), 300) * 1000,
        builder: readBuilderInputs(get),
    };
}
function readBuilderInputs(get) {
    const name = get('builder-name').trim();
    if (name && !/^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(name)) {
        throw new errors_ActionError(`builder-name: '${name}' is not a valid builder name; use letters, digits, '.', '_' and '-'`);
    }
    const driver = get('driver').trim() || 'docker-container';
    return {
        mode: parseChoice('buildx', get('buildx'), ['true', 'auto', 'false'], 'auto'),
        // Unique per job and per step, so parallel jobs on one self-hosted runner do not share a builder.
        name: name || `qemu-binfmt-${(0,external_crypto_.randomUUID)().slice(0, 8)}`,
        nameGiven: name !== '',
        driver,
        endpoint: parseEndpoint(get('endpoint'), driver),
        driverOpts: get('driver-opts')
            .split('\n')
            .map(l => l.trim())
            .filter(Boolean),
        buildkitdFlags: get('buildkitd-flags').trim(),
        configInline: get('buildkitd-config-inline'),
        use: parseBoolean('use', get('use'), true),
        append: parseAppend(get('append')),
        cleanup: parseBoolean('cleanup', get('cleanup'), true),
    };
}
// A Docker context name (as `docker context create` takes it), or scheme://address.
const CONTEXT_NAME = /^[A-Za-z0-9][A-Za-z0-9_.+-]*$/;
const ADDRESS = /^[a-z][a-z0-9+.-]*:\/\/\S+$/;
// What buildx's remote driver dials.
const REMOTE_SCHEMES = ['tcp', 'unix', 'docker-container', 'kube-pod', 'npipe'];
/** The first node's endpoint: a Docker context or host, or (driver remote) the address of a running buildkitd. */
function parseEndpoint(value, driver) {
    const v = value.trim();
    const remoteHint = 'the address of a running buildkitd such as tcp://127.0.0.1:1234 or unix:///run/buildkit/buildkitd.sock';
    if (!v) {
        if (driver === 'remote')
            throw new errors_ActionError(`endpoint: driver remote needs the address of its buildkitd; set endpoint to ${remoteHint}`);
        return '';
    }
    // It ends up on a docker command line (after --): never an option, never several words.
    if (v.startsWith('-') || /[\s\x00-\x1f\x7f]/.test(v) || v.length > 1024 || !(CONTEXT_NAME.test(v) || ADDRESS.test(v))) {
        throw new errors_ActionError(`endpoint: '${untrusted(v, 60)}' is neither a Docker context name nor an address; give a context from docker context ls, a Docker host such as unix:///var/run/docker.sock, or (driver remote) ${remoteHint}`);
    }
    if (driver === 'remote') {
        const scheme = /^([a-z][a-z0-9+.-]*):\/\//.exec(v)?.[1];
        if (!scheme || !REMOTE_SCHEMES.includes(scheme)) {
            throw new errors_ActionError(`endpoint: '${untrusted(v, 60)}' is not an address the remote driver dials; give ${remoteHint}`);
        }
    }
    return v;
}

// EXTERNAL MODULE: external "path"
var external_path_ = __webpack_require__(6928);
;// CONCATENATED MODULE: ./src/search-path.ts


/**
 * The PATH entries root may run programs from (docker, podman, nsenter, unshare, setpriv, sudo, mount): absolute
 * directories that, with every directory above them, only root can change. Another user's directory (a user's
 * ~/.local/bin kept by sudo -E, /tmp/bin), a group- or world-writable one, '' and relative entries (the working
 * directory) would let another local user put a program of that name in front of the real one.
 */
function rootSearchPath(value) {
    const kept = [];
    const dropped = [];
    for (const dir of value.split(':'))
        (external_path_.isAbsolute(dir) && onlyRoot(dir) ? kept : dropped).push(dir);
    return { kept, dropped };
}
/** Whether only root can change `dir` and the directories above it (a missing one: whether only root could make it). */
function onlyRoot(dir) {
    const entry = external_path_.resolve(dir);
    // true while the directory below the one looked at is missing: then nobody else may write there at all
    let missing = false;
    for (let d = entry;; d = external_path_.dirname(d)) {
        let st;
        try {
            st = external_fs_.statSync(d);
        }
        catch {
            st = undefined;
        }
        if (!st)
            missing = true;
        else {
            // A sticky directory above (/tmp) lets no one else replace root's own, existing directory in it.
            const othersWrite = (st.mode & 0o022) !== 0 && (d === entry || missing || (st.mode & 0o1000) === 0);
            if (!st.isDirectory() || st.uid !== 0 || othersWrite)
                return false;
            missing = false;
        }
        if (d === external_path_.dirname(d))
            return true;
    }
}
/**
 * As root, narrows this process's PATH (its children inherit it) to rootSearchPath's entries; says which went.
 * A no-op for other users: what they run is theirs to choose.
 */
function securePathForRoot(warn) {
    if (process.geteuid?.() !== 0 || process.env.PATH === undefined)
        return;
    const { kept, dropped } = rootSearchPath(process.env.PATH);
    if (!dropped.length)
        return;
    process.env.PATH = kept.join(':');
    warn(`PATH: ignoring ${dropped.map(d => `'${d}'`).join(', ')}: running as root, programs are only taken from directories only root can change; ` +
        'install docker, nsenter and the like in such a directory');
}

// EXTERNAL MODULE: external "events"
var external_events_ = __webpack_require__(4434);
// EXTERNAL MODULE: external "os"
var external_os_ = __webpack_require__(857);
;// CONCATENATED MODULE: ./src/binfmt.ts




const BINFMT_ROOT = '/proc/sys/fs/binfmt_misc';
// Kernel limits (fs/binfmt_misc.c): BINPRM_BUF_SIZE and the register buffer.
const MAX_INTERPRETER = 127;
const MAX_MATCH_BYTES = 128;
const MAX_LINE = 1920;
function registerLine(spec) {
    if (spec.magic.length !== spec.mask.length)
        throw new Error(`${spec.name}: magic and mask differ in length`);
    if (spec.interpreter.length > MAX_INTERPRETER) {
        throw new errors_ActionError(`interpreter path ${spec.interpreter} is longer than the kernel's ${MAX_INTERPRETER} characters; set RUNNER_TOOL_CACHE to a shorter directory`);
    }
    if (/[:\n]/.test(spec.interpreter)) {
        throw new errors_ActionError(`interpreter path ${spec.interpreter} contains ':' or a newline, which binfmt_misc cannot take; use a plain path`);
    }
    if (spec.offset + spec.magic.length / 2 > MAX_MATCH_BYTES)
        throw new Error(`${spec.name}: magic beyond ${MAX_MATCH_BYTES} bytes`);
    const line = `:${spec.name}:M:${spec.offset || ''}:${hexToEscaped(spec.magic)}:${hexToEscaped(spec.mask)}:${spec.interpreter}:${spec.flags}`;
    if (line.length > MAX_LINE)
        throw new Error(`${spec.name}: register line too long`);
    return line;
}
function parseEntry(name, text) {
    let enabled = false;
    let interpreter = '';
    let flags = '';
    let offset = 0;
    let magic = '';
    let mask = '';
    for (const line of text.split('\n')) {
        if (line === 'enabled')
            enabled = true;
        else if (line.startsWith('interpreter '))
            interpreter = line.slice('interpreter '.length);
        else if (line.startsWith('flags:'))
            flags = line.slice('flags:'.length).trim();
        else if (line.startsWith('offset '))
            offset = Number(line.slice('offset '.length));
        else if (line.startsWith('magic '))
            magic = line.slice('magic '.length).trim();
        else if (line.startsWith('mask '))
            mask = line.slice('mask '.length).trim();
    }
    // The kernel omits the mask line when every mask byte is 0xff.
    if (!mask && magic)
        mask = 'ff'.repeat(magic.length / 2);
    return { name, enabled, interpreter, flags, offset, magic, mask };
}
/** The flag letters the kernel will show for requested flags: C implies O. */
function effectiveFlags(requested) {
    const set = new Set(requested.toUpperCase().split(''));
    if (set.has('C'))
        set.add('O');
    return ['P', 'O', 'C', 'F'].filter(f => set.has(f)).join('');
}
/** An existing entry is kept only when it already is exactly what we would register. */
function sameEntry(existing, spec) {
    return (existing.enabled &&
        existing.interpreter === spec.interpreter &&
        effectiveFlags(existing.flags) === effectiveFlags(spec.flags) &&
        existing.offset === spec.offset &&
        existing.magic === spec.magic &&
        existing.mask === spec.mask);
}
/** Rebuilds the spec of an existing entry (to put it back on rollback). */
function specOf(entry) {
    return {
        name: entry.name,
        offset: entry.offset,
        magic: entry.magic,
        mask: entry.mask,
        interpreter: entry.interpreter,
        // O is implied by C and the kernel rejects nothing for it; pass what it showed.
        flags: entry.flags,
    };
}
/** Reading binfmt_misc needs no privilege; every change goes through a KernelWriter. */
class BinfmtReader {
    root;
    constructor(root = BINFMT_ROOT) {
        this.root = root;
    }
    mounted() {
        return external_fs_.existsSync(external_path_.join(this.root, 'register'));
    }
    /** binfmt_misc's host-wide switch (the status file): false when someone disabled every entry at once. */
    enabled() {
        return readOr(() => external_fs_.readFileSync(external_path_.join(this.root, 'status'), 'utf8'), '').trim() !== 'disabled';
    }
    names() {
        return external_fs_.readdirSync(this.root)
            .filter(n => n !== 'register' && n !== 'status')
            .sort();
    }
    read(name) {
        try {
            return parseEntry(name, external_fs_.readFileSync(external_path_.join(this.root, name), 'utf8'));
        }
        catch (e) {
            if (e.code === 'ENOENT')
                return undefined;
            throw e;
        }
    }
    /** When the entry was made (its file's mtime; disabling it later moves that on), or undefined when that cannot be told. */
    madeAtMs(name) {
        return readOr(() => external_fs_.statSync(external_path_.join(this.root, name)).mtimeMs, undefined);
    }
    list() {
        return this.names()
            .map(n => this.read(n))
            .filter((e) => e !== undefined);
    }
}

// EXTERNAL MODULE: external "child_process"
var external_child_process_ = __webpack_require__(5317);
;// CONCATENATED MODULE: ./src/timeouts.ts
// How long each kind of program this action runs may take before it counts as
// stuck and is killed (with everything it started). One place, so that the
// bounds can be read side by side.
const SECOND = 1000;
const MINUTE = 60 * SECOND;
/** Any program whose caller names no bound. */
const PROGRAM_MS = 5 * MINUTE;
/** `sudo -n true`: sudo answers at once or not at all. */
const SUDO_CHECK_MS = 10 * SECOND;
/** A test program runs in milliseconds. */
const PROBE_MS = 20 * SECOND;
/** A docker command that only asks the daemon something or changes its bookkeeping (version, image inspect, create, rm). */
const DOCKER_ANSWER_MS = 20 * SECOND;
/** Entering a user namespace to mount its binfmt_misc; `podman unshare true`, which may start Podman's pause process. */
const USERNS_MS = 20 * SECOND;
/** `docker pull` of the registering image. */
const DOCKER_PULL_MS = 5 * MINUTE;
/** `docker cp` into a container, and the container's whole run. */
const CONTAINER_MS = 2 * MINUTE;
/** docker buildx: bookkeeping or one RPC; creating (or removing) a builder; booting it, which pulls moby/buildkit. */
const BUILDX_MS = { quick: MINUTE, create: 5 * MINUTE, bootstrap: 15 * MINUTE };
/** The host lock where no lock-timeout input sets it: the post step and the command. */
const LOCK_WAIT_MS = 5 * MINUTE;
/** Waits `ms`, or less if `cancel` fires first; never rejects (a caller that must stop checks the signal after). */
function pause(ms, cancel) {
    // Aborted already: its abort event has fired and will not again.
    if (cancel?.aborted)
        return Promise.resolve();
    return new Promise(resolve => {
        const t = setTimeout(done, ms);
        function done() {
            clearTimeout(t);
            cancel?.removeEventListener('abort', done);
            resolve();
        }
        cancel?.addEventListener('abort', done, { once: true });
    });
}
/** After SIGINT/SIGTERM, how long the clean-up may take before the process exits regardless. */
const CANCEL_GRACE_MS = 3 * SECOND;

;// CONCATENATED MODULE: ./src/process.ts



/** After the child exits, how long its output may still take to arrive (a grandchild may hold the pipes open). */
const DRAIN_MS = 1000;
/** Thrown by `run` when the run was cancelled; the child's process group is already killed. */
class CancelledError extends Error {
    constructor() {
        super('cancelled');
        this.name = 'CancelledError';
    }
}
/**
 * Never throws for a non-zero exit; throws only when the program cannot be
 * started (e.g. ENOENT) or the run is cancelled. Each child leads a process group
 * of its own, so a timeout or a cancellation kills whatever it started too, and
 * output a leftover grandchild keeps open is not waited for.
 */
class ChildProcessRunner {
    cancel;
    /** `cancel` aborts every child of this run (the step was cancelled). */
    constructor(cancel) {
        this.cancel = cancel;
    }
    run(command, args, options = {}) {
        if (this.cancel?.aborted)
            return Promise.reject(new CancelledError());
        return new Promise((resolve, reject) => {
            const child = (0,external_child_process_.spawn)(command, args, {
                env: options.env ? { ...process.env, ...options.env } : process.env,
                stdio: ['pipe', 'pipe', 'pipe'],
                detached: true,
            });
            const out = [];
            const err = [];
            let timedOut = false;
            let cancelled = false;
            let settled = false;
            const killGroup = () => {
                try {
                    if (child.pid)
                        process.kill(-child.pid, 'SIGKILL');
                }
                catch {
                    // already gone
                }
            };
            const timer = setTimeout(() => {
                timedOut = true;
                killGroup();
            }, options.timeoutMs ?? PROGRAM_MS);
            const onCancel = () => {
                cancelled = true;
                killGroup();
            };
            this.cancel?.addEventListener('abort', onCancel, { once: true });
            let drain;
            const finish = (code, signal) => {
                if (settled)
                    return;
                settled = true;
                clearTimeout(timer);
                clearTimeout(drain);
                this.cancel?.removeEventListener('abort', onCancel);
                child.stdout.destroy();
                child.stderr.destroy();
                if (cancelled)
                    return reject(new CancelledError());
                resolve({ code, signal, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString(), ...(timedOut ? { timedOut } : {}) });
            };
            child.stdout.on('data', (d) => out.push(d));
            child.stderr.on('data', (d) => err.push(d));
            child.on('error', e => {
                if (settled)
                    return;
                settled = true;
                clearTimeout(timer);
                this.cancel?.removeEventListener('abort', onCancel);
                reject(e);
            });
            child.on('exit', (code, signal) => {
                // Whatever the child left running goes with it.
                killGroup();
                drain = setTimeout(() => finish(code, signal), DRAIN_MS);
            });
            child.on('close', (code, signal) => finish(code, signal));
            // A child that exits before reading its stdin must not crash us with EPIPE.
            child.stdin.on('error', () => undefined);
            child.stdin.end(options.input ?? '');
        });
    }
}
// Lines that say nothing about the error: pointers to help and hints added after it.
const NOISE = [/^(See|Run) '?docker\b.*--help/i, /^Usage:/, /^dmesg\(1\) may have more information/];
/**
 * The line of a program's output that says what went wrong: buildx's last
 * `ERROR:` line (its progress output repeats it after a `#N` prefix), else the
 * last line that is not colour codes, decoration, a "see --help" pointer or a
 * hint added after the real error; one line of at most 300 characters.
 */
function process_errorLine(text) {
    const lines = text
        .split('\n')
        .map(l => untrusted(l).trim())
        .filter(l => l !== '' && !/^[-=_~]+$/.test(l) && !NOISE.some(n => n.test(l)));
    const errorOf = (l) => /(?:^|\s)ERROR:\s*(.+)$/.exec(l)?.[1];
    const newestFirst = [...lines].reverse();
    const error = newestFirst.find(l => l.startsWith('ERROR:')) ?? newestFirst.find(l => errorOf(l) !== undefined);
    if (error)
        return untrusted(errorOf(error) ?? error, 300);
    const plain = lines.filter(l => !/^#\d+\s/.test(l) && !/^>/.test(l));
    return untrusted(plain.at(-1) ?? lines.at(-1) ?? '', 300);
}
/**
 * How a program run that did not succeed ended, in words that follow its name:
 * `exited with status 1: <its error line>` (or `... and no message`), `did not
 * finish within 20 s and was stopped`, `was killed by SIGTERM`.
 */
function describeRun(r, timeoutMs = PROGRAM_MS) {
    if (r.timedOut)
        return `did not finish within ${timeoutMs / 1000} s and was stopped`;
    if (r.signal)
        return `was killed by ${r.signal}`;
    const why = process_errorLine(r.stderr);
    return `exited with status ${r.code}${why ? `: ${why}` : ' and no message'}`;
}
/**
 * Why a run failed, for a message that says what was being done: its error line
 * (stderr, else stdout), else how it ended (`program` named in front).
 */
function failureReason(r, timeoutMs, program) {
    const how = () => (program ? `${program} ` : '') + describeRun(r, timeoutMs);
    if (r.timedOut || r.signal)
        return how();
    return process_errorLine(r.stderr) || process_errorLine(r.stdout) || how();
}
/** What tells a command-line process to end: ^C, kill's default, a closed terminal. */
const process_END_SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'];
/**
 * Runs `cleanup` when this process is told to end (^C, SIGTERM, SIGHUP), then lets the signal take its course.
 * `cleanup` is synchronous: nothing else runs before the process goes. Returns the function that stops watching.
 */
function cleanUpOnSignal(cleanup) {
    const off = () => {
        for (const s of process_END_SIGNALS)
            process.off(s, handler);
    };
    function handler(signal) {
        cleanup(signal);
        off();
        process.kill(process.pid, signal);
    }
    for (const s of process_END_SIGNALS)
        process.on(s, handler);
    return off;
}

;// CONCATENATED MODULE: ./src/docker/command.ts
/** The docker command line as a shell would take it; a script argument (several lines) is shown as <script>. */
function commandLine(args, cli = 'docker') {
    const shown = args.map(a => (a.includes('\n') ? '<script>' : /^[A-Za-z0-9_./:=,@%+-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`));
    return [cli, ...shown].join(' ');
}
/** No docker command on PATH; `code` stays ENOENT. */
class DockerMissing extends Error {
    code = 'ENOENT';
    constructor(cli) {
        super(`not installed (no ${cli} command on PATH)`);
    }
}
/**
 * Every docker command goes through here: the ProcessRunner, the command line
 * logged (a step the user waits for as the toolkit's exec shows it,
 * `[command]docker ...`; the rest at debug level), a failure's output at debug level.
 */
class Docker {
    runner;
    log;
    engine;
    constructor(runner, log, engine = { cli: 'docker' }) {
        this.runner = runner;
        this.log = log;
        this.engine = engine;
    }
    async run(args, options) {
        const [program, argv] = this.engine.buildx && args[0] === 'buildx' ? [this.engine.buildx, args.slice(1)] : [this.engine.cli, args];
        // What runs, as it runs: a buildx run standalone is shown as such.
        const line = commandLine(argv, program);
        if (options.loud)
            this.log.info(`[command]${line}`);
        else
            this.log.debug(line);
        let r;
        try {
            r = await this.runner.run(program, argv, { timeoutMs: options.timeoutMs, input: options.input, env: this.engine.env });
        }
        catch (e) {
            if (e.code === 'ENOENT' && program === this.engine.cli)
                throw new DockerMissing(this.engine.cli);
            throw e;
        }
        if (r.code !== 0)
            this.log.debug(`${line} -> ${r.code ?? r.signal}: ${r.stderr.trim()}`);
        return r;
    }
}

;// CONCATENATED MODULE: ./src/fetch/tar.ts
/**
 * A streaming tar reader for emulator archives: ustar, GNU (long names, old
 * sparse 'S') and pax (path, size, GNU.sparse.*). It reads a byte stream once,
 * hands each member's header to the caller, and streams only the members the
 * caller takes; the rest are skipped without being kept. Reading ends at the
 * end-of-archive block (trailing bytes are ignored) or when the caller stops.
 *
 * And its counterpart for the other direction: a ustar writer for the few
 * files `docker cp -` copies into a container.
 */
class TarFormatError extends Error {
    notTar;
    constructor(message, 
    /** true when not even the first header was a tar header */
    notTar = false) {
        super(message);
        this.notTar = notTar;
    }
}
const BLOCK = 512;
/** pax and GNU long-name records are metadata: nothing honest needs more. */
const MAX_META = 1024 * 1024;
/** Pulls exact byte counts from an async stream of chunks. */
class ByteReader {
    it;
    chunks = [];
    buffered = 0;
    done = false;
    constructor(it) {
        this.it = it;
    }
    async fill() {
        if (this.done)
            return false;
        const r = await this.it.next();
        if (r.done) {
            this.done = true;
            return false;
        }
        const chunk = Buffer.isBuffer(r.value) ? r.value : Buffer.from(r.value);
        if (chunk.length) {
            this.chunks.push(chunk);
            this.buffered += chunk.length;
        }
        return true;
    }
    /** Exactly n bytes, or undefined if the stream ends first (what there was is returned as `partial`). */
    async read(n) {
        while (this.buffered < n)
            if (!(await this.fill()))
                return { partial: this.buffered };
        const whole = this.chunks.length === 1 ? this.chunks[0] : Buffer.concat(this.chunks);
        const data = whole.subarray(0, n);
        const rest = whole.subarray(n);
        this.chunks = rest.length ? [rest] : [];
        this.buffered = rest.length;
        return { data, partial: n };
    }
    /** Passes the next n bytes to `each` chunk by chunk; returns how many arrived before the stream ended. */
    async pass(n, each) {
        let left = n;
        while (left > 0) {
            if (!this.buffered && !(await this.fill()))
                break;
            const head = this.chunks[0];
            const take = Math.min(left, head.length);
            const part = head.subarray(0, take);
            if (take === head.length)
                this.chunks.shift();
            else
                this.chunks[0] = head.subarray(take);
            this.buffered -= take;
            left -= take;
            if (each)
                await each(part);
        }
        return n - left;
    }
}
function octal(buf, off, len) {
    // GNU base-256 for sizes of 8 GiB and more
    if (buf[off] & 0x80) {
        let v = buf[off] & 0x7f;
        for (let i = 1; i < len; i++)
            v = v * 256 + buf[off + i];
        return v;
    }
    const s = buf
        .toString('latin1', off, off + len)
        .replace(/\0.*$/s, '')
        .trim();
    if (!s)
        return 0;
    if (!/^[0-7]+$/.test(s))
        return NaN;
    return parseInt(s, 8);
}
function cstring(buf, off, len) {
    const raw = buf.subarray(off, off + len);
    const nul = raw.indexOf(0);
    return (nul >= 0 ? raw.subarray(0, nul) : raw).toString('utf8');
}
/** A header's checksum: the sum of its bytes with the checksum field counted as spaces (`signed`: as some old tars summed them). */
function headerSum(block, signed = false) {
    let sum = 0;
    for (let i = 0; i < BLOCK; i++) {
        const b = i >= 148 && i < 156 ? 0x20 : block[i];
        sum += signed && b > 127 ? b - 256 : b;
    }
    return sum;
}
function checksumOk(block) {
    const stored = octal(block, 148, 8);
    return stored === headerSum(block) || stored === headerSum(block, true);
}
const TYPES = {
    '0': 'file',
    '\0': 'file',
    '7': 'file',
    '1': 'hardlink',
    '2': 'symlink',
    '3': 'device',
    '4': 'device',
    '5': 'directory',
    '6': 'fifo',
    S: 'sparse',
};
function parsePax(data) {
    const out = new Map();
    let pos = 0;
    while (pos < data.length) {
        const sp = data.indexOf(0x20, pos);
        if (sp < 0)
            break;
        const len = Number(data.toString('latin1', pos, sp));
        if (!Number.isSafeInteger(len) || len <= 0 || pos + len > data.length)
            throw new TarFormatError('a pax header record is malformed');
        const rec = data.toString('utf8', sp + 1, pos + len - 1);
        const eq = rec.indexOf('=');
        if (eq > 0)
            out.set(rec.slice(0, eq), rec.slice(eq + 1));
        pos += len;
    }
    return out;
}
/** Extended headers (pax 'x', GNU 'L' and 'K') describe the member after them; pax 'g' records all that follow. */
class PendingMeta {
    longName;
    longLink;
    pax = new Map();
    globalPax = new Map();
    add(flag, body) {
        if (flag === 'x')
            this.pax = new Map([...this.globalPax, ...parsePax(body)]);
        else if (flag === 'g')
            this.globalPax = new Map([...this.globalPax, ...parsePax(body)]);
        else if (flag === 'L')
            this.longName = cstring(body, 0, body.length);
        else
            this.longLink = cstring(body, 0, body.length);
    }
    /** Once a member has used them. */
    clear() {
        this.pax = new Map();
        this.longName = this.longLink = undefined;
    }
}
const META_FLAGS = new Set(['x', 'g', 'L', 'K']);
/**
 * Reads `source` (a decompressed tar stream), calling `decide` for every
 * member. Resolves with 'end' (end-of-archive block or clean end of stream) or
 * 'stopped' (the caller asked to stop). TarFormatError for anything malformed
 * or truncated.
 */
async function readTar(source, decide, 
/** asked after each taken member: true ends reading there */
done = () => false) {
    const r = new ByteReader(source[Symbol.asyncIterator]());
    const meta = new PendingMeta();
    let first = true;
    for (;;) {
        const block = await nextHeader(r, first);
        if (!block)
            return 'end';
        first = false;
        const flag = String.fromCharCode(block[156]);
        const size = octal(block, 124, 12);
        if (!Number.isSafeInteger(size) || size < 0)
            throw new TarFormatError('a header has a bad size field');
        if (META_FLAGS.has(flag)) {
            meta.add(flag, await readMetaRecord(r, size));
            continue;
        }
        const header = memberHeader(block, flag, size, meta);
        meta.clear();
        if (flag === 'S')
            await skipSparseMap(r, block);
        const decision = await decide(header);
        if (decision === 'stop')
            return 'stopped';
        await passData(r, header, decision);
        if (decision !== 'skip' && done())
            return 'stopped';
    }
}
/** The next header block; undefined at the end of the archive. */
async function nextHeader(r, first) {
    const { data: block, partial } = await r.read(BLOCK);
    if (!block) {
        if (partial === 0 && !first)
            return undefined;
        throw new TarFormatError(first && partial === 0 ? 'it is empty' : `it ends inside a header (${partial} of ${BLOCK} bytes)`, first);
    }
    if (block.every(b => b === 0)) {
        if (first)
            throw new TarFormatError('it starts with an empty block', true);
        return undefined;
    }
    if (!checksumOk(block)) {
        throw new TarFormatError(first ? 'its first block is not a tar header' : 'a header has a bad checksum', first);
    }
    return block;
}
async function readMetaRecord(r, size) {
    if (size > MAX_META)
        throw new TarFormatError(`a metadata record of ${size} bytes is larger than any honest archive needs`);
    const { data } = await r.read(Math.ceil(size / BLOCK) * BLOCK);
    if (!data)
        throw new TarFormatError('it ends inside a metadata record');
    return data.subarray(0, size);
}
/** A member's header as the caller sees it: names and sizes from the extended headers before it, where they give them. */
function memberHeader(block, flag, size, meta) {
    const { pax } = meta;
    const ustar = block.toString('latin1', 257, 263) === 'ustar\0';
    const prefix = ustar ? cstring(block, 345, 155) : '';
    let name = pax.get('path') ?? meta.longName ?? (prefix ? `${prefix}/${cstring(block, 0, 100)}` : cstring(block, 0, 100));
    const linkname = pax.get('linkpath') ?? meta.longLink ?? cstring(block, 157, 100);
    let type = TYPES[flag] ?? 'other';
    let dataSize = size;
    if (pax.has('size')) {
        dataSize = Number(pax.get('size'));
        if (!Number.isSafeInteger(dataSize) || dataSize < 0)
            throw new TarFormatError('a pax size record is malformed');
    }
    let fullSize = dataSize;
    // GNU sparse in pax form (0.x and 1.0): the real size is in the records.
    const sparseSize = pax.get('GNU.sparse.realsize') ?? pax.get('GNU.sparse.size');
    if (sparseSize !== undefined) {
        type = 'sparse';
        fullSize = Number(sparseSize);
        name = pax.get('GNU.sparse.name') ?? name;
    }
    if (flag === 'S')
        fullSize = octal(block, 483, 12);
    if (!Number.isFinite(fullSize) || fullSize < dataSize)
        fullSize = Number.MAX_SAFE_INTEGER;
    return { name, type, size: dataSize, fullSize, mode: octal(block, 100, 8) & 0o7777, linkname: linkname || undefined };
}
/** An old GNU sparse member: extension blocks listing more holes come before the data. */
async function skipSparseMap(r, block) {
    let extended = block[482] !== 0;
    while (extended) {
        const { data } = await r.read(BLOCK);
        if (!data)
            throw new TarFormatError('it ends inside a sparse map');
        extended = data[504] !== 0;
    }
}
/** The member's data, and the padding to the next block: to the caller's sink, or past. */
async function passData(r, h, decision) {
    const padded = Math.ceil(h.size / BLOCK) * BLOCK;
    if (decision === 'skip') {
        const got = await r.pass(padded);
        if (got < padded)
            throw new TarFormatError(`it ends inside ${h.name} (${Math.min(got, h.size)} of ${h.size} bytes)`);
        return;
    }
    const got = await r.pass(h.size, chunk => decision.write(chunk));
    if (got < h.size)
        throw new TarFormatError(`it ends inside ${h.name} (${got} of ${h.size} bytes)`);
    await decision.end();
    const pad = padded - h.size;
    if (pad && (await r.pass(pad)) < pad)
        throw new TarFormatError(`it ends after ${h.name}`);
}
/** One ustar header block; the name split into prefix and name where it is longer than 100 bytes. */
function header(name, size, mode, type, mtime) {
    const h = Buffer.alloc(BLOCK);
    let prefix = '';
    let base = name;
    if (Buffer.byteLength(name) > 100) {
        const cut = name.lastIndexOf('/', name.length - 2);
        prefix = name.slice(0, cut);
        base = name.slice(cut + 1);
        if (cut < 0 || Buffer.byteLength(prefix) > 155 || Buffer.byteLength(base) > 100)
            throw new Error(`path too long for a tar header: ${name}`);
    }
    const octalField = (off, len, n) => {
        h.write(`${n.toString(8).padStart(len - 1, '0')}\0`, off, len, 'ascii');
    };
    h.write(base, 0, 100, 'utf8');
    octalField(100, 8, mode);
    octalField(108, 8, 0);
    octalField(116, 8, 0);
    octalField(124, 12, size);
    octalField(136, 12, mtime);
    h.write(type, 156, 1, 'ascii');
    h.write('ustar\0' + '00', 257, 8, 'ascii');
    h.write(prefix, 345, 155, 'utf8');
    h.write(`${headerSum(h).toString(8).padStart(6, '0')}\0 `, 148, 8, 'ascii');
    return h;
}
/**
 * A ustar archive of `files`, each preceded by its parent directories (mode
 * 0755) the first time one is named: what `docker cp -` reads from stdin.
 */
function writeTar(files, mtime = Math.floor(Date.now() / 1000)) {
    const parts = [];
    const dirs = new Set();
    for (const f of files) {
        const segments = f.name.split('/');
        for (let i = 1; i < segments.length; i++) {
            const dir = `${segments.slice(0, i).join('/')}/`;
            if (dirs.has(dir))
                continue;
            dirs.add(dir);
            parts.push(header(dir, 0, 0o755, '5', mtime));
        }
        parts.push(header(f.name, f.data.length, f.mode, '0', mtime), f.data, Buffer.alloc((BLOCK - (f.data.length % BLOCK)) % BLOCK));
    }
    parts.push(Buffer.alloc(2 * BLOCK));
    return Buffer.concat(parts);
}

;// CONCATENATED MODULE: ./src/docker/container.ts




/** Every container this action creates carries it, so that one left behind can be recognised. */
const CONTAINER_LABEL = 'setup-qemu-binfmt';
/**
 * Removes the container when the action is cancelled while it exists (the runner
 * sends SIGINT, then SIGTERM), then lets the signal take its course.
 */
function removeOnSignal(id, engine) {
    return cleanUpOnSignal(() => removeNow(id, engine));
}
/** Removes a container at once, whatever the run's cancellation: the engine's own CLI, not the cancellable runner. */
function removeNow(id, engine) {
    // With the engine's own CLI and environment (rootless Docker's socket; Podman, whose containers `docker` cannot see);
    // Podman's rm -f would first wait 10 s for the container to stop, docker's kills it at once.
    const args = engine.cli === 'podman' ? ['rm', '-f', '-t', '0', id] : ['rm', '-f', id];
    (0,external_child_process_.spawnSync)(engine.cli, args, { stdio: 'ignore', timeout: DOCKER_ANSWER_MS, env: { ...process.env, ...engine.env } });
}
/**
 * One container: `docker create` (auto-removed), `docker cp -` of `archive`,
 * `docker start -a`, and always `docker rm -f`. Nothing is bind-mounted, so the
 * daemon need not share the runner's file system.
 */
async function runContainer(docker, createArgs, archive, 
/** false for a container that changes binfmt_misc: killed halfway (say, a rollback on the runner's second signal) it would leave unverified entries */
removeOnCancel = true) {
    // Named up front: a create cut short (cancelled, timed out) may still leave the container, and it has no id yet.
    const name = `${CONTAINER_LABEL}-${process.pid}-${(0,external_crypto_.randomBytes)(6).toString('hex')}`;
    let created;
    try {
        created = await docker.run(['create', '--rm', '--label', CONTAINER_LABEL, '--network', 'none', '--name', name, ...createArgs], {
            timeoutMs: DOCKER_ANSWER_MS,
        });
    }
    catch (e) {
        removeNow(name, docker.engine);
        throw e;
    }
    if (created.code !== 0) {
        if (created.timedOut || created.signal)
            await docker.run(['rm', '-f', name], { timeoutMs: DOCKER_ANSWER_MS }).catch(() => undefined);
        throw new Error(`docker create ${describeRun(created, DOCKER_ANSWER_MS)}`);
    }
    // docker create prints the container's id last.
    const id = created.stdout.trim().split('\n').pop() ?? '';
    const off = removeOnCancel ? removeOnSignal(id, docker.engine) : () => undefined;
    try {
        if (archive) {
            const cp = await docker.run(['cp', '-', `${id}:/`], { input: archive, timeoutMs: CONTAINER_MS });
            if (cp.code !== 0)
                throw new Error(`docker cp into the container ${describeRun(cp, CONTAINER_MS)}`);
        }
        return await docker.run(['start', '-a', id], { timeoutMs: CONTAINER_MS });
    }
    finally {
        // Already gone when it ran (--rm); this is for the other ways out.
        await docker.run(['rm', '-f', id], { timeoutMs: DOCKER_ANSWER_MS }).catch(() => undefined);
        off();
    }
}

;// CONCATENATED MODULE: ./src/access/docker/writer.ts









/** Where the emulators go inside the registering container: `<dir>/<content digest>/<file name>`. */
const CONTAINER_DIR = '/setup-qemu-binfmt';
/**
 * Runs in the privileged container with the ops as arguments (`r:<name>` remove,
 * `d:<name>` disable, `a:<register line>` register). Mounts binfmt_misc when the container's /proc has
 * none, applies the ops in order and stops at the first failure, naming it on
 * stderr. Whatever happened, it then prints the table as the kernel shows it.
 * Writes go through dd: one write() per line as the kernel wants, and unlike
 * the shell's printf, dd says why the kernel refused one.
 */
const REGISTER_SCRIPT = `
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
`;
/** Reads the dump REGISTER_SCRIPT prints; undefined when it is missing or cut short. */
function parseTable(stdout) {
    let userns = '';
    let bootId = '';
    let mounted = false;
    let complete = false;
    const entries = [];
    for (const line of stdout.split('\n')) {
        if (line.startsWith('@@userns '))
            userns = line.slice('@@userns '.length).trim();
        else if (line.startsWith('@@boot_id '))
            bootId = line.slice('@@boot_id '.length).trim();
        else if (line === '@@mounted')
            mounted = true;
        else if (line.startsWith('@@entry '))
            entries.push({ name: line.slice('@@entry '.length), lines: [] });
        else if (line === '@@end')
            complete = true;
        else if (entries.length)
            entries[entries.length - 1].lines.push(line);
    }
    if (!complete)
        return undefined;
    return { userns, bootId, mounted, entries: entries.map(e => parseEntry(e.name, e.lines.join('\n'))) };
}
/** The kernel's table as the last container of the daemon saw it: the reader for runners that cannot see it themselves. */
class ContainerView extends BinfmtReader {
    table = new Map();
    isMounted = false;
    constructor() {
        super(`${BINFMT_ROOT} (as a container sees it)`);
    }
    update(t) {
        this.isMounted = t.mounted;
        this.table = new Map(t.entries.map(e => [e.name, e]));
    }
    mounted() {
        return this.isMounted;
    }
    names() {
        return [...this.table.keys()].sort();
    }
    read(name) {
        return this.table.get(name);
    }
    madeAtMs() {
        return undefined;
    }
}
/**
 * The Docker path: registers through one privileged container per batch of ops,
 * with the emulators this action downloaded and checked copied into it.
 */
class DockerWriter {
    docker;
    image;
    method = 'docker';
    how;
    /** binfmt_misc as the last container saw it */
    view = new ContainerView();
    /** why this runner does not see the table the daemon's containers change; undefined when it does */
    hidden;
    /** container path -> emulator on the runner */
    emulators = new Map();
    constructor(docker, image) {
        this.docker = docker;
        this.image = image;
        this.how = `through a privileged container (${image})`;
    }
    /** Named by content: the same emulator gets the same path, so a second identical run keeps its entries. */
    interpreterFor(emulatorPath) {
        const digest = (0,external_crypto_.createHash)('sha256').update(external_fs_.readFileSync(emulatorPath)).digest('hex').slice(0, 16);
        const inside = `${CONTAINER_DIR}/${digest}/${external_path_.basename(emulatorPath)}`;
        this.emulators.set(inside, emulatorPath);
        return inside;
    }
    async apply(ops) {
        if (ops.length)
            await this.run(ops);
    }
    /** Runs the privileged container for `ops` (none: only looks) and returns the table it left. */
    async run(ops) {
        const args = ops.map(op => (op.kind === 'register' ? `a:${registerLine(op.spec)}` : `${op.kind === 'remove' ? 'r' : 'd'}:${op.name}`));
        const files = new Map();
        for (const op of ops) {
            if (op.kind !== 'register' || files.has(op.spec.interpreter))
                continue;
            // Ours by digest; an entry put back on rollback names a file of the runner, copied to the same path if it is there.
            const source = this.emulators.get(op.spec.interpreter) ?? op.spec.interpreter;
            if (!external_fs_.existsSync(source) || !external_fs_.statSync(source).isFile())
                continue;
            files.set(op.spec.interpreter, { name: op.spec.interpreter.replace(/^\/+/, ''), data: external_fs_.readFileSync(source), mode: 0o755 });
        }
        const r = await runContainer(this.docker, ['--privileged', this.image, 'sh', '-c', REGISTER_SCRIPT, 'sh', ...args], files.size ? writeTar([...files.values()]) : undefined, 
        // Kernel writes are short and always finish, so that a cancelled run's rollback completes.
        ops.length === 0);
        const table = parseTable(r.stdout);
        if (table)
            this.view.update(table);
        if (r.code !== 0 || r.signal)
            throw new errors_ActionError(`the privileged container (${this.image}) ${describeRun(r, CONTAINER_MS)}`);
        if (!table)
            throw new errors_ActionError(`the privileged container (${this.image}) did not print binfmt_misc's entries; does its sh work?`);
        return table;
    }
}

;// CONCATENATED MODULE: ./src/access/docker/daemon.ts








// Before anything is planned: does the daemon answer, run this runner's
// architecture, have the image, and can its privileged containers reach the
// host's binfmt_misc; and does this runner see the table they change.
/** The inode number of the initial user namespace (PROC_USER_INIT_INO), as readlink shows it. */
const INIT_USER_NS = 'user:[4026531837]';
function runnerNamespace() {
    return {
        bootId: readOr(() => external_fs_.readFileSync('/proc/sys/kernel/random/boot_id', 'utf8'), undefined)?.trim(),
        userns: readOr(() => external_fs_.readlinkSync('/proc/self/ns/user'), undefined),
        binfmtMounted: external_fs_.existsSync(external_path_.join(BINFMT_ROOT, 'register')),
    };
}
/** Why the runner does not see the table `table` came from, or undefined when it does. */
function hiddenFromRunner(table, self) {
    if (table.bootId && self.bootId && table.bootId !== self.bootId) {
        return 'the Docker daemon runs on another kernel than this runner (a remote DOCKER_HOST or a VM)';
    }
    if (!self.binfmtMounted)
        return `binfmt_misc is not mounted in this runner's namespace (${BINFMT_ROOT} is empty)`;
    if (self.userns && self.userns !== INIT_USER_NS) {
        return `this runner runs in a user namespace (${self.userns}), which may have a binfmt_misc of its own`;
    }
    return undefined;
}
/** Go's names for Node's architectures, as `docker version` prints the daemon's. */
const GO_ARCH = {
    x64: 'amd64',
    arm64: 'arm64',
    ia32: '386',
    arm: 'arm',
    ppc64: 'ppc64le',
    s390x: 's390x',
    riscv64: 'riscv64',
};
/** The daemon answers, runs Linux containers on this runner's architecture; else throws why not. */
async function checkDaemon(docker, log, nodeArch) {
    const r = await docker.run(['version', '--format', '{{.Server.Os}}/{{.Server.Arch}} {{.Server.Version}}'], { timeoutMs: DOCKER_ANSWER_MS });
    if (r.signal)
        throw new Error(`the daemon did not answer within ${DOCKER_ANSWER_MS / 1000} s`);
    if (r.code !== 0) {
        const denied = /permission denied while trying to connect to the Docker daemon socket at (\S+?):\s/i.exec(r.stderr);
        if (denied)
            throw new Error(`permission denied on the daemon's socket ${denied[1]} (is the user in the docker group?)`);
        const down = /Cannot connect to the Docker daemon at (\S+?)\.?\s+Is the docker daemon running/i.exec(r.stderr);
        if (down)
            throw new Error(`cannot connect to the daemon at ${down[1]} (is it running?)`);
        throw new Error(`docker version ${describeRun(r, DOCKER_ANSWER_MS)}`);
    }
    const [platform, version] = r.stdout.trim().split(' ');
    const [daemonOs, daemonArch] = platform.split('/');
    if (daemonOs !== 'linux')
        throw new Error(`the daemon runs ${daemonOs} containers, not Linux ones`);
    const mine = GO_ARCH[nodeArch];
    if (mine && daemonArch !== mine)
        throw new Error(`the daemon runs on ${daemonArch}, this runner on ${mine}: its emulators would not run there`);
    log.info(`Docker daemon ${version} (${platform})`);
}
/** The image is on the daemon, pulled when it is not; else throws why not. */
async function ensureImage(docker, image, log) {
    const have = await docker.run(['image', 'inspect', '--format', '{{.Id}}', image], { timeoutMs: DOCKER_ANSWER_MS });
    if (have.code === 0)
        return;
    if (!/no such image/i.test(have.stderr))
        throw new Error(`docker image inspect ${image} ${describeRun(have, DOCKER_ANSWER_MS)}`);
    log.info(`Pulling ${image}`);
    const pull = await docker.run(['pull', image], { timeoutMs: DOCKER_PULL_MS });
    if (pull.code !== 0 || pull.signal) {
        throw new Error(`image ${image} is not on the daemon and pulling it failed (${failureReason(pull, DOCKER_PULL_MS)}); ` +
            `set docker-image to an image the daemon has or can pull`);
    }
}
/**
 * The fallback path: a KernelWriter that registers through `docker create --privileged`
 * with `image`, or the reason it cannot. Tries it for real: one privileged
 * container mounts binfmt_misc and reads the table before anything is planned.
 */
async function dockerAccess(runner, image, log, self = runnerNamespace(), nodeArch = process.arch) {
    const docker = new Docker(runner, log);
    try {
        await checkDaemon(docker, log, nodeArch);
        await ensureImage(docker, image, log);
        const writer = new DockerWriter(docker, image);
        let table;
        try {
            table = await writer.run([]);
        }
        catch (e) {
            throw new Error(`a privileged container cannot use binfmt_misc: ${errors_errorMessage(e)}`);
        }
        if (table.userns && table.userns !== INIT_USER_NS) {
            throw new Error(`the daemon's containers run in a user namespace (${table.userns}; rootless Docker or userns-remap), ` +
                `where binfmt_misc entries do not reach the host and go with the container`);
        }
        writer.hidden = hiddenFromRunner(table, self);
        if (writer.hidden) {
            log.info(`This runner cannot see the entries the daemon's containers register: ${writer.hidden}. They are read and verified in containers of the daemon instead.`);
        }
        return { writer };
    }
    catch (e) {
        return { reason: `docker: ${errors_errorMessage(e)}` };
    }
}

;// CONCATENATED MODULE: ./src/test-programs.ts
// A probe is a tiny static ELF executable per QEMU target that reads its own
// argument vector from the initial process stack (argc, then the argv
// pointers) and exits with argc + the first byte of argv[1]. Run with
// PROBE_ARGS through binfmt_misc, it proves the emulator for that target is
// registered, works, and hands the program its arguments intact: a vector
// shifted by one (the emulator and the entry's preserve-argv0 flag disagree)
// gives another status. The ELF header is generated from the target's binfmt
// magic (class, byte order, e_machine), so the file is matched by exactly the
// entry it is meant to test.

/** What every probe runs with after argv[0] (its own path). */
const PROBE_ARGS = ['A', 'Q'];
/** argc + first byte of argv[1] for [path, ...PROBE_ARGS]. */
const PROBE_EXIT_STATUS = 1 + PROBE_ARGS.length + PROBE_ARGS[0].charCodeAt(0);
/** Status when argv[0] was lost: argv[1] is then the second argument. */
const ONE_TOO_FEW = PROBE_ARGS.length + PROBE_ARGS[1].charCodeAt(0);
const quote = (args) => args.map(a => `'${a}'`).join(' ');
/**
 * What a probe's exit status says about the arguments it received, in words;
 * undefined when they arrived intact.
 */
function argumentsProblem(status) {
    if (status === PROBE_EXIT_STATUS)
        return undefined;
    const disagree = "the emulator and the entry's preserve-argv0 (P) flag disagree";
    if (status === ONE_TOO_FEW) {
        return `the test program received the arguments ${quote(PROBE_ARGS.slice(1))} instead of ${quote(PROBE_ARGS)} (argv[0] lost, one argument too few): ${disagree}`;
    }
    // One too many: argv[1] is then argv[0] again, the probe's path ('/...' or './...').
    const first = String.fromCharCode(status - (PROBE_ARGS.length + 2));
    if (first === '/' || first === '.') {
        return `the test program received one argument too many (argv[1] starting with '${first}' instead of ${quote(PROBE_ARGS)}; argv[0] passed twice): ${disagree}`;
    }
    return `the test program exited with status ${status} instead of ${PROBE_EXIT_STATUS} (argc + first byte of argv[1] for the arguments ${quote(PROBE_ARGS)}): it did not run as expected or its arguments did not arrive intact`;
}
/** Load address: page-aligned for every target and above mmap_min_addr (64 KiB). */
const LOAD_ADDR = 0x400000;
const ET_EXEC = 2;
const PT_LOAD = 1;
const PF_X = 1;
const PF_R = 4;
// Code is listed as instruction words; le32/be32/le16/be16 serialise them.
// Every probe computes status = argc + argv[1][0] and calls exit(status).
// Unless noted, argc is the word at the stack pointer and argv[1] the pointer
// two words above it.
const le32 = (...w) => w.flatMap(x => [x & 0xff, (x >>> 8) & 0xff, (x >>> 16) & 0xff, x >>> 24]);
const be32 = (...w) => w.flatMap(x => [x >>> 24, (x >>> 16) & 0xff, (x >>> 8) & 0xff, x & 0xff]);
const le16 = (...w) => w.flatMap(x => [x & 0xff, x >>> 8]);
const be16 = (...w) => w.flatMap(x => [x >>> 8, x & 0xff]);
const bytes = (hex) => [...Buffer.from(hex, 'hex')];
// i386/i486: mov (%esp),%ebx; mov 8(%esp),%eax; movzbl (%eax),%eax; add %eax,%ebx;
// mov $1 (exit),%eax; int $0x80
const I386 = bytes('8b1c248b4424080fb60001c3b801000000cd80');
// ldr x0,[sp]; ldr x1,[sp,#16]; ldrb w1,[x1]; add x0,x0,x1; mov x8,#93 (exit); svc #0
// -- A64 instructions are always little-endian.
const AARCH64 = le32(0xf94003e0, 0xf9400be1, 0x39400021, 0x8b010000, 0xd2800ba8, 0xd4000001);
// ldr r0,[sp]; ldr r1,[sp,#8]; ldrb r1,[r1]; add r0,r0,r1; mov r7,#1 (exit); svc #0
const ARM = [0xe59d0000, 0xe59d1008, 0xe5d11000, 0xe0800001, 0xe3a07001, 0xef000000];
// <ld> $8,<2 words>($sp); <ld> $4,0($sp); lbu $9,0($8); li $2,NR; addu $4,$4,$9; syscall
// -- ordered so no load result is used in its load delay slot. <ld> is lw for
// 32-bit words, ld for 64-bit. NR is exit for the ABI: o32 4001, n64 5058, n32 6058.
const mips32 = (nr) => [0x8fa80008, 0x8fa40000, 0x91090000, 0x24020000 | nr, 0x00892021, 0x0000000c];
const mips64 = (nr) => [0xdfa80010, 0xdfa40000, 0x91090000, 0x24020000 | nr, 0x00892021, 0x0000000c];
// lwz r3,0(r1); lwz r4,8(r1); lbz r4,0(r4); add r3,r3,r4; li r0,1 (exit); sc
const PPC = [0x80610000, 0x80810008, 0x88840000, 0x7c632214, 0x38000001, 0x44000002];
// ld r3,0(r1); ld r4,16(r1); lbz r4,0(r4); add r3,r3,r4; li r0,1 (exit); sc
const PPC64 = [0xe8610000, 0xe8810010, 0x88840000, 0x7c632214, 0x38000001, 0x44000002];
// Linux/QEMU start SPARC programs with %sp 16 register-window words below argc
// (and, on sparc64, below the stack bias 2047).
// ld [%sp+64],%o0; ld [%sp+72],%o1; ldub [%o1],%o1; add %o0,%o1,%o0; mov 1 (exit),%g1; ta 0x10
const SPARC = be32(0xd003a040, 0xd203a048, 0xd20a4000, 0x90020009, 0x82102001, 0x91d02010);
// ldx [%sp+2175],%o0; ldx [%sp+2191],%o1; ldub [%o1],%o1; add %o0,%o1,%o0; mov 1 (exit),%g1; ta 0x6d
const SPARC64 = be32(0xd05ba87f, 0xd25ba88f, 0xd20a4000, 0x90020009, 0x82102001, 0x91d0206d);
// sh: mov.l @r15,r4; mov.l @(8,r15),r1; mov.b @r1,r1; extu.b r1,r1; add r1,r4;
// mov #1 (exit),r3; trapa #0x11
const SH4 = [0x64f2, 0x51f2, 0x6110, 0x611c, 0x341c, 0xe301, 0xc311];
// microblaze: lwi r5,r1,0; lwi r6,r1,8; lbui r6,r6,0; addk r5,r5,r6; addik r12,r0,1 (exit); brki r14,8
const MICROBLAZE = [0xe8a10000, 0xe8c10008, 0xe0c60000, 0x10a53000, 0x31800001, 0xb9cc0008];
// xtensa: l32i a6,a1,0; l32i a3,a1,8; l8ui a3,a3,0; add a6,a6,a3; movi a2,118 (exit);
// syscall. Big-endian cores store the fields of each 24-bit instruction in
// mirrored order (nibbles swapped; an 8-bit immediate stays a byte).
const XTENSA_LE = bytes('622100322102320300306680' + '22a076005000');
const XTENSA_BE = bytes('261200231202233000036608' + '220a76000500');
const PROBES = {
    // mov (%rsp),%edi; mov 16(%rsp),%rax; movzbl (%rax),%eax; add %eax,%edi; mov $60 (exit),%eax; syscall
    x86_64: { flags: 0, code: bytes('8b3c24488b4424100fb60001c7b83c0000000f05') },
    i386: { flags: 0, code: I386 },
    i486: { flags: 0, code: I386 },
    aarch64: { flags: 0, code: AARCH64 },
    aarch64_be: { flags: 0, code: AARCH64 },
    // EABI version 5.
    arm: { flags: 0x05000000, code: le32(...ARM) },
    // EABI5 + BE8: big-endian data, little-endian instructions (what armv6+ BE Linux uses).
    armeb: { flags: 0x05800000, code: le32(...ARM) },
    // o32 must NOT carry EF_MIPS_ABI2 (0x20): that bit is what the binfmt masks test.
    mips: { flags: 0, code: be32(...mips32(4001)) },
    mipsel: { flags: 0, code: le32(...mips32(4001)) },
    // n32 = ELF32 + EF_MIPS_ABI2.
    mipsn32: { flags: 0x20, code: be32(...mips32(6058)) },
    mipsn32el: { flags: 0x20, code: le32(...mips32(6058)) },
    mips64: { flags: 0, code: be32(...mips64(5058)) },
    mips64el: { flags: 0, code: le32(...mips64(5058)) },
    ppc: { flags: 0, code: be32(...PPC) },
    // ELFv2 (e_flags 2): otherwise QEMU reads e_entry as an ELFv1 function descriptor.
    ppc64: { flags: 2, code: be32(...PPC64) },
    ppc64le: { flags: 2, code: le32(...PPC64) },
    // lg %r2,0(%r15); lg %r3,16(%r15); llgc %r3,0(%r3); agr %r2,%r3; svc 1 (exit)
    s390x: { flags: 0, code: bytes('e320f0000004e330f0100004e33030000090b9080023' + '0a01') },
    sparc: { flags: 0, code: SPARC },
    sparc32plus: { flags: 0, code: SPARC },
    sparc64: { flags: 0, code: SPARC64 },
    // lw a0,0(sp); lw a1,8(sp); lbu a1,0(a1); add a0,a0,a1; li a7,93 (exit); ecall -- uncompressed encodings.
    riscv32: { flags: 0, code: le32(0x00012503, 0x00812583, 0x0005c583, 0x00b50533, 0x05d00893, 0x00000073) },
    // ld a0,0(sp); ld a1,16(sp); lbu a1,0(a1); add a0,a0,a1; li a7,93 (exit); ecall
    riscv64: { flags: 0, code: le32(0x00013503, 0x01013583, 0x0005c583, 0x00b50533, 0x05d00893, 0x00000073) },
    // ld.d $a0,$sp,0; ld.d $a1,$sp,16; ld.bu $a1,$a1,0; add.d $a0,$a0,$a1; addi.w $a7,$zero,93 (exit); syscall 0
    loongarch64: { flags: 0, code: le32(0x28c00064, 0x28c04065, 0x2a0000a5, 0x00109484, 0x0281740b, 0x002b0000) },
    // l.lwz r3,0(r1); l.lwz r4,8(r1); l.lbz r4,0(r4); l.add r3,r3,r4; l.addi r11,r0,93 (exit); l.sys 1; l.nop
    or1k: { flags: 0, code: be32(0x84610000, 0x84810008, 0x8c840000, 0xe0632000, 0x9d60005d, 0x20000001, 0x15000000) },
    // One-instruction packets: r0=memw(r29+#0); r1=memw(r29+#8); r1=memub(r1+#0);
    // r0=add(r0,r1); r6=#93 (exit); trap0(#1).
    // e_flags names the ISA version; QEMU refuses anything but v5..v67 ("unable to find CPU model").
    hexagon: { flags: 0x67, code: le32(0x919dc000, 0x919dc041, 0x9121c001, 0xf300c100, 0x7800cba6, 0x5400c004) },
    // ldq $16,0($30); ldq $1,16($30); ldq_u $2,0($1); extbl $2,$1,$2; addq $16,$2,$16;
    // lda $0,1($31) (exit); callsys -- byte loads without the BWX extension.
    alpha: { flags: 0, code: le32(0xa61e0000, 0xa43e0010, 0x2c410000, 0x484100c2, 0x42020410, 0x201f0001, 0x00000083) },
    // move.l (%sp),%d1; movea.l 8(%sp),%a0; moveq #0,%d0; move.b (%a0),%d0; add.l %d0,%d1;
    // moveq #1 (exit),%d0; trap #0
    m68k: { flags: 0, code: be16(0x2217, 0x206f, 0x0008, 0x7000, 0x1010, 0xd280, 0x7001, 0x4e40) },
    sh4: { flags: 0, code: le16(...SH4) },
    sh4eb: { flags: 0, code: be16(...SH4) },
    // The stack grows up on PA-RISC; Linux/QEMU pass argc in %r25 and argv in %r24.
    // ldw 4(%r24),%r19; ldb 0(%r19),%r19; add %r25,%r19,%r26; ldi 1 (exit),%r20;
    // be,l 0x100(%sr2,%r0) (syscall gateway); nop
    hppa: { flags: 0, code: be32(0x0f081093, 0x0e601013, 0x0a79061a, 0x34140002, 0xe4008200, 0x08000240) },
    microblaze: { flags: 0, code: be32(...MICROBLAZE) },
    microblazeel: { flags: 0, code: le32(...MICROBLAZE) },
    xtensa: { flags: 0, code: XTENSA_LE },
    xtensaeb: { flags: 0, code: XTENSA_BE },
};
/** A complete, tiny, static ELF executable for `target` that exits with argc + argv[1][0] via the Linux syscall of that architecture: PROBE_EXIT_STATUS when run with PROBE_ARGS. */
function buildProbe(target) {
    const probe = Object.hasOwn(PROBES, target.name) ? PROBES[target.name] : undefined;
    if (!probe)
        throw new Error(`no probe for QEMU target '${target.name}'`);
    const magic = hexToBytes(target.magic);
    const le = magic[5] === 1;
    // e_machine is the one header field the magic fixes that we cannot derive
    // from class and byte order.
    const machine = le ? magic[18] | (magic[19] << 8) : (magic[18] << 8) | magic[19];
    return elfExecutable({ is64: magic[4] === 2, le, machine, ...probe });
}
// The x86-64 psABI level the CPU supports, decided as glibc does (CPUID, with
// XGETBV for the AVX and AVX-512 register state the OS enables), not from
// /proc/cpuinfo, whose flags some hypervisors trim. Exits with
// AMD64_LEVEL_BASE + level (1..4):
//   ebp=1; leaf 0 -> r8d (max leaf); leaf 0x80000000 < 0x80000001 -> done;
//   leaf 0x80000001 ecx -> r9d; leaf 1 ecx -> r10d
//   v2: leaf 1 ecx has SSE3, SSSE3, CX16, SSE4.1, SSE4.2, POPCNT (0x00982201), r9d has LAHF (bit 0): ebp=2
//   v3: leaf 1 ecx has FMA, MOVBE, OSXSAVE, AVX, F16C (0x38401000), r9d has LZCNT (bit 5), max leaf >= 7,
//       XCR0 has SSE+AVX state (6), leaf 7 ebx has BMI1, AVX2, BMI2 (0x128): ebp=3
//   v4: leaf 7 ebx has AVX512F, DQ, CD, BW, VL (0xd0030000), XCR0 has opmask+ZMM state (0xe6): ebp=4
//   done: lea AMD64_LEVEL_BASE(%rbp),%edi; mov $60 (exit),%eax; syscall
const AMD64_LEVEL_CODE = bytes('bd0100000031c00fa24189c0b8000000800fa23d010000800f8298000000b8010000800fa24189c9b8010000000fa24189ca' +
    '4489d025012298003d01229800757541f6c101746fbd020000004489d025001040383d00104038755b41f6c12074554183f8' +
    '07724f31c90f01d04189c383e00683f806753fb80700000031c90fa289d825280100003d280100007528bd0300000081e300' +
    '0003d081fb000003d075154181e3e60000004181fbe60000007505bd040000008d7d50b83c0000000f05');
/** What the level probe adds to the level in its exit status, so that no other failure reads as a level. */
const AMD64_LEVEL_BASE = 80;
const EM_X86_64 = 62;
/** A static x86-64 program whose exit status is AMD64_LEVEL_BASE + the x86-64 level (1..4) this CPU runs. */
function buildAmd64LevelProbe() {
    return elfExecutable({ is64: true, le: true, machine: EM_X86_64, flags: 0, code: AMD64_LEVEL_CODE });
}
/** The x86-64 level an exit status of the level probe reports; undefined for any other status. */
function amd64LevelOf(status) {
    if (status === null)
        return undefined;
    const level = status - AMD64_LEVEL_BASE;
    return level >= 1 && level <= 4 ? level : undefined;
}
/** An ELF executable that maps itself whole at LOAD_ADDR and starts at its code. */
function elfExecutable({ is64, le, machine, flags, code }) {
    const ehsize = is64 ? 64 : 52;
    const phentsize = is64 ? 56 : 32;
    const codeOff = ehsize + phentsize;
    const size = codeOff + code.length;
    const entry = LOAD_ADDR + codeOff;
    const buf = Buffer.alloc(size);
    let pos = 0;
    const u8 = (v) => void (pos = buf.writeUInt8(v, pos));
    const u16 = (v) => void (pos = le ? buf.writeUInt16LE(v, pos) : buf.writeUInt16BE(v, pos));
    const u32 = (v) => void (pos = le ? buf.writeUInt32LE(v, pos) : buf.writeUInt32BE(v, pos));
    const u64 = (v) => void (pos = le ? buf.writeBigUInt64LE(BigInt(v), pos) : buf.writeBigUInt64BE(BigInt(v), pos));
    // An address/offset-sized field (Elf32_Addr or Elf64_Addr).
    const word = is64 ? u64 : u32;
    // e_ident: magic, class, data, EV_CURRENT, ELFOSABI_SYSV, padding.
    buf.write('\x7fELF', 0, 'latin1');
    pos = 4;
    u8(is64 ? 2 : 1);
    u8(le ? 1 : 2);
    u8(1);
    pos = 16;
    u16(ET_EXEC);
    u16(machine);
    u32(1); // e_version
    word(entry);
    word(ehsize); // e_phoff
    word(0); // e_shoff
    u32(flags);
    u16(ehsize);
    u16(phentsize);
    u16(1); // e_phnum
    u16(0); // e_shentsize
    u16(0); // e_shnum
    u16(0); // e_shstrndx
    // One PT_LOAD mapping the whole file R+X at LOAD_ADDR.
    u32(PT_LOAD);
    if (is64)
        u32(PF_R | PF_X);
    word(0); // p_offset
    word(LOAD_ADDR); // p_vaddr
    word(LOAD_ADDR); // p_paddr
    word(size); // p_filesz
    word(size); // p_memsz
    if (!is64)
        u32(PF_R | PF_X);
    word(0x10000); // p_align: the largest page size any target uses
    Buffer.from(code).copy(buf, codeOff);
    return buf;
}

;// CONCATENATED MODULE: ./src/verify.ts








/**
 * Starts every program named after the directory ($1) in the background, and
 * prints for each, as it ends, one line: `@@probe <name> <status> <first line
 * of its stderr>` (one write, so lines of programs ending together do not mix).
 */
const PROBE_SCRIPT = `d=$1; shift
for p in "$@"; do
  ( "$d/$p" ${PROBE_ARGS.join(' ')} >/dev/null 2>"$d/$p.err"; s=$?; e=
    [ -s "$d/$p.err" ] && e=$(head -c 300 "$d/$p.err" | head -n 1)
    printf '@@probe %s %s %s\\n' "$p" "$s" "$e" ) &
done
wait
`;
/** The exit status of a program killed by a signal, as a shell reports it (128 + n), back to the signal's name. */
function signalOf(status) {
    if (status <= 128)
        return undefined;
    const found = Object.entries(external_os_.constants.signals).find(([, n]) => n === status - 128);
    return found?.[0];
}
function startError(status, stderr) {
    if (/syntax error|cannot execute binary|exec format error/i.test(stderr))
        return { code: 'ENOEXEC', what: 'exec format error' };
    if (status === 126 && /permission denied/i.test(stderr))
        return { code: 'EACCES', what: 'permission denied' };
    if (status === 127 && /not found|no such file/i.test(stderr))
        return { code: 'ENOENT', what: 'not found' };
    return undefined;
}
/** Reads what PROBE_SCRIPT printed into what running each program on its own would have given. */
function parseProbes(stdout, names) {
    const out = new Map();
    for (const line of stdout.split('\n')) {
        const m = /^@@probe (\S+) (\d+) ?(.*)$/.exec(line);
        if (!m || !names.includes(m[1]))
            continue;
        const [, name, text, stderr] = m;
        const status = Number(text);
        // The shell's words for a program it could not start, as the errors starting it directly would give.
        // (A shell may also run a file the kernel refused as a script, which fails on its binary content.)
        const refused = status === 0 ? undefined : startError(status, stderr);
        if (refused) {
            out.set(name, Object.assign(new Error(`${refused.what} (${stderr})`), { code: refused.code }));
            continue;
        }
        const signal = signalOf(status);
        out.set(name, { code: signal ? null : status, signal: signal ?? null, stdout: '', stderr });
    }
    return out;
}
/** Test programs run by `runner` (this runner's processes, or a user namespace's), through /bin/sh. */
function shellProbes(runner, timeoutMs = PROBE_MS) {
    return {
        async runAll(dir, names) {
            const r = await runner.run('/bin/sh', ['-c', PROBE_SCRIPT, 'sh', dir, ...names], { timeoutMs });
            const out = parseProbes(r.stdout, names);
            // The shell and every program still running were stopped together: those are the ones that hang.
            const stopped = { code: null, signal: r.signal ?? 'SIGKILL', stdout: '', stderr: '', ...(r.timedOut ? { timedOut: true } : {}) };
            for (const n of names)
                if (!out.has(n))
                    out.set(n, r.timedOut || r.signal ? stopped : new Error(`the shell running the test programs ${describeRun(r, timeoutMs)}`));
            return out;
        },
    };
}
const probeProgram = (target) => ({ name: `probe-${target.name}`, bytes: buildProbe(target) });
/** Writes the programs into `dir` and runs them all at once on `host`; how each ended, and the batch's time. */
async function runBatch(programs, dir, host) {
    if (!programs.length)
        return { ended: new Map(), ms: 0 };
    for (const p of programs)
        external_fs_.writeFileSync(external_path_.join(dir, p.name), p.bytes, { mode: 0o755 });
    const start = performance.now();
    let ended;
    try {
        ended = await host.runAll(dir, programs.map(p => p.name));
    }
    catch (e) {
        if (e instanceof CancelledError)
            throw e;
        // Nothing ran (a container that failed to start): each program failed with that reason.
        const failed = e instanceof Error ? e : new Error(String(e));
        ended = new Map(programs.map(p => [p.name, failed]));
    }
    return { ended, ms: performance.now() - start };
}
/** What one test program's end says: ok when it ran and its arguments arrived intact. */
function probeResult(target, ended, ms) {
    if (!ended)
        return { target, ok: false, detail: 'the test program was not run', ms };
    if (ended instanceof Error) {
        const code = ended.code;
        const detail = code === 'ENOEXEC' ? 'exec format error: no binfmt_misc entry took the test program' : `the test program could not be started (${code ?? ended.message})`;
        return { target, ok: false, detail, ms };
    }
    const problem = ended.code === null ? undefined : argumentsProblem(ended.code);
    const ok = !ended.signal && ended.code !== null && !problem;
    const said = ended.stderr.trim() ? ` (${ended.stderr.trim().split('\n')[0]})` : '';
    const detail = ended.timedOut
        ? `the test program did not finish within ${PROBE_MS / 1000} s (the emulator hangs) and was stopped`
        : ended.signal
            ? `the test program was killed by ${ended.signal}${said}`
            : ok
                ? 'ok'
                : `${problem}${said}`;
    return { target, ok, detail, ms };
}
/** Runs the test programs of `targets` at once: the kernel picks each one's interpreter (or runs it natively). */
async function runProbes(targets, dir, host) {
    const programs = targets.map(probeProgram);
    const { ended, ms } = await runBatch(programs, dir, host);
    return targets.map((t, i) => probeResult(t, ended.get(programs[i].name), ms));
}
/**
 * Proves each registration: the kernel shows the entry enabled with F, and a
 * tiny program of that architecture runs through it and reports, in its exit
 * status, that its arguments arrived intact.
 */
async function verifyRegistrations(registrations, reader, dir, host) {
    const checked = registrations.map((r) => {
        const entry = reader.read(r.staged);
        if (!entry)
            return { target: r.target, ok: false, detail: `${r.staged} is not in binfmt_misc after registering it`, ms: 0 };
        if (!entry.enabled)
            return { target: r.target, ok: false, detail: `${r.staged} is disabled`, ms: 0 };
        if (effectiveFlags(entry.flags) !== effectiveFlags(r.spec.flags)) {
            return { target: r.target, ok: false, detail: `${r.staged} has flags ${entry.flags}, expected ${effectiveFlags(r.spec.flags)}`, ms: 0 };
        }
        return undefined;
    });
    const toRun = registrations.filter((_, i) => !checked[i]).map(r => r.target);
    const ran = await runProbes(toRun, dir, host);
    return registrations.map((r, i) => checked[i] ?? ran[toRun.indexOf(r.target)]);
}
/**
 * Which of the host's related targets run without QEMU, and the x86-64 level
 * of an amd64 CPU: tried, not assumed. A target that an existing binfmt entry
 * would take over cannot be tried, and is treated as foreign.
 */
async function probeNative(host, reader, dir, probes, log) {
    const entries = reader.mounted() ? reader.list().filter(e => e.enabled) : [];
    const candidates = host.nativeCandidates.filter(target => {
        const taker = takerOf(entries, buildProbe(target));
        if (taker)
            log(`${target.name}: not tried natively, binfmt entry ${taker.name} would run it`);
        return !taker;
    });
    const level = host.arch === 'amd64' ? levelProgram(entries, log) : undefined;
    const programs = [...candidates.map(probeProgram), ...(level ? [level] : [])];
    const { ended, ms } = await runBatch(programs, dir, probes);
    const tried = candidates.map((t, i) => probeResult(t, ended.get(programs[i].name), ms));
    for (const r of tried)
        log(`${r.target.name}: ${r.ok ? 'runs natively' : `does not run natively (${r.detail})`}`);
    const amd64Level = level ? levelOf(ended.get(level.name), log) : undefined;
    return { native: tried.filter(r => r.ok).map(r => r.target), amd64Level, tried };
}
const takerOf = (entries, header) => entries.find(e => matchesHeader(e.magic, e.mask, header, e.offset));
/** The x86-64 level probe, unless an entry would take it (its answer would then be an emulator's). */
function levelProgram(entries, log) {
    const bytes = buildAmd64LevelProbe();
    const taker = takerOf(entries, bytes);
    if (!taker)
        return { name: 'probe-amd64-level', bytes };
    log(`x86-64 level: not tried, binfmt entry ${taker.name} would run the level probe; listing no linux/amd64/v2..v4`);
    return undefined;
}
/** The x86-64 level the level probe reported (CPUID, as glibc decides); undefined when it cannot tell. */
function levelOf(ended, log) {
    const level = ended && !(ended instanceof Error) ? amd64LevelOf(ended.code) : undefined;
    if (level !== undefined) {
        log(`x86-64 level: v${level} (CPUID)`);
        return level;
    }
    const how = !ended || ended instanceof Error
        ? `could not be started (${ended?.code ?? ended?.message ?? 'not run'})`
        : ended.signal
            ? `was killed by ${ended.signal}`
            : `exited with status ${ended.code}`;
    log(`x86-64 level unknown: the level probe ${how}; listing no linux/amd64/v2..v4`);
    return undefined;
}

;// CONCATENATED MODULE: ./src/access/docker/verify.ts











// Verification for a runner that cannot see the table the daemon's containers
// change: the test programs run in an ordinary container of the same daemon.
const PROBE_DIR = '/setup-qemu-binfmt-probes';
/** Test programs run in one ordinary container of the writer's daemon: what running them on the runner would give. */
function containerProbes(writer) {
    return {
        async runAll(dir, names) {
            const archive = writeTar(names.map(n => ({ name: `${PROBE_DIR.slice(1)}/${n}`, data: external_fs_.readFileSync(external_path_.join(dir, n)), mode: 0o755 })));
            const r = await runContainer(writer.docker, [writer.image, 'sh', '-c', PROBE_SCRIPT, 'sh', PROBE_DIR, ...names], archive);
            if (r.code !== 0 || r.signal)
                throw new errors_ActionError(`the verification container (${writer.image}) ${describeRun(r, CONTAINER_MS)}`);
            return parseProbes(r.stdout, names);
        },
    };
}
/**
 * verifyRegistrations for a runner that cannot see the table the daemon's
 * containers change (writer.hidden): the entries are checked as the registering
 * container left them, the test programs run in one container of the same daemon.
 */
function verifyInContainer(writer, registrations, dir) {
    return probeInContainer(writer, registrations, writer.view, dir);
}
function probeInContainer(writer, registrations, reader, dir) {
    return verifyRegistrations(registrations, reader, dir, containerProbes(writer));
}
/**
 * Runs the test programs in an ordinary container of a rootless engine, with
 * `image` (pulled when missing): the proof that the entries registered in the
 * engine's user namespace (`reader` shows its table) reach its containers.
 */
async function verifyInDaemon(runner, engine, image, log, registrations, reader, dir) {
    const docker = new Docker(runner, log, engine);
    await ensureImage(docker, image, log);
    return probeInContainer(new DockerWriter(docker, image), registrations, reader, dir);
}

;// CONCATENATED MODULE: ./src/kernel.ts






class MountError extends errors_ActionError {
    constructor(detail) {
        super(`binfmt_misc is not available: mounting ${BINFMT_ROOT} failed (${detail}); load the module with 'modprobe binfmt_misc', mount it before this step, or use install-mode: docker`);
    }
}
const MOUNT_ARGS = ['-t', 'binfmt_misc', 'binfmt_misc', BINFMT_ROOT];
/** The direct path: this process (as root, or as the owner of a user namespace's table) or `sudo -n` writes the kernel's files. */
class DirectWriter {
    runner;
    root;
    method = 'direct';
    constructor(runner, root = BINFMT_ROOT) {
        this.runner = runner;
        this.root = root;
    }
    interpreterFor(emulatorPath) {
        return emulatorPath;
    }
    /** whether the table to change is mounted at `root` */
    mounted() {
        return external_fs_.existsSync(external_path_.join(this.root, 'register'));
    }
    async apply(ops) {
        if (!this.mounted()) {
            try {
                await this.mount();
            }
            catch (e) {
                if (e instanceof errors_ActionError)
                    throw e;
                throw new MountError(errors_errorMessage(e));
            }
        }
        for (const op of ops) {
            if (op.kind === 'register') {
                const line = registerLine(op.spec);
                try {
                    // One write() per line: the kernel parses each write as a whole entry.
                    await this.write(external_path_.join(this.root, 'register'), line);
                }
                catch (e) {
                    throw new Error(`registering ${op.spec.name} failed: ${errnoMessage(e)}`);
                }
            }
            else if (external_fs_.existsSync(external_path_.join(this.root, op.name))) {
                const [value, doing] = op.kind === 'remove' ? ['-1', 'removing'] : ['0', 'disabling'];
                try {
                    await this.write(external_path_.join(this.root, op.name), value);
                }
                catch (e) {
                    throw new Error(`${doing} ${op.name} failed: ${errnoMessage(e)}`);
                }
            }
        }
    }
}
/** We are root: write the files ourselves. */
class RootWriter extends DirectWriter {
    how = 'as root';
    async mount() {
        const r = await this.runner.run('mount', MOUNT_ARGS);
        if (r.code !== 0)
            throw new Error(failureReason(r, undefined, 'mount'));
    }
    async write(file, data) {
        external_fs_.writeFileSync(file, data);
    }
}
/** Not root, but `sudo -n` works: let `tee` do the writes. */
class SudoWriter extends DirectWriter {
    how = 'through sudo -n';
    async sudo(args, input) {
        const r = await this.runner.run('sudo', ['-n', ...args], { input });
        if (r.code !== 0)
            throw new Error(failureReason(r, undefined, `sudo ${args[0]}`));
    }
    mount() {
        return this.sudo(['mount', ...MOUNT_ARGS]);
    }
    write(file, data) {
        return this.sudo(['tee', file], data);
    }
}
const CAP_SYS_ADMIN = 21;
/** Why root here still cannot change binfmt_misc (an unprivileged container job), if it cannot. */
function rootLimits(status, mountinfo) {
    const capEff = /^CapEff:\s*([0-9a-f]+)/m.exec(status)?.[1];
    if (capEff && ((BigInt(`0x${capEff}`) >> BigInt(CAP_SYS_ADMIN)) & BigInt(1)) === BigInt(0)) {
        return 'root, but without CAP_SYS_ADMIN (an unprivileged container?)';
    }
    // The longest mount point covering binfmt_misc decides whether it can be written.
    let best;
    for (const line of mountinfo.split('\n')) {
        const f = line.split(' ');
        const point = f[4];
        if (!point || !(BINFMT_ROOT === point || BINFMT_ROOT.startsWith(point.endsWith('/') ? point : `${point}/`)))
            continue;
        if (!best || point.length > best.point.length)
            best = { point, ro: f[5]?.split(',').includes('ro') ?? false };
    }
    if (best?.ro)
        return `root, but ${best.point} is mounted read-only here`;
    return undefined;
}
/** Root, or passwordless sudo; otherwise says why neither works. */
async function directAccess(runner, uid = process.getuid?.() ?? -1) {
    if (uid === 0) {
        const limit = rootLimits(readOr(() => external_fs_.readFileSync('/proc/self/status', 'utf8'), ''), readOr(() => external_fs_.readFileSync('/proc/self/mountinfo', 'utf8'), ''));
        return limit ? { reason: limit } : { writer: new RootWriter(runner) };
    }
    let reason;
    try {
        const r = await runner.run('sudo', ['-n', 'true'], { timeoutMs: SUDO_CHECK_MS });
        if (r.code === 0)
            return { writer: new SudoWriter(runner) };
        reason = `not root, and sudo -n: ${failureReason(r, SUDO_CHECK_MS)}`;
    }
    catch (e) {
        reason = `not root, and sudo is not installed (${errnoMessage(e)})`;
    }
    return { reason };
}

;// CONCATENATED MODULE: ./src/access/userns.ts
// install-mode userns: since Linux 6.7 a user namespace may mount a binfmt_misc
// of its own, whose entries apply to that namespace and the namespaces it
// creates. Rootless Docker runs its daemon and containers in one such namespace,
// which this runner's user owns: the emulators are registered there, without
// any privilege on the host, and the host's table is never touched.









/** Names a namespace to register in instead of rootless Docker's: the user namespace of this process (e.g. Podman's pause process, or `setup-qemu-binfmt run`'s). */
const USERNS_PID_ENV = 'SETUP_QEMU_BINFMT_USERNS_PID';
/** The namespace's binfmt_misc, as seen from outside through its process's root. */
function binfmtRootOf(ns) {
    return `/proc/${ns.pid}/root${BINFMT_ROOT}`;
}
/** A /proc file's text, or undefined when the kernel does not offer it (the process is gone). */
const procText = (file) => readOr(() => external_fs_.readFileSync(file, 'utf8'), undefined);
const statOr = (file) => readOr(() => external_fs_.statSync(file), undefined);
const lstatOr = (file) => readOr(() => external_fs_.lstatSync(file), undefined);
/**
 * A pid file's text, or undefined when there is none. Opened without following
 * a symlink or waiting on a FIFO, and checked on the open file: only a small
 * regular file of this user's may name the process.
 */
function readPidFile(file, what) {
    let fd;
    try {
        fd = external_fs_.openSync(file, external_fs_.constants.O_RDONLY | external_fs_.constants.O_NOFOLLOW | external_fs_.constants.O_NONBLOCK);
    }
    catch (e) {
        if (e.code === 'ENOENT')
            return undefined;
        throw new Error(`${file} cannot name ${what} (${errors_errorMessage(e)}); it must be a regular file of this user`);
    }
    try {
        const st = external_fs_.fstatSync(fd);
        if (!st.isFile() || st.uid !== process.geteuid?.())
            throw new Error(`${file} is not a regular file owned by this user; it cannot name ${what}`);
        const buf = Buffer.alloc(32);
        return buf.toString('utf8', 0, external_fs_.readSync(fd, buf, 0, buf.length, 0));
    }
    finally {
        external_fs_.closeSync(fd);
    }
}
/** Why `pid` is not a process of this user in a user namespace other than this process's, or undefined when it is one. */
function processProblem(pid) {
    const status = procText(`/proc/${pid}/status`);
    if (status === undefined)
        return `process ${pid} is not running`;
    // A zombie keeps its credentials (and so its user namespace link) but no longer has namespaces to enter.
    if (/^State:\s+[ZX]/m.test(status))
        return `process ${pid} has exited`;
    const uids = /^Uid:\s+(.*)$/m.exec(status)?.[1].trim().split(/\s+/).map(Number) ?? [];
    const me = process.geteuid?.() ?? -1;
    if (!uids.length || uids.some(u => u !== me))
        return `process ${pid} does not run as this user (uid ${me})`;
    let theirs;
    try {
        theirs = external_fs_.readlinkSync(`/proc/${pid}/ns/user`);
    }
    catch (e) {
        return `cannot see the user namespace of process ${pid} (${errors_errorMessage(e)})`;
    }
    if (theirs === external_fs_.readlinkSync('/proc/self/ns/user'))
        return `process ${pid} runs in this runner's own user namespace, not one of its own`;
    return undefined;
}
/** `pid` runs as this user in a user namespace other than this process's; else throws why not. */
function checkProcess(pid, what) {
    const problem = processProblem(pid);
    if (problem)
        throw new Error(`${what}: ${problem}`);
}
/** There is no local Docker socket to look at: Podman may be what this user runs. */
class NoDocker extends Error {
}
/** The unix socket the docker CLI talks to, when it is a local one. */
function dockerSocket(env) {
    const host = env.DOCKER_HOST;
    if (host)
        return host.startsWith('unix://') ? host.slice('unix://'.length) : undefined;
    return env.XDG_RUNTIME_DIR ? external_path_.join(env.XDG_RUNTIME_DIR, 'docker.sock') : undefined;
}
/**
 * The namespace of the rootless Docker daemon behind DOCKER_HOST (or
 * $XDG_RUNTIME_DIR/docker.sock): dockerd writes its pid beside its socket, and
 * rootlesskit its child's pid into its state directory.
 */
function rootlessDocker(env) {
    const socket = dockerSocket(env);
    if (!socket) {
        throw new NoDocker(env.DOCKER_HOST
            ? `DOCKER_HOST (${env.DOCKER_HOST}) is not a local unix socket`
            : 'no rootless Docker daemon: neither DOCKER_HOST nor XDG_RUNTIME_DIR is set');
    }
    const sock = statOr(socket);
    if (!sock?.isSocket())
        throw new NoDocker(`no rootless Docker daemon: ${socket} is not a socket`);
    // Only this user's files may name the process to enter: the socket's directory may be shared (e.g. /tmp).
    if (sock.uid !== process.geteuid?.())
        throw new Error(`${socket} is not owned by this user, so it is not this user's rootless Docker daemon; set DOCKER_HOST to your own daemon's socket`);
    const dir = external_path_.dirname(socket);
    // rootlesskit's state directory counts only when it is a real directory of this user's, not a symlink or another user's.
    const state = lstatOr(external_path_.join(dir, 'dockerd-rootless'));
    const stateOwn = state?.isDirectory() && state.uid === sock.uid;
    for (const file of [...(stateOwn ? [external_path_.join(dir, 'dockerd-rootless', 'child_pid')] : []), external_path_.join(dir, 'docker.pid')]) {
        const pid = pidFrom(file, 'the rootless Docker daemon');
        if (pid === undefined)
            continue;
        return { pid, label: `the user namespace of rootless Docker (pid ${pid}, ${socket})`, engine: { cli: 'docker', env: { DOCKER_HOST: `unix://${socket}` } } };
    }
    throw new Error(`no rootless Docker daemon's pid file beside ${socket} (docker.pid or dockerd-rootless/child_pid)`);
}
/** The process id a pid file of this user's holds, or undefined when there is no such file. */
function readPid(file, what) {
    const text = readPidFile(file, what);
    if (text === undefined)
        return undefined;
    if (!/^\d{1,9}\s*$/.test(text))
        throw new Error(`${file} does not hold a process id`);
    return Number(text);
}
/** readPid, checked to run as this user in a user namespace of its own. */
function pidFrom(file, what) {
    const pid = readPid(file, what);
    if (pid !== undefined)
        checkProcess(pid, `${what} (${file})`);
    return pid;
}
/** Podman's pause process, when one of this user's is running: Podman keeps its namespace alive with it. */
function podmanPause(env) {
    // Podman's runtime directory: XDG_RUNTIME_DIR, else /run/user/<uid>, else /tmp/podman-run-<uid>.
    const uid = process.geteuid?.();
    const dirs = [env.XDG_RUNTIME_DIR, `/run/user/${uid}`, `/tmp/podman-run-${uid}`].filter((d) => !!d);
    // A file someone else put where ours would be (/tmp is shared) is not ours to follow.
    const file = dirs
        .map(d => external_path_.join(d, 'libpod', 'tmp', 'pause.pid'))
        .find(f => {
        const st = lstatOr(f);
        return st?.isFile() && st.uid === uid;
    });
    if (!file)
        return undefined;
    const what = "rootless Podman's pause process";
    const pid = readPid(file, what);
    if (pid === undefined)
        return undefined;
    const problem = processProblem(pid);
    // Left behind by a pause process that is gone: Podman starts a new one.
    if (problem && /not running|has exited/.test(problem))
        return undefined;
    if (problem)
        throw new Error(`${what} (${file}): ${problem}`);
    return pid;
}
/**
 * The namespace of rootless Podman: the one `podman unshare` enters, held by
 * Podman's pause process. With `start`, `podman unshare true` starts that
 * process when it is not running (under auto, nothing of Podman's is started).
 */
async function rootlessPodman(env, runner, start) {
    let pid = podmanPause(env);
    if (pid === undefined) {
        if (!start)
            throw new Error('no rootless Podman running (no live pause process; install-mode: userns starts one with podman unshare)');
        let r;
        try {
            r = await runner.run('podman', ['unshare', 'true'], { timeoutMs: USERNS_MS });
        }
        catch (e) {
            throw new Error(e.code === 'ENOENT' ? 'no podman command on PATH' : errors_errorMessage(e));
        }
        if (r.code !== 0)
            throw new Error(`podman unshare: ${failureReason(r, USERNS_MS)}`);
        pid = podmanPause(env);
        if (pid === undefined)
            throw new Error('podman unshare left no pause process (libpod/tmp/pause.pid)');
    }
    return { pid, label: `the user namespace of rootless Podman (pause process ${pid})`, engine: { cli: 'podman' } };
}
/** The namespace $SETUP_QEMU_BINFMT_USERNS_PID names, else rootless Docker's, else rootless Podman's. */
async function findNamespace(env, runner, startPodman = true) {
    const named = env[USERNS_PID_ENV];
    if (named === undefined || named === '') {
        try {
            return rootlessDocker(env);
        }
        catch (docker) {
            // A Docker socket that is there but refused (someone else's, a planted pid file) stops here: it is what the user pointed at.
            if (!(docker instanceof NoDocker))
                throw docker;
            try {
                return await rootlessPodman(env, runner, startPodman);
            }
            catch (podman) {
                throw new Error(`${errors_errorMessage(docker)}; ${errors_errorMessage(podman).startsWith('no rootless Podman') ? '' : 'no rootless Podman: '}${errors_errorMessage(podman)}`);
            }
        }
    }
    if (!/^[1-9]\d{0,8}$/.test(named))
        throw new errors_ActionError(`${USERNS_PID_ENV} must be a process id, not '${named}'`);
    const pid = Number(named);
    checkProcess(pid, USERNS_PID_ENV);
    return { pid, label: `the user namespace of process ${pid}` };
}
/** The nsenter arguments that run a command inside `ns` (in its root directory: entering a mount namespace moves there). */
function enterArgs(ns, command, args) {
    // Our uid is its root already; without --preserve-credentials nsenter calls setgroups, which such a namespace denies.
    return ['--target', String(ns.pid), '--user', '--mount', '--preserve-credentials', '--', command, ...args];
}
/** Runs programs inside the namespace: where its binfmt_misc entries apply. */
class NamespaceRunner {
    ns;
    runner;
    constructor(ns, runner) {
        this.ns = ns;
        this.runner = runner;
    }
    async run(command, args, options) {
        const r = await this.runner.run('nsenter', enterArgs(this.ns, command, args), options);
        // nsenter's own failure to start the program, as running it directly would have thrown.
        const failed = /^nsenter: failed to execute .*: (.*)$/m.exec(r.stderr);
        if (r.code !== null && r.code >= 126 && failed) {
            const code = /exec format error/i.test(failed[1]) ? 'ENOEXEC' : /no such file/i.test(failed[1]) ? 'ENOENT' : 'EACCES';
            throw Object.assign(new Error(failed[1]), { code });
        }
        return r;
    }
}
/** Whether a file of a binfmt_misc is in the namespace's own table: it belongs to the namespace's root (this user), and it is not the host's. */
function inOwnTable(file) {
    const host = statOr(BINFMT_ROOT);
    return file.uid === process.geteuid?.() && (!host || file.dev !== host.dev);
}
/** Whether the binfmt_misc at `root` is the namespace's own. */
function ownInstance(root) {
    const register = statOr(external_path_.join(root, 'register'));
    return register !== undefined && inOwnTable(register);
}
/** Kernel release as [major, minor]. */
function kernelVersion(release) {
    const m = /^(\d+)\.(\d+)/.exec(release);
    return m ? [Number(m[1]), Number(m[2])] : [0, 0];
}
/** Mounts the namespace's own binfmt_misc over the host's in its mount namespace, unless it has it already. */
async function mountOwnBinfmt(ns, runner) {
    const root = binfmtRootOf(ns);
    if (ownInstance(root))
        return;
    let why;
    try {
        const r = await runner.run('nsenter', enterArgs(ns, 'mount', ['-t', 'binfmt_misc', 'binfmt_misc', BINFMT_ROOT]), { timeoutMs: USERNS_MS });
        why = r.code === 0 ? '' : failureReason(r, USERNS_MS, 'mount');
    }
    catch (e) {
        why = e.code === 'ENOENT' ? 'nsenter is not installed (util-linux)' : errors_errorMessage(e);
    }
    if (!why && ownInstance(root))
        return;
    // Not the kernel's refusal: the namespace's process ended (or its pid is another's now) during the step.
    const gone = processProblem(ns.pid);
    if (gone)
        throw new errors_ActionError(`${ns.label} went away during the step (${gone}); start it again and rerun`);
    throw mountRefused(ns.label, why || 'the mount did not take', external_os_.release());
}
/** A namespace cannot have a binfmt_misc of its own. `reason` says why without the advice, for auto's list of ways tried. */
class MountRefused extends errors_ActionError {
    reason;
    constructor(reason) {
        super(`${reason}: use install-mode: direct (root or passwordless sudo) or a rootful Docker daemon (install-mode: docker) instead`);
        this.reason = reason;
    }
}
/** Why a namespace has no binfmt_misc of its own: the kernel is too old for it, or refused it there. */
function mountRefused(label, why, release) {
    const [major, minor] = kernelVersion(release);
    const old = major < 6 || (major === 6 && minor < 7);
    return new MountRefused(`cannot give ${label} a binfmt_misc of its own (${why}); ` +
        (old ? `this kernel is ${release}, and user namespaces can mount binfmt_misc only since Linux 6.7` : `kernel ${release} refused it in this namespace`));
}
/** Registers in the namespace's own binfmt_misc, writing its files from outside as their owner. */
class UsernsWriter extends DirectWriter {
    ns;
    method = 'userns';
    how;
    /** the namespace's table: the reader for this writer */
    view;
    /** runs test programs inside the namespace */
    probes;
    constructor(ns, runner) {
        super(runner, binfmtRootOf(ns));
        this.ns = ns;
        this.how = `in ${ns.label}`;
        this.view = new BinfmtReader(this.root);
        this.probes = new NamespaceRunner(ns, runner);
    }
    mounted() {
        return ownInstance(this.root);
    }
    mount() {
        return mountOwnBinfmt(this.ns, this.runner);
    }
    async write(file, data) {
        // The namespace may have gone since, or its table been swapped: the file is checked as opened, then written, so
        // nothing between the check and the write can send it into another table (the host's above all).
        const fd = external_fs_.openSync(file, external_fs_.constants.O_WRONLY | external_fs_.constants.O_NOFOLLOW);
        try {
            if (!inOwnTable(external_fs_.fstatSync(fd)))
                throw new Error(`${this.ns.label} no longer has a binfmt_misc of its own`);
            // One write() per line: the kernel parses each write as a whole entry.
            external_fs_.writeSync(fd, data);
        }
        finally {
            external_fs_.closeSync(fd);
        }
    }
}
/** A writer for the user namespace of rootless Docker (or $SETUP_QEMU_BINFMT_USERNS_PID's), with its binfmt_misc mounted; or why not. */
async function usernsAccess(runner, startPodman = true, env = process.env) {
    let ns;
    try {
        ns = await findNamespace(env, runner, startPodman);
    }
    catch (e) {
        if (e instanceof errors_ActionError)
            throw e;
        return { reason: `userns: ${errors_errorMessage(e)}` };
    }
    await mountOwnBinfmt(ns, runner);
    return { writer: new UsernsWriter(ns, runner) };
}
/**
 * For looking only (the command's status and verify): the namespace of rootless
 * Docker or of a running Podman, and whether it has a binfmt_misc of its own.
 * Nothing is mounted or started: a namespace without its own table uses the host's.
 */
async function usernsView(runner, env = process.env) {
    let ns;
    try {
        ns = await findNamespace(env, runner, false);
    }
    catch (e) {
        if (e instanceof ActionError)
            throw e;
        throw new ActionError(`--userns: ${errorMessage(e)}`);
    }
    return { writer: new UsernsWriter(ns, runner), own: ownInstance(binfmtRootOf(ns)) };
}
/**
 * The first process of a new user namespace (mapped to root there) with a
 * mount namespace of its own: it waits until told to go, then becomes COMMAND.
 * Descriptor 3 is the line between us: it says `ready` once inside, and reads the go-ahead.
 * Descriptor 4 is our own stderr, which the command gets (a terminal stays one: an
 * interactive shell needs it); until then stderr is a pipe to us, to explain a failed start.
 */
const HOLDER = 'echo ready >&3 || exit 125; read -r go <&3 || exit 125; exec 3>&- 2>&4 4>&-; exec "$@"';
/** Whether this process is in the foreground process group of its controlling terminal (whose ^C then reaches the whole group). */
function inTerminalForeground() {
    const stat = procText('/proc/self/stat');
    // After "pid (comm) ": state ppid pgrp session tty_nr tpgid ...; comm may hold spaces and parentheses.
    const fields = stat?.slice(stat.lastIndexOf(')') + 2).split(' ');
    return fields !== undefined && fields[4] !== '0' && fields[5] === fields[2];
}
/** Whether `name` is an executable file in one of PATH's directories. */
function onPath(name) {
    return (process.env.PATH ?? '')
        .split(':')
        .filter(d => path.isAbsolute(d))
        .some(d => {
        try {
            fs.accessSync(path.join(d, name), fs.constants.X_OK);
            return true;
        }
        catch {
            return false;
        }
    });
}
/** Exit status of a process as a shell reports it (128 + n for a signal). */
function statusOf(code, signal) {
    if (code !== null)
        return code;
    return 128 + (signal ? (os.constants.signals[signal] ?? 0) : 0);
}
/** A new user namespace, for `setup-qemu-binfmt run`: registered into first, then it runs the command. */
class NewNamespace {
    child;
    ns;
    exited;
    constructor(child, ns, exited) {
        this.child = child;
        this.ns = ns;
        this.exited = exited;
    }
    /** Starts the namespace's first process, which will run `command` once `go` is called; throws why it could not. */
    static async start(command) {
        // setpriv --pdeathsig: if we are killed outright (SIGKILL, no chance to pass a signal on), the command is sent
        // SIGTERM as our own SIGTERM would have, instead of running on as an orphan.
        const orphanGuard = onPath('setpriv') ? ['setpriv', '--pdeathsig', 'TERM', '--'] : [];
        const holder = [...orphanGuard, '/bin/sh', '-c', HOLDER, 'sh', ...command];
        const child = spawn('unshare', ['--user', '--map-root-user', '--mount', '--propagation', 'private', '--', ...holder], {
            stdio: ['inherit', 'inherit', 'pipe', 'pipe', 2],
        });
        let stderr = '';
        let ready = false;
        child.stderr?.on('data', (d) => {
            // Until the namespace is ready its errors are ours to explain.
            if (!ready)
                stderr += d.toString();
        });
        let failed;
        const exited = new Promise(resolve => {
            child.once('error', e => {
                failed = e;
                resolve(125);
            });
            child.once('close', (code, signal) => resolve(statusOf(code, signal)));
        });
        const started = await new Promise(resolve => {
            ;
            child.stdio[3].once('data', () => resolve(true));
            void exited.then(() => resolve(false));
        });
        if (!started) {
            if (failed?.code === 'ENOENT')
                throw new ActionError('cannot create a user namespace: unshare is not installed; install util-linux');
            const why = failed ? errorMessage(failed) : errorLine(stderr) || 'unshare exited';
            throw new ActionError(`cannot create a user namespace (${why}); ` +
                `unprivileged user namespaces are needed: check the sysctls user.max_user_namespaces and kernel.apparmor_restrict_unprivileged_userns`);
        }
        ready = true;
        const pid = child.pid;
        return new NewNamespace(child, { pid, label: `a new user namespace (pid ${pid})` }, exited);
    }
    /** Lets the command run; resolves with its exit status. Signals sent to us meanwhile are passed on. */
    async go() {
        // A terminal's ^C reaches the command itself (same process group): passing it on too would make it a
        // second ^C, which many programs take as "force quit". A signal sent to us alone is passed on.
        const pass = (s) => void (s === 'SIGINT' && inTerminalForeground() ? undefined : this.child.kill(s));
        for (const s of END_SIGNALS)
            process.on(s, pass);
        try {
            ;
            this.child.stdio[3].end('go\n');
            return await this.exited;
        }
        finally {
            for (const s of END_SIGNALS)
                process.off(s, pass);
        }
    }
    /** Ends the namespace without running the command. */
    async abandon() {
        this.child.kill('SIGKILL');
        await this.exited;
    }
}

;// CONCATENATED MODULE: ./src/access/index.ts







/** This runner's own table, changed as root or through sudo -n. */
function directWay(writer, runs) {
    const reader = new BinfmtReader();
    const probes = shellProbes(runs);
    return { writer, reader, hidden: false, probes, verify: (registrations, dir) => verifyRegistrations(registrations, reader, dir, probes) };
}
/** The daemon's host table, through privileged containers; proven in containers when this runner cannot see it. */
function dockerWay(writer, runs) {
    if (!writer.hidden)
        return { ...directWay(writer, runs), writer };
    return { writer, reader: writer.view, hidden: true, probes: shellProbes(runs), verify: (registrations, dir) => verifyInContainer(writer, registrations, dir) };
}
/**
 * A user namespace's own table: proven inside it, then in a container of the rootless
 * engine that runs there (the proof that its containers get the entries).
 */
function usernsWay(writer, runs, dockerImage, log) {
    const probes = shellProbes(writer.probes);
    const verify = async (registrations, dir) => {
        const inside = await verifyRegistrations(registrations, writer.view, dir, probes);
        const engine = writer.ns.engine;
        if (!engine)
            return inside;
        const passed = registrations.filter((_, i) => inside[i].ok);
        if (!passed.length)
            return inside;
        const inContainer = await verifyInDaemon(runs, engine, dockerImage, log, passed, writer.view, dir);
        const byTarget = new Map(inContainer.map(p => [p.target.name, p]));
        return inside.map(p => {
            const c = byTarget.get(p.target.name);
            if (!c || c.ok)
                return p;
            return { ...c, detail: `in a container of the engine in ${writer.ns.label}: ${c.detail}` };
        });
    };
    return { writer, reader: writer.view, hidden: false, probes, verify, scope: `${writer.ns.label}; this runner's own processes are not covered` };
}
/**
 * The way to change binfmt_misc that `mode` allows: auto tries direct (root or
 * sudo -n) first, then Docker, then a rootless engine's user namespace; else
 * one error listing each way tried and why.
 */
async function chooseAccess(req) {
    const { mode, log } = req;
    const tried = [];
    if (mode === 'auto' || mode === 'direct') {
        const direct = await directAccess(req.writes);
        if (direct.writer) {
            log.info(`Registering directly ${direct.writer.how}`);
            return directWay(direct.writer, req.runs);
        }
        tried.push(`direct: ${direct.reason}`);
        if (mode === 'auto')
            log.info(`Direct registration is not possible (${direct.reason}); trying Docker`);
    }
    if (mode === 'auto' || mode === 'docker') {
        const docker = await dockerAccess(req.writes, req.dockerImage, log);
        if (docker.writer) {
            log.info(`Registering ${docker.writer.how}`);
            return dockerWay(docker.writer, req.runs);
        }
        tried.push(`${docker.reason}`);
        if (mode === 'auto')
            log.info(`Registering through Docker is not possible (${docker.reason}); trying a rootless engine's user namespace`);
    }
    if (mode === 'auto' || mode === 'userns') {
        let userns;
        try {
            // Under auto, nothing of Podman's is started: only a Podman already in use is chosen.
            userns = await usernsAccess(req.writes, mode === 'userns', req.env);
        }
        catch (e) {
            // Asked for by name, its own error says it best; under auto it is one reason among the others.
            if (mode === 'userns' || !(e instanceof errors_ActionError))
                throw e;
            userns = { reason: `userns: ${e instanceof MountRefused ? e.reason : errors_errorMessage(e)}` };
        }
        if (userns.writer) {
            log.info(`Registering ${userns.writer.how}: its processes and containers get the emulators; this runner's own processes do not`);
            return usernsWay(userns.writer, req.runs, req.dockerImage, log);
        }
        tried.push(`${userns.reason}`);
    }
    throw new errors_ActionError(`cannot ${req.doing ?? 'register emulators'} (install-mode: ${mode}): ${tried.join('; ')}; ` +
        (mode === 'userns'
            ? `run rootless Docker (DOCKER_HOST at its socket) or rootless Podman, or name a process of a user namespace in SETUP_QEMU_BINFMT_USERNS_PID (Linux 6.7+)`
            : `run as root, allow passwordless sudo, give the runner access to a Docker daemon, or run rootless Docker or Podman on Linux 6.7+ (install-mode: userns)`));
}
/**
 * The way a main step used, again (for the post step, which puts its entries back): only that one, since
 * its entries are in that way's table. Throws when it is not possible any more.
 */
async function accessAgain(method, dockerImage, runner, env, log) {
    const gone = (reason) => new Error(`cannot change binfmt_misc any more (${reason})`);
    if (method === 'docker') {
        const docker = await dockerAccess(runner, dockerImage, log);
        if (!docker.writer)
            throw gone(docker.reason);
        return dockerWay(docker.writer, runner);
    }
    if (method === 'userns') {
        const userns = await usernsAccess(runner, false, env);
        if (!userns.writer)
            throw gone(userns.reason);
        return usernsWay(userns.writer, runner, dockerImage, log);
    }
    const direct = await directAccess(runner);
    if (!direct.writer)
        throw gone(direct.reason);
    return directWay(direct.writer, runner);
}

;// CONCATENATED MODULE: ./src/buildx/commands.ts
// argv for the `docker buildx` commands the builder step runs (the program is `docker`).
// Pure so the exact command lines can be asserted in tests. Positional values (builder
// names, endpoints) always follow `--`, so none can be read as an option whatever it holds.
function versionArgs() {
    return ['buildx', 'version'];
}
/**
 * The first node's name, given to create rather than left to buildx, so that what it makes is
 * known before it exists: the docker-container driver names its container and state volume
 * after the node (containerName), and a cancelled step removes them by those names.
 */
function firstNodeName(builder) {
    return `${builder}0`;
}
/** The docker-container driver's container for a node, and its state volume (`<container>_state`). */
function containerName(node) {
    return `buildx_buildkit_${node}`;
}
/**
 * `create` for the first node, at `endpoint` when one is given (after `--`). No --platform: BuildKit detects the platforms the
 * registered emulators provide when it starts, and a fixed list would hide new ones.
 * `--config` is accepted by every release (newer ones keep it as a hidden alias of --buildkitd-config).
 * `bootstrap`: create also boots it (where no node is appended first).
 */
function createArgs(opts, configFile, bootstrap = false) {
    const args = ['buildx', 'create', '--name', opts.name, '--node', firstNodeName(opts.name), '--driver', opts.driver];
    for (const o of opts.driverOpts)
        args.push('--driver-opt', o);
    if (opts.buildkitdFlags)
        args.push('--buildkitd-flags', opts.buildkitdFlags);
    if (configFile)
        args.push('--config', configFile);
    if (opts.use)
        args.push('--use');
    if (bootstrap)
        args.push('--bootstrap');
    if (opts.endpoint)
        args.push('--', opts.endpoint);
    return args;
}
/** Removes a leftover docker-container node container with its anonymous volumes. */
function containerRmArgs(node) {
    return ['rm', '--force', '--volumes', '--', containerName(node)];
}
function volumeRmArgs(node) {
    return ['volume', 'rm', '--force', '--', `${containerName(node)}_state`];
}
/** `create --append` adds a node; the driver is the builder's, so it is not repeated. */
function appendArgs(name, node) {
    const args = ['buildx', 'create', '--append', '--name', name];
    if (node.name)
        args.push('--node', node.name);
    if (node.platforms.length)
        args.push('--platform', node.platforms.join(','));
    for (const o of node.driverOpts)
        args.push('--driver-opt', o);
    args.push('--', node.endpoint);
    return args;
}
function bootstrapArgs(name) {
    return ['buildx', 'inspect', '--bootstrap', '--builder', name];
}
/** Without a name: the current builder (for the `docker` driver, the context's own). */
function inspectArgs(name) {
    return name ? ['buildx', 'inspect', '--', name] : ['buildx', 'inspect'];
}
function lsJsonArgs() {
    return ['buildx', 'ls', '--format', 'json'];
}
function useArgs(name) {
    return ['buildx', 'use', '--', name];
}
function rmArgs(name) {
    return ['buildx', 'rm', '--', name];
}

;// CONCATENATED MODULE: ./src/buildx/inspect.ts
// Parsers for what `docker buildx inspect` and `docker buildx ls --format json` print.
//
// inspect is tabwriter text: `Key:<spaces>value` lines, the builder first, then
// `Nodes:` and one block per node. Key names changed over buildx releases
// (`Flags` -> `BuildKit daemon flags`, `Buildkit` -> `BuildKit` -> `BuildKit version`),
// and nodes may carry indented sections (`Features:`, `Labels:`, `Devices:`,
// `GC Policy rule#N:`, `File#name:`) whose lines start with whitespace and can
// themselves contain `Name:` keys, so only unindented lines are read.
const KEY_LINE = /^([A-Za-z][^:]*):(?:[ \t]+(.*))?$/;
function parseInspect(text) {
    const out = { name: '', driver: '', nodes: [] };
    let inNodes = false;
    let node;
    for (const raw of text.split('\n')) {
        const line = raw.replace(/\r$/, '');
        // Indented lines belong to a section (labels, GC policy, devices...): never builder or node keys.
        if (line === '' || /^\s/.test(line))
            continue;
        const m = KEY_LINE.exec(line);
        if (!m)
            continue;
        const key = m[1].trim().toLowerCase();
        const value = (m[2] ?? '').trim();
        if (!inNodes) {
            if (key === 'nodes')
                inNodes = true;
            else if (key === 'name')
                out.name = value;
            else if (key === 'driver')
                out.driver = value;
            continue;
        }
        if (key === 'name') {
            node = { name: value, endpoint: '', status: '', buildkit: '', platforms: [] };
            out.nodes.push(node);
            continue;
        }
        if (!node)
            continue;
        switch (key) {
            case 'endpoint':
                node.endpoint = value;
                break;
            case 'status':
                node.status = value;
                break;
            case 'error':
                // buildx prints Error instead of Status for a node it could not load
                node.error = value;
                if (!node.status)
                    node.status = 'error';
                break;
            case 'buildkit version':
            case 'buildkit':
                node.buildkit = value;
                break;
            case 'platforms':
                setPlatforms(node, value.split(','));
                break;
            // Flags, Driver Options, section headers and keys from future releases are not needed.
        }
    }
    return out;
}
/**
 * One builder from `docker buildx ls --format json` (one JSON object per line).
 * buildx 0.13 printed the builder's object once for the builder and again for each
 * node, so repeated lines are expected; older or newer field spellings are tolerated.
 * Returns undefined when no line describes `name` (e.g. the output is not JSON).
 */
function parseLsJson(text, name) {
    for (const obj of jsonObjects(text)) {
        if (str(obj.Name) !== name)
            continue;
        const nodes = Array.isArray(obj.Nodes) ? obj.Nodes.filter(isObject).map(jsonNode) : [];
        return { name, driver: str(obj.Driver), nodes };
    }
    return undefined;
}
/** All platforms of all nodes: user-set (preferred) ones first, then in node order, each once. */
function unionPlatforms(nodes) {
    const seen = new Set();
    const out = [];
    const add = (p) => {
        const q = stripMarker(p);
        if (q && !seen.has(q)) {
            seen.add(q);
            out.push(q);
        }
    };
    for (const n of nodes)
        for (const p of n.preferred ?? [])
            add(p);
    for (const n of nodes)
        for (const p of n.platforms)
            add(p);
    return out;
}
function setPlatforms(node, items) {
    const platforms = [];
    const preferred = [];
    for (const item of items) {
        const t = item.trim();
        if (!t)
            continue;
        const p = stripMarker(t);
        if (!p || platforms.includes(p))
            continue;
        platforms.push(p);
        if (t.endsWith('*'))
            preferred.push(p);
    }
    node.platforms = platforms;
    if (preferred.length)
        node.preferred = preferred;
}
function stripMarker(p) {
    return p.trim().replace(/\*+$/, '').trim();
}
function isObject(v) {
    return typeof v === 'object' && v !== null && !Array.isArray(v);
}
function str(v) {
    return typeof v === 'string' ? v : typeof v === 'number' ? String(v) : '';
}
function jsonObjects(text) {
    const trimmed = text.trim();
    // Not what buildx prints today, but cheap to accept should it ever print an array.
    if (trimmed.startsWith('[')) {
        try {
            const arr = JSON.parse(trimmed);
            if (Array.isArray(arr))
                return arr.filter(isObject);
        }
        catch {
            // fall through to line by line
        }
    }
    const out = [];
    for (const line of text.split('\n')) {
        const t = line.trim();
        if (!t.startsWith('{'))
            continue;
        try {
            const v = JSON.parse(t);
            if (isObject(v))
                out.push(v);
        }
        catch {
            // a stray non-JSON line (warning, progress) is not ours to judge
        }
    }
    return out;
}
function jsonNode(n) {
    const node = {
        name: str(n.Name),
        endpoint: str(n.Endpoint),
        status: str(n.Status),
        buildkit: str(n.Version ?? n.BuildkitVersion ?? n.Buildkit),
        platforms: [],
    };
    const err = str(n.Err ?? n.Error);
    if (err) {
        node.error = err;
        if (!node.status)
            node.status = 'error';
    }
    if (Array.isArray(n.Platforms))
        setPlatforms(node, n.Platforms.map(platformString));
    else if (typeof n.Platforms === 'string')
        setPlatforms(node, n.Platforms.split(','));
    return node;
}
/** "linux/arm/v7", or an OCI platform object {os, architecture, variant} from an older encoding. */
function platformString(p) {
    if (typeof p === 'string')
        return p;
    if (!isObject(p))
        return '';
    const os = str(p.os ?? p.OS);
    const arch = str(p.architecture ?? p.Architecture);
    const variant = str(p.variant ?? p.Variant);
    if (!os || !arch)
        return '';
    return variant ? `${os}/${arch}/${variant}` : `${os}/${arch}`;
}

;// CONCATENATED MODULE: ./src/buildx/builder.ts
// The `docker buildx` builder step, in two parts so that it overlaps the emulator steps:
// startBuilder creates (or reuses), appends and boots the builder (image pull, container,
// BuildKit start) as soon as the inputs are valid; finishBuilder, once emulators are
// registered and verified, reads the builder's platforms (BuildKit re-detects emulators
// when its workers are listed, so ones registered after it booted are there) and makes the
// result and the post step's state; abandonBuilder removes what the start made when the
// emulator step fails. setupBuilder is both, one after the other.
// Every docker command goes through the Docker wrapper over a ProcessRunner, so it
// is unit-tested over recorded command lines.








const builder_SECOND = 1000;
/** buildx has no builder of that name (inspect, rm). */
const NOT_STORED = /no builder .* found/i;
/** create refused: a builder of that name is there already (it stored nothing). */
const EXISTING = /existing instance for/i;
const DAEMON_DOWN = /Cannot connect to the Docker daemon|Is the docker daemon running|docker\.sock: connect: (no such file|permission denied)/i;
const DEFAULT_IMAGE = 'moby/buildkit:buildx-stable-1';
const MIRROR_HINT = `use a mirror with driver-opts: image=<mirror>/${DEFAULT_IMAGE}, or run docker login before this step`;
// What a failed image pull looks like in buildx/dockerd output.
const PULL_FAILED = /pull|registry|manifest|toomanyrequests|rate limit|unauthorized|denied|no such host|dial tcp|TLS handshake|x509|i\/o timeout/i;
// Failures worth one more try: the network or the registry, not the request.
const TRANSIENT = /toomanyrequests|rate limit|timeout|timed out|temporar|connection (reset|refused)|\bEOF\b|no such host|i\/o|TLS handshake|\b50[0234]\b|service unavailable|bad gateway|internal server error|dial tcp/i;
const PERMANENT = /manifest unknown|not found|pull access denied|invalid reference|repository does not exist|unauthorized/i;
const RETRY_DELAY = 5 * builder_SECOND;
/** A builder that cannot be had; under `buildx: auto` it is a warning, under `true` the step fails. */
class BuilderFailure extends errors_ActionError {
}
/**
 * Lines logged by the start, which runs beside other steps: kept, in order, and written to
 * the real log when the finish (or abandon) begins, so that they appear together under the
 * builder's heading instead of inside the emulator steps' groups; from then on they go
 * straight through (a start still booting shows its progress, e.g. a retry, as it happens).
 */
class HeldLog {
    target;
    lines = [];
    constructor(target) {
        this.target = target;
    }
    info(s) {
        this.put('info', s);
    }
    notice(s) {
        this.put('notice', s);
    }
    warning(s) {
        this.put('warning', s);
    }
    debug(s) {
        this.put('debug', s);
    }
    /** A line that belongs before everything held so far (an answer that came in after later lines). */
    lead(level, s) {
        if (this.lines)
            this.lines.unshift([level, s]);
        else
            this.target[level](s);
    }
    /** Forgets what is held (not what was written already). */
    drop() {
        if (this.lines)
            this.lines = [];
    }
    /** Writes what was held; from then on lines go straight through. */
    release() {
        const lines = this.lines;
        this.lines = undefined;
        for (const [level, s] of lines ?? [])
            this.target[level](s);
    }
    put(level, s) {
        if (this.lines)
            this.lines.push([level, s]);
        else
            this.target[level](s);
    }
}
/**
 * Starts getting the builder: the preflight (`buildx version`), then create (or reuse) the
 * builder, append its nodes and boot it (image pull, container create, BuildKit start).
 * Call it as soon as the inputs are valid; the caller then registers and verifies emulators
 * and calls finishBuilder (or abandonBuilder when its own step failed). Returns at once.
 * A builder this start created that cannot be completed (a failure, or opts.cancel) is
 * removed through `removal`, a runner cancellation does not stop.
 */
function startBuilder(opts, runner, log, 
/** removes a half-made builder: one that cancellation does not stop, so that a cancelled step still removes it */
removal = runner) {
    const held = new HeldLog(log);
    const plugin = opts.buildxPlugin?.path;
    const engine = { cli: 'docker', ...(plugin ? { buildx: plugin } : {}) };
    const docker = new Docker(runner, held, engine);
    const removalDocker = new Docker(removal, held, engine);
    let preflightDone = () => undefined;
    const preflight = new Promise(resolve => (preflightDone = resolve));
    let answeredDone = () => undefined;
    const answered = new Promise(resolve => (answeredDone = resolve));
    const outcome = (async () => {
        if (opts.mode === 'false')
            return { kind: 'none' };
        const lookup = opts.buildxPlugin;
        if (lookup)
            held.debug(lookup.path ? `running the buildx plugin ${lookup.path} directly for the builder's commands` : `running docker buildx: ${lookup.why}`);
        // The builder's first command is started first (its way is the long one); `buildx version` runs beside it,
        // not before it: its answer decides the preflight, and what a failed first command means.
        const making = settled(getBuilder(opts, docker, held, removalDocker));
        const version = buildxVersion(new Docker(runner, held)).then(v => ({ ...v, error: v.ok ? undefined : missingBuildx(v.reason) }));
        void version.then(v => {
            preflightDone(opts.mode === 'true' ? v.error : undefined);
            if (v.ok)
                answeredDone();
        }, () => preflightDone(undefined));
        const made = await making;
        const answer = await settled(version);
        const buildx = answer.ok ? answer.value : undefined;
        if (!buildx?.ok) {
            // No plugin (or stopped): what the first command made goes (it failed too, unless the answer was only slow).
            if (made.ok && made.value.kind === 'ready' && made.value.how === 'created')
                await removeAfterFailure(opts, removalDocker, held);
            if (!buildx)
                throw answer.error;
            // What the first command said (a create that could not run) is beside the point: the plugin is missing.
            held.drop();
            if (opts.mode === 'auto') {
                held.notice(`docker buildx is not available (${buildx.reason}); skipping the builder. Set buildx: false to silence this`);
                return { kind: 'none' };
            }
            return { kind: 'failed', error: buildx.error };
        }
        held.lead('info', `Using ${buildx.version}`);
        if (!made.ok)
            throw made.error;
        return made.value;
    })().catch((error) => ({ kind: 'failed', error }));
    // Whatever happened, the preflight is over once the start is.
    void outcome.then(() => {
        preflightDone(undefined);
        answeredDone();
    });
    return {
        opts,
        preflight,
        answered,
        settled: outcome.then(() => undefined),
        outcome,
        held,
        started: performance.now(),
        io: { docker: new Docker(runner, log, engine), removal: new Docker(removal, log, engine), log },
    };
}
/**
 * Completes a started builder once the emulators are registered and verified: waits for the
 * start, shows its log lines, reads the builder's platforms now (BuildKit re-detects emulators
 * when asked for its workers, so ones registered after it booted are listed) and holds them
 * against `platforms` (what runs here: native and verified emulated) and `emulated` (the
 * verified emulated subset). Returns the result and the state the post step needs; {} when
 * there is no builder (buildx: false, or a failure under buildx: auto, said as a warning).
 * Throws (an ActionError for a builder that cannot be had under buildx: true, or the start's
 * CancelledError); a builder this step created is removed before it throws.
 */
async function finishBuilder(start, platforms, emulated) {
    // What the start said so far (once buildx answered, its version line leading), then what it says while the finish waits, as it says it.
    await start.answered;
    start.held.release();
    const waitFrom = performance.now();
    const outcome = await start.outcome;
    const timings = { builderStart: performance.now() - start.started, builderWait: performance.now() - waitFrom };
    const { docker, removal, log } = start.io;
    const opts = { ...start.opts, platforms, emulated };
    try {
        if (outcome.kind === 'failed')
            throw outcome.error;
        if (outcome.kind === 'none')
            return { timings };
        if (outcome.how === 'current')
            return { ...(await readCurrent(opts, docker, log)), timings };
        const created = outcome.how === 'created';
        if (outcome.how === 'reused' && opts.use)
            await useReused(outcome.name, docker);
        try {
            const parsed = await readBuilder(outcome.name, outcome.boot, docker, log);
            const state = { name: outcome.name, created, driver: parsed.driver || outcome.driver };
            return { result: finish(opts, parsed, outcome.name, created, log), state, timings };
        }
        catch (e) {
            if (created)
                await removeAfterFailure(opts, removal, log);
            throw e;
        }
    }
    catch (e) {
        // `auto` means "a builder if possible": the emulators are there and work without one.
        if (opts.mode === 'auto' && e instanceof BuilderFailure) {
            log.warning(`${e.message}; going on without a builder (buildx: auto), set buildx: true to make this fail the step`);
            return { timings };
        }
        throw e;
    }
}
/**
 * For a caller whose own step failed (or was cancelled) after startBuilder: waits for the start
 * to end (a cancelled one ends quickly: its docker commands are stopped), shows its log lines,
 * and removes the builder it created, through the removal runner. A reused builder, or the
 * docker driver's, is left as it is. Never throws.
 */
async function abandonBuilder(start) {
    await start.answered;
    start.held.release();
    const outcome = await start.outcome;
    const { removal, log } = start.io;
    if (outcome.kind === 'failed' && !(outcome.error instanceof CancelledError)) {
        log.debug(`the builder had not started anyway: ${errors_errorMessage(outcome.error)}`);
    }
    if (outcome.kind !== 'ready' || outcome.how !== 'created')
        return;
    log.info(`Removing builder ${outcome.name}, which this step started: the step did not get as far as using it`);
    await removeAfterFailure(start.opts, removal, log);
}
/** The docker driver's builder, a reused one, or a new one: started (the docker driver's is only looked at in the finish). */
async function getBuilder(opts, docker, log, removal) {
    if (opts.driver === 'docker')
        return startCurrent(opts, log);
    // A name generated for this step (8 random hex digits) is new: no docker process spent asking (it is
    // on the way to the first build). buildx refuses to create over an existing builder in any case.
    if (!opts.nameGiven)
        return await startCreated(opts, docker, log, removal);
    const existing = await docker.run(inspectArgs(opts.name), { timeoutMs: BUILDX_MS.quick });
    if (existing.code === 0)
        return await startReused(opts, parseInspect(existing.stdout), docker, log);
    // Only a name known to be free is created (and handed to the post step as ours).
    if (!NOT_STORED.test(existing.stderr)) {
        throw new BuilderFailure(`builder-name: cannot tell whether builder ${opts.name} exists (${failureReason(existing, BUILDX_MS.quick)}); check docker buildx inspect ${opts.name}`);
    }
    log.debug(`no builder named ${opts.name} yet`);
    return await startCreated(opts, docker, log, removal);
}
/** A promise's outcome as a value, so that a failure can wait for another answer before it counts. */
async function settled(p) {
    try {
        return { ok: true, value: await p };
    }
    catch (error) {
        return { ok: false, error };
    }
}
function missingBuildx(reason) {
    return new errors_ActionError(`buildx: docker buildx is not available (${reason}); install the Docker buildx plugin on the runner, ` +
        'or set buildx: auto to skip the builder where it is missing (or buildx: false)');
}
/** Removes the builder the main step created; never throws (a post step must not fail the job). */
async function cleanupBuilder(state, runner, log) {
    if (!state || !state.name)
        return;
    if (!state.created || state.driver === 'docker') {
        log.info(`Leaving builder ${state.name} in place: this action did not create it`);
        return;
    }
    try {
        const r = await new Docker(runner, log).run(rmArgs(state.name), { timeoutMs: BUILDX_MS.create });
        if (r.code === 0) {
            log.info(`Removed builder ${state.name}`);
        }
        else if (NOT_STORED.test(r.stderr)) {
            log.info(`Builder ${state.name} is already gone`);
        }
        else {
            log.warning(`Could not remove builder ${state.name}: ${failureReason(r, BUILDX_MS.create)}; remove it with docker buildx rm ${state.name}`);
        }
    }
    catch (e) {
        log.warning(`Could not remove builder ${state.name}: ${errors_errorMessage(e)}`);
    }
}
async function buildxVersion(docker) {
    let r;
    try {
        r = await docker.run(versionArgs(), { timeoutMs: BUILDX_MS.quick });
    }
    catch (e) {
        // Stopped, not missing: the start ends as cancelled, without a notice about the plugin.
        if (e instanceof CancelledError)
            throw e;
        const code = e.code;
        return { ok: false, reason: code === 'ENOENT' ? 'docker was not found on PATH' : errors_errorMessage(e) };
    }
    if (r.code !== 0)
        return { ok: false, reason: failureReason(r, BUILDX_MS.quick) };
    const version = r.stdout.trim().split('\n')[0];
    return { ok: true, version: version ? `buildx ${version.replace(/^github\.com\/docker\/buildx\s+/, '')}` : 'docker buildx' };
}
/** driver: docker: the context's own builder (inside dockerd) cannot be created or removed; the finish reports it. */
function startCurrent(opts, log) {
    const ignored = ignoredSettings(opts);
    if (ignored.length) {
        log.notice(`driver: docker uses the Docker daemon's own builder, so ${ignored.join(', ')} ${ignored.length > 1 ? 'are' : 'is'} not applied`);
    }
    return { kind: 'ready', how: 'current', name: 'default', driver: 'docker', boot: '' };
}
async function readCurrent(opts, docker, log) {
    const r = await docker.run(inspectArgs(), { timeoutMs: BUILDX_MS.quick });
    if (r.code !== 0) {
        throw new BuilderFailure(`driver: cannot inspect the current docker builder (${failureReason(r, BUILDX_MS.quick)}); check that the Docker daemon is running, or use driver: docker-container`);
    }
    const parsed = parseInspect(r.stdout);
    const name = parsed.name || 'default';
    if (parsed.driver && parsed.driver !== 'docker') {
        log.info(`The current builder ${name} uses the ${parsed.driver} driver (set earlier with docker buildx use); reporting it as it is`);
    }
    const state = { name, created: false, driver: 'docker' };
    return { result: finish(opts, parsed, name, false, log), state };
}
async function startReused(opts, existing, docker, log) {
    const driver = existing.driver || opts.driver;
    log.info(`Builder ${opts.name} already exists (driver ${driver}); reusing it as it is`);
    // Never clobber a builder someone else set up: its own settings win.
    const ignored = ignoredSettings(opts);
    if (existing.driver && existing.driver !== opts.driver)
        ignored.unshift(`driver (${opts.driver})`);
    if (ignored.length) {
        log.notice(`builder-name: builder ${opts.name} already exists, so ${ignored.join(', ')} ${ignored.length > 1 ? 'are' : 'is'} not applied to it; ` +
            'choose another builder-name to get a builder with these settings');
    }
    const boot = await bootstrap(opts, opts.name, docker, log);
    return { kind: 'ready', how: 'reused', name: opts.name, driver, boot };
}
/** Makes a reused builder the current one: in the finish, so that a step whose emulators failed leaves the current builder as it was. */
async function useReused(name, docker) {
    const r = await docker.run(useArgs(name), { timeoutMs: BUILDX_MS.quick });
    if (r.code !== 0)
        throw new BuilderFailure(`use: cannot make ${name} the current builder (${failureReason(r, BUILDX_MS.quick)}); set use: false or check the builder`);
}
async function startCreated(opts, docker, log, removal) {
    let configFile;
    if (opts.configInline.trim()) {
        configFile = external_path_.join(opts.tempDir, `buildkitd-${opts.name.replace(/[^A-Za-z0-9._-]/g, '_')}.toml`);
        await external_fs_.promises.mkdir(opts.tempDir, { recursive: true });
        await external_fs_.promises.writeFile(configFile, opts.configInline);
    }
    log.info(`Creating builder ${opts.name} (driver ${opts.driver}${opts.endpoint ? `, endpoint ${opts.endpoint}` : ''})`);
    // With no node to append first, create boots the builder itself: one buildx run fewer on the builder's way.
    const boots = !opts.append.length;
    // Handed over before create runs, since one run both stores and boots it: a step that dies meanwhile
    // still has it removed by the post step. The name is ours (new, or no builder had it just now).
    opts.onCreated?.({ name: opts.name, created: true, driver: opts.driver });
    let created;
    try {
        created = await docker.run(createArgs(opts, configFile, boots), { timeoutMs: boots ? BUILDX_MS.bootstrap : BUILDX_MS.create, loud: true });
    }
    catch (e) {
        // Cancelled halfway: buildx may have stored the builder already; the name is ours (no builder had it).
        // Not started at all (no docker): nothing was made.
        if (e.code !== 'ENOENT')
            await removeAfterFailure(opts, removal, log);
        throw e;
    }
    finally {
        // buildx copies the config into its own store at create, so the file is done with.
        if (configFile)
            await external_fs_.promises.rm(configFile, { force: true });
    }
    if (created.code === null) {
        // Killed (its time ran out): buildx had no chance to roll back.
        await removeAfterFailure(opts, removal, log);
        if (boots)
            throw new BuilderFailure(bootstrapError(opts, opts.name, created));
    }
    else if (created.code !== 0 && boots) {
        // buildx keeps a builder whose boot failed: then the boot's failure is told (and retried) as such.
        const made = EXISTING.test(created.stderr) ? false : await stored(opts.name, removal);
        if (made)
            return await completeCreated(opts, removal, log, () => bootstrap(opts, opts.name, docker, log, created));
        // No answer: whatever may be stored goes; the create's failure is told.
        if (made === undefined)
            await removeAfterFailure(opts, removal, log);
    }
    if (created.code !== 0) {
        // buildx rolls a failed create back itself: there is nothing to remove.
        const reason = failureReason(created, boots ? BUILDX_MS.bootstrap : BUILDX_MS.create);
        // The plugin works without a daemon; `auto` also means "skip where Docker cannot run containers".
        if (opts.mode === 'auto' && !opts.endpoint && DAEMON_DOWN.test(reason)) {
            log.notice(`the Docker daemon is not reachable (${reason}); skipping the builder. Set buildx: false to silence this`);
            return { kind: 'none' };
        }
        const input = createInputAtFault(reason, opts);
        throw new BuilderFailure(`${input}: cannot create builder ${opts.name} (${reason}); ${createFix(input)}`);
    }
    if (boots)
        return { kind: 'ready', how: 'created', name: opts.name, driver: opts.driver, boot: '' };
    return await completeCreated(opts, removal, log, async () => {
        for (const node of opts.append)
            await appendNode(opts.name, node, docker, log);
        return await bootstrap(opts, opts.name, docker, log);
    });
}
/** The rest of a builder this step created (its nodes appended, its boot); any failure removes it again. */
async function completeCreated(opts, removal, log, rest) {
    try {
        const boot = await rest();
        return { kind: 'ready', how: 'created', name: opts.name, driver: opts.driver, boot };
    }
    catch (e) {
        await removeAfterFailure(opts, removal, log);
        throw e;
    }
}
/**
 * Whether buildx has a builder of this name stored (asked after a create that failed: did it get that
 * far?); undefined when it gives no clear answer. Asked through the removal runner: a cancellation
 * does not stop it, and what is stored is removed after it.
 */
async function stored(name, docker) {
    try {
        const r = await docker.run(inspectArgs(name), { timeoutMs: BUILDX_MS.quick });
        if (r.code === 0)
            return true;
        return NOT_STORED.test(r.stderr) ? false : undefined;
    }
    catch {
        return undefined;
    }
}
async function appendNode(name, node, docker, log) {
    const label = node.name ? `${node.name} (${node.endpoint})` : node.endpoint;
    log.info(`Adding node ${label} to builder ${name}`);
    const r = await docker.run(appendArgs(name, node), { timeoutMs: BUILDX_MS.create, loud: true });
    if (r.code !== 0) {
        throw new BuilderFailure(`append: cannot add node ${label} to builder ${name} (${failureReason(r, BUILDX_MS.create)}); check its endpoint, platforms and driver-opts`);
    }
}
/**
 * Starts the builder's nodes; returns inspect's output (it prints the builder once booted)
 * for use if nothing better is available. A transient failure (registry or network) is
 * tried once more; the error says what failed: the image pull, a timeout, or the start.
 * `first`: a boot that already ran and failed (create --bootstrap), to be judged and retried.
 */
async function bootstrap(opts, name, docker, log, first) {
    if (!first)
        log.info(`Booting builder ${name}`);
    let r = first ?? (await docker.run(bootstrapArgs(name), { timeoutMs: BUILDX_MS.bootstrap, loud: true }));
    if (r.code !== 0 && r.code !== null) {
        const reason = failureReason(r, BUILDX_MS.bootstrap);
        if (TRANSIENT.test(reason) && !PERMANENT.test(reason)) {
            const delay = opts.retryDelayMs ?? RETRY_DELAY;
            log.info(`Builder ${name} did not start (${reason}); trying once more in ${Math.round(delay / builder_SECOND)} s`);
            // Cut short by cancellation: the step has seconds left, and the builder is still to be removed.
            await pause(delay, opts.cancel);
            r = await docker.run(bootstrapArgs(name), { timeoutMs: BUILDX_MS.bootstrap, loud: true });
        }
    }
    if (r.code !== 0)
        throw new BuilderFailure((await nodeDownError(opts, name, r, docker, log)) ?? bootstrapError(opts, name, r));
    return r.stdout;
}
/**
 * A builder with nodes at other addresses (driver remote, or append) that does not start: buildx
 * says only why ("context deadline exceeded"), not which node. inspect tells: the first node not
 * running is blamed, on endpoint (the first node) or append (an appended one).
 */
async function nodeDownError(opts, name, r, docker, log) {
    if (r.code === null || (opts.driver !== 'remote' && !opts.append.length))
        return undefined;
    const reason = failureReason(r, BUILDX_MS.bootstrap);
    const inspect = await tryRun(docker, inspectArgs(name), log);
    if (!inspect || inspect.code !== 0)
        return undefined;
    const nodes = parseInspect(inspect.stdout).nodes;
    const down = nodes.findIndex(n => n.status !== 'running');
    if (down < 0)
        return undefined;
    const node = nodes[down];
    if (down === 0) {
        if (opts.driver !== 'remote')
            return undefined;
        return `endpoint: builder ${name} could not start: no BuildKit answered at ${node.endpoint || opts.endpoint} (${reason}); start buildkitd there or fix endpoint`;
    }
    return (`append: node ${node.name} (${node.endpoint}) of builder ${name} did not start (${reason}); ` +
        'start its BuildKit or fix its endpoint, or leave it out of append');
}
function bootstrapError(opts, name, r) {
    const reason = failureReason(r, BUILDX_MS.bootstrap);
    if (r.code === null) {
        return `builder ${name} did not start within ${BUILDX_MS.bootstrap / 60 / builder_SECOND} minutes (${reason}); check the Docker daemon and the network to the registry`;
    }
    if (PULL_FAILED.test(reason)) {
        const image = opts.driverOpts.map(o => /^image=(.+)$/.exec(o)?.[1]).find(Boolean);
        if (image) {
            return `driver-opts: builder ${name} could not start: its BuildKit image ${image} (driver-opts image=) could not be pulled (${reason}); check that image and its registry, or run docker login before this step`;
        }
        return `builder ${name} could not start: the BuildKit image could not be pulled (${reason}); ${MIRROR_HINT}`;
    }
    const shaping = ['buildkitd-flags', 'buildkitd-config-inline', 'driver-opts'].filter(k => (k === 'buildkitd-flags' && opts.buildkitdFlags) ||
        (k === 'buildkitd-config-inline' && opts.configInline.trim()) ||
        (k === 'driver-opts' && opts.driverOpts.length));
    const check = shaping.length ? `check ${shaping.join(', ')}` : 'check the Docker daemon (docker info) and the driver';
    return `builder ${name} could not start (${reason}); ${check}`;
}
/**
 * The builder as buildx reports it after booting: `ls --format json` where this buildx
 * has it, else `inspect NAME`, else what the bootstrap printed. JSON carries no '*'
 * for user-set platforms, so those are taken from the text when it names the same node.
 */
async function readBuilder(name, bootOutput, docker, log) {
    const fromBoot = parseInspect(bootOutput);
    const ls = await tryRun(docker, lsJsonArgs(), log);
    const json = ls && ls.code === 0 ? parseLsJson(ls.stdout, name) : undefined;
    if (json && json.nodes.length) {
        for (const node of json.nodes) {
            const text = fromBoot.nodes.find(n => n.name === node.name);
            if (text?.preferred && !node.preferred)
                node.preferred = text.preferred.filter(p => node.platforms.includes(p));
        }
        return json;
    }
    log.debug(`docker buildx ls --format json gave nothing usable${ls ? ` (${failureReason(ls, BUILDX_MS.quick)})` : ''}; reading docker buildx inspect ${name}`);
    const inspect = await tryRun(docker, inspectArgs(name), log);
    if (inspect && inspect.code === 0) {
        const parsed = parseInspect(inspect.stdout);
        if (parsed.nodes.length)
            return parsed;
    }
    return fromBoot;
}
function finish(opts, parsed, name, created, log) {
    const nodes = parsed.nodes.map((n, i) => placeNode(opts, n, i, parsed.nodes));
    const result = {
        name,
        driver: parsed.driver || opts.driver,
        created,
        nodes,
        platforms: unionPlatforms(nodes),
    };
    for (const n of result.nodes) {
        if (n.error || (n.status && n.status !== 'running')) {
            log.notice(`Builder ${result.name}: node ${n.name} is ${n.status || 'not running'}${n.error ? ` (${n.error})` : ''}; builds for its platforms may fail`);
        }
        if (n.notRunning?.length) {
            log.info(`Builder ${result.name}: node ${n.name} lists ${n.notRunning.join(', ')}, which ${n.notRunning.length > 1 ? 'do' : 'does'} not run on this runner ` +
                '(no verified emulator); left out of platforms');
        }
    }
    warnMissingPlatforms(opts, parsed.nodes, result, log);
    log.info(`Builder ${result.name} (${result.driver}) platforms: ${result.platforms.join(', ') || 'none reported'}`);
    return result;
}
/**
 * A node on this runner (the builder's first node, unless it is a `remote` driver's BuildKit
 * at a network address; or another at the same or a local socket endpoint) has its platforms
 * held against what runs here: a BuildKit keeps listing platforms of emulators registered
 * when it started (dockerd's embedded one does), even when they are gone or never worked. A
 * node elsewhere (an appended one, or a remote primary at tcp://...) is reported as it
 * declares itself: this runner cannot check it.
 */
function placeNode(opts, node, index, all) {
    const firstLocal = opts.driver !== 'remote' || all[0].endpoint.startsWith('unix://');
    const local = (firstLocal && (index === 0 || node.endpoint === all[0].endpoint)) || node.endpoint.startsWith('unix://');
    if (!local)
        return { ...node, remote: true };
    if (!opts.platforms.length)
        return { ...node, remote: false };
    const here = new Set(opts.platforms.map(normalizePlatform));
    const runs = (p) => here.has(normalizePlatform(p));
    const out = { ...node, remote: false, platforms: node.platforms.filter(runs) };
    if (node.preferred) {
        const preferred = node.preferred.filter(runs);
        if (preferred.length)
            out.preferred = preferred;
        else
            delete out.preferred;
    }
    const dropped = node.platforms.filter(p => !runs(p));
    if (dropped.length)
        out.notRunning = dropped;
    return out;
}
/**
 * BuildKit detects emulated platforms when it starts and, from v0.13 at least (checked on the
 * real one), again whenever its workers are listed, so the finish sees emulators registered
 * after the boot. An older BuildKit, or one whose container cannot run the emulator (an entry
 * without the F flag names a path the container does not have), may still not list them. Only
 * emulated platforms are compared: native ones (linux/amd64/v2.. are CPU levels) need no emulator.
 */
function warnMissingPlatforms(opts, listed, result, log) {
    if (!opts.emulated.length || !listed.some(n => n.platforms.length))
        return;
    const have = new Set(listed.flatMap(n => n.platforms).map(normalizePlatform));
    const missing = opts.emulated.filter(p => !have.has(normalizePlatform(p)));
    if (!missing.length)
        return;
    const why = result.created
        ? 'builds for them may fail'
        : `it was probably started before they were registered: restart it (docker buildx stop ${result.name}) or choose a new builder-name`;
    log.notice(`Builder ${result.name} does not list ${missing.join(', ')}, which the registered emulators provide; ${why}`);
}
function normalizePlatform(p) {
    const q = p.trim().toLowerCase().replace(/\*+$/, '');
    if (q === 'linux/arm64/v8')
        return 'linux/arm64';
    if (q === 'linux/arm')
        return 'linux/arm/v7';
    return q;
}
/** Inputs that only shape a new builder; reported when they cannot apply. */
function ignoredSettings(opts) {
    const out = [];
    if (opts.endpoint)
        out.push('endpoint');
    if (opts.driverOpts.length)
        out.push('driver-opts');
    if (opts.buildkitdFlags)
        out.push('buildkitd-flags');
    if (opts.configInline.trim())
        out.push('buildkitd-config-inline');
    if (opts.append.length)
        out.push('append');
    return out;
}
function createInputAtFault(reason, opts) {
    if (opts.endpoint &&
        /context|endpoint|docker host|cannot connect|dial|connection refused|no such host|not found|does not exist|unix:|tcp:|ssh:/i.test(reason))
        return 'endpoint';
    if (/driver.?opt|expecting k=v/i.test(reason) && opts.driverOpts.length)
        return 'driver-opts';
    if (/buildkitd.?flags|flag/i.test(reason) && opts.buildkitdFlags)
        return 'buildkitd-flags';
    if (/config|toml/i.test(reason) && opts.configInline.trim())
        return 'buildkitd-config-inline';
    if (/reserved|name/i.test(reason) && opts.nameGiven)
        return 'builder-name';
    return 'driver';
}
function createFix(input) {
    switch (input) {
        case 'driver-opts':
            return 'each driver-opts entry must be key=value as docker buildx create --driver-opt takes it';
        case 'buildkitd-flags':
            return 'check buildkitd-flags against buildkitd --help';
        case 'buildkitd-config-inline':
            return 'buildkitd-config-inline must be a valid buildkitd.toml';
        case 'endpoint':
            return 'give an existing Docker context (docker context ls) or Docker host for docker-container, or the address of a running buildkitd (tcp://host:port, unix:///path) for driver remote';
        case 'builder-name':
            return 'choose another builder-name (letters, digits, . _ -; not "default")';
        default:
            return 'check the driver, driver-opts, buildkitd-flags and buildkitd-config-inline inputs';
    }
}
/**
 * Removes a builder this step was making. A step cancelled while docker was creating the
 * node's container can leave one buildx does not know of yet (dockerd finishes a request its
 * client dropped): on this runner's daemon it is removed by name, with its state volume.
 */
async function removeAfterFailure(opts, docker, log) {
    const name = opts.name;
    try {
        const r = await docker.run(rmArgs(name), { timeoutMs: BUILDX_MS.create });
        if (r.code === 0)
            log.info(`Removed the half-made builder ${name}`);
        else if (NOT_STORED.test(r.stderr))
            log.debug(`builder ${name} was not stored yet`);
        else
            log.notice(`Could not remove builder ${name} after the failure (${failureReason(r, BUILDX_MS.create)}); remove it with docker buildx rm ${name}`);
        if (opts.driver === 'docker-container' && !opts.endpoint) {
            const node = firstNodeName(name);
            await docker.run(containerRmArgs(node), { timeoutMs: BUILDX_MS.quick });
            await docker.run(volumeRmArgs(node), { timeoutMs: BUILDX_MS.quick });
        }
    }
    catch (e) {
        log.notice(`Could not remove builder ${name} after the failure (${errors_errorMessage(e)})`);
    }
}
/** For optional reads: a failure to even start is reported as "no answer". */
async function tryRun(docker, args, log) {
    try {
        return await docker.run(args, { timeoutMs: BUILDX_MS.quick });
    }
    catch (e) {
        log.debug(`${commandLine(args)} could not run: ${errors_errorMessage(e)}`);
        return undefined;
    }
}

;// CONCATENATED MODULE: ./src/cancellation.ts


/**
 * The runner cancels a step with SIGINT, then SIGTERM (a terminal's ^C is SIGINT). Either aborts the
 * run: children are killed, unverified entries removed, the lock released. Should that take too long,
 * `overrun` says so and removes what it can, and the process exits anyway. Returns the way to stop watching.
 */
function watchCancellation(cancel, log, overrun) {
    const signals = ['SIGINT', 'SIGTERM'];
    let deadline;
    const handler = (signal) => {
        if (cancel.signal.aborted)
            return;
        log.info(`Received ${signal}: stopping`);
        cancel.abort(signal);
        deadline = setTimeout(() => {
            overrun(signal);
            process.exit(1);
        }, CANCEL_GRACE_MS);
        deadline.unref();
    };
    for (const s of signals)
        process.on(s, handler);
    return () => {
        clearTimeout(deadline);
        for (const s of signals)
            process.off(s, handler);
    };
}
/** The run's failure as one line: a cancellation says so, whatever it interrupted. */
function failureOf(e, cancel) {
    return cancel.aborted ? `the step was cancelled (${String(cancel.reason)})` : errors_errorMessage(e);
}

;// CONCATENATED MODULE: ./src/plan.ts

/**
 * What this run sets out to do: which requested targets the runner runs
 * natively (reported, not registered) and which need an emulator. With
 * `platforms: all` the targets are known only once the source says what it has.
 */
class Plan {
    host;
    selection;
    native;
    constructor(host, selection, 
    /** host-family targets that ran natively when tried */
    native) {
        this.host = host;
        this.selection = selection;
        this.native = native;
    }
    isNative(t) {
        return t === this.host.target || this.native.includes(t);
    }
    /** Requested targets the runner runs itself. */
    requestedNative() {
        return this.selection.kind === 'list' ? this.selection.targets.filter(t => this.isNative(t)) : [];
    }
    /** Targets to register, given the emulator names the source has. */
    foreignTargets(available) {
        if (this.selection.kind === 'all')
            return allTargets().filter(t => !this.isNative(t) && available.includes(emulatorName(t)));
        return this.selection.targets.filter(t => !this.isNative(t));
    }
    /** What to ask the source for: every foreign emulator for `all`, else exactly the list's. */
    emulatorWant() {
        if (this.selection.kind === 'all')
            return { names: emulatorNames(allTargets().filter(t => !this.isNative(t))), required: false };
        return { names: emulatorNames(this.foreignTargets([])), required: true };
    }
    /** The selection as cache keys name it: 'all', or the sorted emulator names. */
    selectionKey() {
        if (this.selection.kind === 'all')
            return 'all';
        return emulatorNames(this.foreignTargets([])).sort().join(',');
    }
}
/** The emulators to use, given what the source offers (undefined: not known without reading it). */
function pickEmulators(want, offered) {
    if (want.required)
        return [...want.names];
    return offered ? want.names.filter(n => offered.includes(n)) : undefined;
}
function emulatorNames(targets) {
    return [...new Set(targets.map(emulatorName))];
}

// EXTERNAL MODULE: external "stream"
var external_stream_ = __webpack_require__(2203);
// EXTERNAL MODULE: external "zlib"
var external_zlib_ = __webpack_require__(3106);
;// CONCATENATED MODULE: ./src/elf.ts

const elf_ET_EXEC = 2;
const ET_DYN = 3;
const elf_EM_X86_64 = 62;
const EM_AARCH64 = 183;
const PT_INTERP = 3;
const HOST_MACHINE = { amd64: elf_EM_X86_64, arm64: EM_AARCH64 };
const MACHINE_NAMES = {
    2: 'sparc',
    3: 'i386',
    4: 'm68k',
    8: 'mips',
    15: 'hppa',
    18: 'sparc32plus',
    20: 'ppc',
    21: 'ppc64',
    22: 's390x',
    40: 'arm',
    42: 'sh4',
    43: 'sparc64',
    62: 'x86_64',
    92: 'or1k',
    94: 'xtensa',
    164: 'hexagon',
    183: 'aarch64',
    243: 'riscv',
    258: 'loongarch64',
    0x9026: 'alpha',
    0xbaab: 'microblaze',
};
const TYPE_NAMES = { 0: 'ELF file of no type', 1: 'ELF relocatable object', 4: 'ELF core dump' };
/** Human name of an ELF e_machine value, e.g. 183 -> "aarch64". */
function machineName(machine, bits) {
    const name = MACHINE_NAMES[machine];
    if (!name)
        return `ELF machine ${machine}`;
    if (machine === 243 && bits)
        return `riscv${bits}`;
    if (machine === elf_EM_X86_64 && bits === 32)
        return 'x32';
    return name;
}
/**
 * Parses the ELF header and program headers. Returns undefined when `buf` is
 * not ELF, or is too short to hold the headers it declares (including the
 * PT_INTERP string).
 */
function readElfInfo(buf) {
    if (buf.length < 16 || buf[0] !== 0x7f || buf[1] !== 0x45 || buf[2] !== 0x4c || buf[3] !== 0x46)
        return undefined;
    const cls = buf[4];
    const data = buf[5];
    if ((cls !== 1 && cls !== 2) || (data !== 1 && data !== 2))
        return undefined;
    const bits = cls === 1 ? 32 : 64;
    const le = data === 1;
    const headerSize = bits === 64 ? 64 : 52;
    if (buf.length < headerSize)
        return undefined;
    const u16 = (o) => (le ? buf.readUInt16LE(o) : buf.readUInt16BE(o));
    const u32 = (o) => (le ? buf.readUInt32LE(o) : buf.readUInt32BE(o));
    const addr = (o) => {
        if (bits === 32)
            return u32(o);
        const v = le ? buf.readBigUInt64LE(o) : buf.readBigUInt64BE(o);
        return v > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(v);
    };
    const type = u16(16);
    const machine = u16(18);
    const phoff = addr(bits === 64 ? 32 : 28);
    const phentsize = u16(bits === 64 ? 54 : 42);
    const phnum = u16(bits === 64 ? 56 : 44);
    const info = { bits, littleEndian: le, type, machine };
    if (phnum === 0)
        return info;
    const minEntry = bits === 64 ? 56 : 32;
    if (phentsize < minEntry)
        return undefined;
    if (phoff + phnum * phentsize > buf.length)
        return undefined;
    for (let i = 0; i < phnum; i++) {
        const ph = phoff + i * phentsize;
        if (u32(ph) !== PT_INTERP)
            continue;
        const offset = addr(bits === 64 ? ph + 8 : ph + 4);
        const size = addr(bits === 64 ? ph + 32 : ph + 16);
        if (offset + size > buf.length)
            return undefined;
        const raw = buf.subarray(offset, offset + size);
        const nul = raw.indexOf(0);
        info.interpreter = (nul >= 0 ? raw.subarray(0, nul) : raw).toString('latin1');
        break;
    }
    return info;
}
/**
 * What a file's first bytes look like, for error messages: a kind (empty, text,
 * HTML, ELF for X, ...), never the bytes themselves (the file may be /etc/shadow).
 */
function describeStart(buf) {
    if (buf.length === 0)
        return 'it is empty';
    const elf = readElfInfo(buf);
    if (elf)
        return `it is an ELF file for ${machineName(elf.machine, elf.bits)}`;
    if (buf.subarray(0, 4).toString('latin1') === '\x7fELF')
        return 'it is a truncated ELF file';
    const head = buf.subarray(0, 512).toString('latin1').trimStart().toLowerCase();
    if (head.startsWith('<!doctype html') || head.startsWith('<html') || /<(head|body|title)[\s>]/.test(head))
        return 'it is an HTML page';
    if (head.startsWith('<?xml') || head.startsWith('<error'))
        return 'it is an XML document';
    if (head.startsWith('{') || head.startsWith('['))
        return 'it looks like JSON';
    const sample = buf.subarray(0, 4096);
    const printable = sample.filter(b => b === 9 || b === 10 || b === 13 || (b >= 0x20 && b < 0x7f)).length;
    if (printable === sample.length)
        return 'it is text';
    if (printable / sample.length > 0.95 && !sample.includes(0))
        return 'it is text';
    return 'it is binary data of no known kind';
}
/** How much of an emulator's start checkHostElf needs (ELF and program headers of any sane binary). */
const ELF_HEAD_BYTES = 64 * 1024;
/**
 * Throws ActionError naming `label` unless `info` (parsed from `head`, the
 * file's first bytes) is a static ELF executable for `host`.
 */
function checkHostElf(info, head, host, label, base = 'qemu-<target>') {
    if (!info) {
        if (head.subarray(0, 4).toString('latin1') === '\x7fELF') {
            throw new errors_ActionError(`${label} is a truncated or malformed ELF file; the download may be incomplete; re-run or check qemu-url`);
        }
        throw new errors_ActionError(`${label} is not an ELF executable (${describeStart(head)}); check qemu-url`);
    }
    if (info.type !== elf_ET_EXEC && info.type !== ET_DYN) {
        const kind = TYPE_NAMES[info.type] ?? `ELF file of type ${info.type}`;
        throw new errors_ActionError(`${label} is an ${kind}, not an executable; check qemu-url`);
    }
    const wanted = HOST_MACHINE[host];
    if (info.machine !== wanted || info.bits !== 64 || !info.littleEndian) {
        const built = `${machineName(info.machine, info.bits)}${info.littleEndian ? '' : ' (big-endian)'}`;
        throw new errors_ActionError(`${label} is built for ${built}, not this ${host} runner; use an archive for linux-${host}`);
    }
    if (info.interpreter !== undefined) {
        const example = /^qemu-[A-Za-z0-9_]+$/.test(base) ? `${base}-static` : 'qemu-<target>-static';
        throw new errors_ActionError(`${label} is dynamically linked (interpreter ${info.interpreter}); binfmt's F flag needs a static emulator such as ${example}`);
    }
}

;// CONCATENATED MODULE: ./src/fetch/limits.ts


const MiB = 1024 * 1024;
const DEFAULT_LIMITS = { download: 1024 * MiB, emulator: 256 * MiB, archive: 4096 * MiB };
/** ENOSPC and friends as a user reads them: which directory is full. */
function diskError(e, file) {
    const code = e.code;
    const dir = external_path_.dirname(file);
    if (code === 'ENOSPC' || code === 'EDQUOT') {
        return new errors_ActionError(`the disk holding ${dir} is full (${code}); free some space or point RUNNER_TEMP / RUNNER_TOOL_CACHE elsewhere`);
    }
    if (code === 'EROFS' || code === 'EACCES' || code === 'EPERM') {
        return new errors_ActionError(`cannot write in ${dir} (${code}: ${code === 'EROFS' ? 'read-only file system' : 'permission denied'}); make it writable for this user or point RUNNER_TOOL_CACHE / RUNNER_TEMP at a writable directory`);
    }
    return e instanceof Error ? e : new Error(errors_errorMessage(e));
}
function throwIfAborted(signal) {
    if (signal?.aborted)
        throw signal.reason ?? new Error('aborted');
}
/**
 * Runs jobs side by side; the first to fail aborts `stop` (so the others end early) and is what this rejects with,
 * but only once every job has settled: a sibling still writing must not race its caller's clean-up.
 */
async function settleAll(jobs, stop) {
    let first;
    const settled = await Promise.allSettled(jobs.map(j => j.catch((e) => {
        first ??= { error: e };
        stop.abort(e);
        throw e;
    })));
    if (first)
        throw first.error;
    return settled.map(s => s.value);
}

;// CONCATENATED MODULE: ./src/fetch/emulator-file.ts





/** Finds `qemu-<target> version ...` in a stream without keeping the stream. */
class VersionScanner {
    pattern;
    carry = Buffer.alloc(0);
    found;
    pending;
    constructor(target) {
        this.pattern = Buffer.from(`qemu-${target} version `, 'latin1');
    }
    static line(buf) {
        const end = buf.findIndex(b => b === 0 || b === 10);
        if (end < 0)
            return buf.length > 200 ? buf.subarray(0, 200).toString('latin1') : undefined;
        return buf.subarray(0, end).toString('latin1');
    }
    update(chunk) {
        if (this.found)
            return;
        if (this.pending) {
            this.pending = Buffer.concat([this.pending, chunk.subarray(0, 256)]);
            this.found = VersionScanner.line(this.pending);
            if (this.found || this.pending.length > 256)
                this.pending = undefined;
            return;
        }
        // Across the chunk boundary, then within the chunk.
        const edge = Buffer.concat([this.carry, chunk.subarray(0, this.pattern.length)]);
        let at = edge.indexOf(this.pattern);
        let from;
        if (at >= 0 && at < this.carry.length)
            from = Buffer.concat([this.carry.subarray(at), chunk]);
        else {
            at = chunk.indexOf(this.pattern);
            if (at >= 0)
                from = chunk.subarray(at);
        }
        if (from) {
            this.found = VersionScanner.line(from);
            if (!this.found)
                this.pending = Buffer.from(from);
            return;
        }
        this.carry = Buffer.from(chunk.subarray(Math.max(0, chunk.length - this.pattern.length + 1)));
    }
    get version() {
        const v = this.found ?? (this.pending ? this.pending.toString('latin1') : undefined);
        return v?.replace(/[^\x20-\x7e]/g, '').trim() || undefined;
    }
}
const FLUSH_BYTES = 1024 * 1024;
/**
 * Streams an emulator's bytes to `dest` (or nowhere, to describe a file in
 * place): hashes them, checks the ELF header before the first byte is
 * written, and reads the QEMU version on the way. `limit` bounds the bytes.
 */
class EmulatorSink {
    target;
    dest;
    host;
    label;
    limit;
    signal;
    hash = (0,external_crypto_.createHash)('sha256');
    scanner;
    file;
    head = [];
    batch = [];
    batched = 0;
    size = 0;
    checked = false;
    constructor(target, dest, host, 
    /** names the emulator in errors, e.g. "qemu-aarch64 in <url>" */
    label, limit, signal) {
        this.target = target;
        this.dest = dest;
        this.host = host;
        this.label = label;
        this.limit = limit;
        this.signal = signal;
        this.scanner = new VersionScanner(target);
    }
    check() {
        const head = this.head.length === 1 ? this.head[0] : Buffer.concat(this.head);
        checkHostElf(readElfInfo(head.subarray(0, ELF_HEAD_BYTES)), head, this.host, this.label, `qemu-${this.target}`);
        this.checked = true;
    }
    async write(chunk) {
        throwIfAborted(this.signal);
        this.size += chunk.length;
        if (this.size > this.limit) {
            throw new errors_ActionError(`${this.label} is larger than ${this.limit} bytes, more than any emulator; refusing the archive - check qemu-url`);
        }
        this.hash.update(chunk);
        this.scanner.update(chunk);
        if (!this.checked) {
            this.head.push(chunk);
            if (this.size < ELF_HEAD_BYTES)
                return;
            this.check();
            for (const c of this.head)
                this.queue(c);
            this.head = [];
        }
        else
            this.queue(chunk);
        if (this.batched >= FLUSH_BYTES)
            await this.flush();
    }
    queue(c) {
        if (!this.dest)
            return;
        this.batch.push(c);
        this.batched += c.length;
    }
    async flush() {
        if (!this.dest || !this.batch.length)
            return;
        const dest = this.dest;
        try {
            this.file ??= await external_fs_.promises.open(dest, 'wx', 0o755);
            await this.file.writev(this.batch);
        }
        catch (e) {
            throw diskError(e, dest);
        }
        this.batch = [];
        this.batched = 0;
    }
    async end() {
        if (!this.checked) {
            this.check();
            for (const c of this.head)
                this.queue(c);
            this.head = [];
        }
        await this.flush();
        if (this.dest) {
            // An empty batch never opened the file.
            this.file ??= await external_fs_.promises.open(this.dest, 'wx', 0o755).catch(e => {
                throw diskError(e, this.dest);
            });
            await this.file.close();
            this.file = undefined;
        }
    }
    /** Closes the file after a failure (the caller removes it). */
    async abandon() {
        await this.file?.close().catch(() => undefined);
        this.file = undefined;
    }
    result(path) {
        return { path, sha256: this.hash.digest('hex'), size: this.size, reportedVersion: this.scanner.version };
    }
}
/** Reads a file once through an EmulatorSink (copying it to `dest` when given). */
async function passFile(file, target, dest, host, label, limit, signal) {
    const sink = new EmulatorSink(target, dest, host, label, limit, signal);
    try {
        for await (const chunk of (0,external_fs_.createReadStream)(file, { highWaterMark: FLUSH_BYTES, signal }))
            await sink.write(chunk);
        await sink.end();
    }
    catch (e) {
        await sink.abandon();
        if (dest)
            await external_fs_.promises.rm(dest, { force: true });
        throw e;
    }
    return sink.result(dest ?? file);
}

;// CONCATENATED MODULE: ./src/fetch/archive.ts












const ACCEPTED = 'a static ELF binary, .tar, .tar.gz/.tgz, .tar.xz, .tar.zst or .deb';
const COMPRESSION = { tar: 'not', 'tar.gz': 'gzip', 'tar.xz': 'xz', 'tar.zst': 'zstd' };
function startsWith(buf, bytes, at = 0) {
    if (buf.length < at + bytes.length)
        return false;
    return bytes.every((b, i) => buf[at + i] === b);
}
/** A plain tar starts with a header block: "ustar" at 257, or (old v7 archives) a valid checksum. */
function looksLikeTar(buf) {
    if (buf.length < 512)
        return false;
    if (buf.subarray(257, 262).toString('latin1') === 'ustar')
        return true;
    const field = buf
        .subarray(148, 156)
        .toString('latin1')
        .replace(/[\0 ]+$/, '')
        .trim();
    if (!/^[0-7]+$/.test(field))
        return false;
    let sum = 0;
    for (let i = 0; i < 512; i++)
        sum += i >= 148 && i < 156 ? 0x20 : buf[i];
    return sum === parseInt(field, 8) && buf[0] !== 0;
}
function formatOf(head) {
    if (startsWith(head, [0x7f, 0x45, 0x4c, 0x46]))
        return 'elf';
    if (startsWith(head, [0x1f, 0x8b]))
        return 'tar.gz';
    if (startsWith(head, [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]))
        return 'tar.xz';
    if (startsWith(head, [0x28, 0xb5, 0x2f, 0xfd]))
        return 'tar.zst';
    if (head.subarray(0, 8).toString('latin1') === '!<arch>\n')
        return 'deb';
    if (looksLikeTar(head))
        return 'tar';
    return undefined;
}
async function readRange(file, offset, length) {
    const fh = await external_fs_.promises.open(file, 'r');
    try {
        const buf = Buffer.allocUnsafe(length);
        let done = 0;
        while (done < length) {
            const { bytesRead } = await fh.read(buf, done, length - done, offset + done);
            if (bytesRead === 0)
                break;
            done += bytesRead;
        }
        return buf.subarray(0, done);
    }
    finally {
        await fh.close();
    }
}
async function readHead(file, label) {
    try {
        return await readRange(file, 0, 512);
    }
    catch (e) {
        throw new errors_ActionError(`${label} cannot be read (${errors_errorMessage(e)}); check qemu-url`);
    }
}
/**
 * Detects the download's format from its first bytes (never from its name).
 * ActionError naming `label` (default: the file) for anything else.
 */
async function detectFormat(file, label = file) {
    const head = await readHead(file, label);
    const format = formatOf(head);
    if (!format) {
        const known = startsWith(head, [0x50, 0x4b, 0x03, 0x04]) ? 'a zip archive' : startsWith(head, [0x42, 0x5a, 0x68]) ? 'bzip2-compressed' : undefined;
        if (known) {
            throw new errors_ActionError(`${label} is ${known}, which this action cannot unpack; expected ${ACCEPTED}; check qemu-url`);
        }
        throw new errors_ActionError(`${label} is not a supported emulator download (${describeStart(head)}); expected ${ACCEPTED}; check qemu-url`);
    }
    return format;
}
/** Finds data.tar.* in a Debian package. */
async function findDebData(file, label) {
    const data = await findDebMember(file, label, 'data.tar');
    if (!data)
        throw new errors_ActionError(`${label} is a .deb without a data.tar member; check qemu-url`);
    return data;
}
/** The first `<prefix>*` member of a Debian package: "!<arch>\n", then per member a 60-byte header and its data padded to even length. */
async function findDebMember(file, label, prefix) {
    const { size: fileSize } = await external_fs_.promises.stat(file);
    const truncated = () => new errors_ActionError(`${label} is a truncated .deb (ar archive ends early); the download may be incomplete; re-run or check qemu-url`);
    let pos = 8;
    while (pos + 60 <= fileSize) {
        const header = await readRange(file, pos, 60);
        if (header.subarray(58, 60).toString('latin1') !== '`\n') {
            throw new errors_ActionError(`${label} is a corrupt .deb (bad ar member header at byte ${pos}); re-run or check qemu-url`);
        }
        let name = header.subarray(0, 16).toString('latin1').trimEnd();
        let size = Number(header.subarray(48, 58).toString('latin1').trim());
        if (!Number.isSafeInteger(size) || size < 0) {
            throw new errors_ActionError(`${label} is a corrupt .deb (bad ar member size at byte ${pos}); re-run or check qemu-url`);
        }
        let offset = pos + 60;
        const stored = size;
        const bsd = /^#1\/(\d+)$/.exec(name);
        if (bsd) {
            // BSD ar: the name is the first N bytes of the data
            const n = Number(bsd[1]);
            name = (await readRange(file, offset, n)).toString('latin1').replace(/\0+$/, '');
            offset += n;
            size -= n;
        }
        name = name.replace(/\/$/, '');
        if (name.startsWith(prefix)) {
            if (offset + size > fileSize)
                throw truncated();
            const inner = formatOf(await readRange(file, offset, Math.min(size, 512)));
            if (inner === undefined || inner === 'elf' || inner === 'deb') {
                throw new errors_ActionError(`${label} has a ${name} this action cannot unpack (only gzip, xz, zstd or uncompressed data.tar); use another package or a .tar.gz`);
            }
            return { name, offset, size, format: inner };
        }
        pos += 60 + stored + (stored % 2);
    }
    if (pos < fileSize)
        throw truncated();
    return undefined;
}
/** A control file larger than this is not a package's. */
const MAX_CONTROL = 1024 * 1024;
/**
 * The Version field of a Debian package's control file (what `dpkg-deb -f FILE Version` prints);
 * undefined when the file is not a .deb or the field cannot be read: it only ever labels the emulators.
 */
async function debVersion(file, label, signal) {
    let dec;
    try {
        if ((await detectFormat(file, label)) !== 'deb')
            return undefined;
        const control = await findDebMember(file, label, 'control.tar');
        if (!control)
            return undefined;
        dec = decompress(file, control.format, { start: control.offset, size: control.size }, label, signal);
        const chunks = [];
        let found = false;
        await readTar(dec.stream, h => {
            if (h.name.replace(/^(\.\/)+/, '') !== 'control' || h.type !== 'file' || h.fullSize > MAX_CONTROL)
                return 'skip';
            return {
                write: async (c) => void chunks.push(Buffer.from(c)),
                end: async () => void (found = true),
            };
        }, () => found);
        return /^Version:[ \t]*(\S+)[ \t]*$/m.exec(Buffer.concat(chunks).toString('utf8'))?.[1];
    }
    catch {
        return undefined;
    }
    finally {
        dec?.close();
    }
}
const EMULATOR_NAME = /^qemu-([a-z0-9_]+?)(-static)?$/;
const READ_CHUNK = 1024 * 1024;
function decompress(file, format, range, label, signal) {
    const raw = readBytes(file, range);
    const zstd = external_zlib_.createZstdDecompress;
    if (format === 'tar')
        return inflateInProcess(raw, undefined, signal);
    if (format === 'tar.gz')
        return inflateInProcess(raw, external_zlib_.createGunzip({ chunkSize: 256 * 1024 }), signal);
    if (format === 'tar.zst' && zstd)
        return inflateInProcess(raw, zstd({ chunkSize: 256 * 1024 }), signal);
    return inflateWithProgram(raw, format, label, signal);
}
/** The file's bytes, or those of the member at `range`. */
function readBytes(file, range) {
    if (!range)
        return (0,external_fs_.createReadStream)(file, { highWaterMark: READ_CHUNK });
    if (range.size === 0)
        return external_stream_.Readable.from([]);
    return (0,external_fs_.createReadStream)(file, { start: range.start, end: range.start + range.size - 1, highWaterMark: READ_CHUNK });
}
/** gzip and zstd by Node's zlib (`inflate`); a plain tar (no `inflate`) as it is. */
function inflateInProcess(raw, inflate, signal) {
    if (inflate)
        (0,external_stream_.pipeline)(raw, inflate, () => undefined);
    const stop = () => {
        raw.destroy();
        inflate?.destroy();
    };
    // As for xz below: a member being skipped asks nothing of the caller, so only the stream's end stops it.
    signal?.addEventListener('abort', stop, { once: true });
    return {
        stream: inflate ?? raw,
        failure: async () => undefined,
        close: () => {
            stop();
            signal?.removeEventListener('abort', stop);
        },
    };
}
/** xz (and zstd where Node lacks it): the system's program, in a process group of its own so that stopping kills all of it. */
function inflateWithProgram(raw, format, label, signal) {
    const program = format === 'tar.xz' ? 'xz' : 'zstd';
    const args = format === 'tar.xz' ? ['-dc', '-T0'] : ['-dc', '-q'];
    const child = (0,external_child_process_.spawn)(program, args, { stdio: ['pipe', 'pipe', 'pipe'], detached: true, env: process.env });
    const exit = watchExit(child);
    let killed = false;
    (0,external_stream_.pipeline)(raw, child.stdin, () => undefined);
    const kill = () => {
        killed = true;
        raw.destroy();
        // 'close' waits for stdout to end: a reader that stopped early must not wait for it.
        child.stdout.destroy();
        try {
            if (child.pid && child.exitCode === null)
                process.kill(-child.pid, 'SIGKILL');
        }
        catch {
            // already gone
        }
    };
    const onAbort = () => kill();
    signal?.addEventListener('abort', onAbort, { once: true });
    return {
        stream: child.stdout,
        failure: async () => {
            const { code, signal: killedBy } = await exit.exited;
            signal?.removeEventListener('abort', onAbort);
            const spawnError = exit.spawnError();
            if (spawnError) {
                const pkg = program === 'xz' ? 'xz-utils' : 'zstd';
                if (spawnError.code === 'ENOENT')
                    return `!${label} is ${COMPRESSION[format]}-compressed but this runner has no ${program}; install ${pkg}`;
                return errors_errorMessage(spawnError);
            }
            if (code === 0 || killed)
                return undefined;
            return failureReason({ code, signal: killedBy, stdout: '', stderr: exit.stderr() }, undefined, program).replace(/^(xz|zstd): (\(stdin\): )?/, '');
        },
        close: () => {
            if (child.exitCode === null)
                kill();
            signal?.removeEventListener('abort', onAbort);
        },
    };
}
/** How the child ended, whether it could be started at all, and the start of what it said on stderr (enough for a message). */
function watchExit(child) {
    let stderr = '';
    child.stderr.on('data', (d) => {
        if (stderr.length < 4096)
            stderr += d.toString();
    });
    let spawnError;
    const exited = new Promise(resolve => {
        child.on('error', e => {
            spawnError = e;
            resolve({ code: null, signal: null });
        });
        child.on('close', (code, signal) => resolve({ code, signal }));
    });
    return { exited, spawnError: () => spawnError, stderr: () => stderr };
}
/**
 * Reads the gzip- or zstd-compressed tar `file` (the format told by its first bytes) once, calling `decide`
 * for each member, as extractEmulators does; nothing is written but what `decide` writes. ActionError
 * naming `label` for another format, a corrupt or truncated archive, or whatever `decide` throws.
 */
async function readCompressedTar(file, label, decide, signal) {
    const format = formatOf(await readHead(file, label));
    if (format !== 'tar.gz' && format !== 'tar.zst')
        throw new errors_ActionError(`${label} is not gzip- or zstd-compressed`);
    const dec = decompress(file, format, undefined, label, signal);
    try {
        await readTar(dec.stream, async (h) => {
            throwIfAborted(signal);
            return decide(h);
        });
    }
    catch (e) {
        dec.close();
        const complaint = await dec.failure();
        if (signal?.aborted)
            throw signal.reason ?? e;
        if (complaint?.startsWith('!'))
            throw new errors_ActionError(complaint.slice(1));
        if (e instanceof errors_ActionError)
            throw e;
        throw new errors_ActionError(`${label} is corrupt or truncated (${complaint ?? errors_errorMessage(e).replace(/^Error: /, '')})`);
    }
    dec.close();
    const complaint = await dec.failure();
    if (complaint)
        throw new errors_ActionError(complaint.startsWith('!') ? complaint.slice(1) : `${label} is corrupt or truncated (${complaint})`);
}
/**
 * Reads the archive once and writes the wanted emulators to `destDir/qemu-<T>`
 * (destDir must exist and be private to this run). Members that are links,
 * devices, directories or sparse, names with `..` or a leading `/`, members
 * over the size limits: refused. Stops reading once every required emulator
 * has been seen. On failure nothing is left in destDir.
 */
async function extractEmulators(file, label, want, destDir, opts) {
    const tar = await locateTar(file, label);
    const picker = new EmulatorPicker(want, label, tar.what, destDir, opts);
    const dec = decompress(file, tar.format, tar.range, label, opts.signal);
    let ending;
    try {
        ending = await readTar(dec.stream, h => picker.decide(h), () => picker.done);
    }
    catch (e) {
        dec.close();
        await picker.discard();
        throw readFailure(e, await dec.failure(), tar, label, opts.signal);
    }
    dec.close();
    // Stopped early, close() killed the decompressor: only a stream read to its end has an exit worth judging.
    if (ending === 'end') {
        const complaint = await dec.failure();
        if (complaint) {
            await picker.discard();
            throw complaint.startsWith('!') ? new errors_ActionError(complaint.slice(1)) : corrupt(tar.what, complaint);
        }
    }
    const missing = picker.missing();
    if (missing.length) {
        await picker.discard();
        throw missingEmulators(label, missing, picker);
    }
    return { emulators: await placeEmulators(picker.best.values(), destDir), offered: ending === 'end' ? [...picker.offered].sort() : undefined };
}
async function locateTar(file, label) {
    const format = await detectFormat(file, label);
    if (format === 'elf') {
        throw new errors_ActionError(`qemu-url: ${label} is a single emulator binary; put {target} in qemu-url to download one emulator per target, or point it at an archive`);
    }
    if (format !== 'deb')
        return { format, what: label };
    const deb = await findDebData(file, label);
    return { format: deb.format, range: { start: deb.offset, size: deb.size }, what: `${deb.name} in ${label}` };
}
/**
 * Decides, member by member, what to take: each wanted emulator's best copy (qemu-T-static before
 * qemu-T, in a bin directory before elsewhere, shallower, earlier), each written to a file of its own
 * in destDir as it streams past; a better copy replaces the one taken before.
 */
class EmulatorPicker {
    want;
    label;
    what;
    destDir;
    opts;
    best = new Map();
    /** every emulator the archive holds as a regular file */
    offered = new Set();
    /** per target, why a member named like its emulator was not taken (a link, a device, ...) */
    refused = new Map();
    /** every required emulator has been taken: the rest of the archive is not read */
    done = false;
    wanted;
    /** every file written: what a failure removes */
    written = [];
    declared = 0;
    serial = 0;
    taking;
    constructor(want, label, what, destDir, opts) {
        this.want = want;
        this.label = label;
        this.what = what;
        this.destDir = destDir;
        this.opts = opts;
        this.wanted = new Set(want.names);
    }
    async decide(h) {
        throwIfAborted(this.opts.signal);
        const key = h.name.replace(/^(\.\/)+/, '').replace(/\/+$/, '');
        this.refuseEscape(h, key);
        this.countDeclared(h);
        const parts = key.split('/');
        const m = EMULATOR_NAME.exec(parts[parts.length - 1]);
        // usr/share holds docs, man pages and binfmt-support files named like emulators
        if (!m || parts.includes('share') || !findTarget(m[1]))
            return 'skip';
        const target = m[1];
        if (h.type !== 'file') {
            if (!this.refused.has(target))
                this.refused.set(target, `${h.name} is ${KIND[h.type]}, not the emulator itself`);
            return 'skip';
        }
        this.offered.add(target);
        if (!this.wanted.has(target))
            return 'skip';
        if (h.fullSize > this.opts.limits.emulator) {
            throw new errors_ActionError(`${this.what}: ${h.name} is ${h.fullSize} bytes, more than any emulator (limit ${this.opts.limits.emulator}); refusing the archive - check qemu-url`);
        }
        const inBin = parts.length > 1 && /^s?bin$/.test(parts[parts.length - 2]);
        const rank = [m[2] ? 0 : 1, inBin ? 0 : 1, parts.length, this.serial];
        const current = this.best.get(target);
        if (current && compare(current.rank, rank) <= 0)
            return 'skip';
        return this.take(h, target, rank, current);
    }
    /** A member that would land outside the destination makes the whole archive suspect. */
    refuseEscape(h, key) {
        if (h.name.startsWith('/') ||
            key.split('/').includes('..') ||
            (h.linkname && h.type === 'hardlink' && (h.linkname.startsWith('/') || h.linkname.split('/').includes('..')))) {
            throw new errors_ActionError(`${this.label} contains the member "${h.name}", which would be written outside the destination; refusing to use this archive; check qemu-url`);
        }
    }
    /** What all members claim, taken or not: a decompression bomb is refused before its bytes are read. */
    countDeclared(h) {
        this.declared += h.fullSize;
        if (this.declared > this.opts.limits.archive) {
            throw new errors_ActionError(`${this.what} declares more than ${this.opts.limits.archive} bytes of content (a decompression bomb?); refusing it - check qemu-url`);
        }
    }
    /** Streams the member to a file of its own; once it is whole and checked, it replaces `current`. */
    take(h, target, rank, current) {
        const out = external_path_.join(this.destDir, `.member-${target}-${this.serial++}`);
        this.written.push(out);
        const sink = new EmulatorSink(target, out, this.opts.host, `${h.name} in ${this.label}`, this.opts.limits.emulator, this.opts.signal);
        this.taking = sink;
        return {
            write: c => sink.write(c),
            end: async () => {
                await sink.end();
                this.taking = undefined;
                if (current)
                    await external_fs_.promises.rm(current.file.path, { force: true });
                this.best.set(target, { target, rank, file: sink.result(out) });
                // Everything asked for is here: the rest of the archive is not read.
                if (this.want.required && [...this.wanted].every(t => this.best.has(t)))
                    this.done = true;
            },
        };
    }
    /** The required emulators no member provided. */
    missing() {
        return this.want.required ? this.want.names.filter(t => !this.best.has(t)) : [];
    }
    /** Removes every file written; a member cut short still holds its file open. */
    async discard() {
        await this.taking?.abandon();
        await Promise.all(this.written.map(f => external_fs_.promises.rm(f, { force: true })));
    }
}
function corrupt(what, why) {
    return new errors_ActionError(`${what} is corrupt or truncated (${why}); the download may be incomplete; re-run or check qemu-url`);
}
/** What to throw when reading failed with `e`: the decompressor's complaint, where it has one, says more than the tar reader. */
function readFailure(e, complaint, tar, label, signal) {
    if (signal?.aborted)
        return signal.reason ?? e;
    if (complaint?.startsWith('!'))
        return new errors_ActionError(complaint.slice(1));
    if (e instanceof TarFormatError) {
        if (complaint)
            return corrupt(tar.what, complaint);
        if (e.notTar) {
            return new errors_ActionError(`${label} is ${tar.format === 'tar' ? 'not' : `${COMPRESSION[tar.format]}-compressed but not`} a tar archive (${e.message}); expected ${ACCEPTED}; check qemu-url`);
        }
        return corrupt(tar.what, e.message);
    }
    if (e instanceof errors_ActionError)
        return e;
    return corrupt(tar.what, errors_errorMessage(e).replace(/^Error: /, ''));
}
/** Says why the archive cannot serve: a refused member named like the emulator, else what it holds instead. */
function missingEmulators(label, missing, picker) {
    const why = missing.map(t => picker.refused.get(t)).find(r => r !== undefined);
    if (why)
        return new errors_ActionError(`${label}: ${why}; check qemu-url`);
    const present = [...picker.offered].sort();
    const holds = present.length ? `it holds: ${present.join(', ')}` : 'it holds no qemu-<target> emulators';
    const looked = missing.map(t => `qemu-${t}[-static]`).join(', ');
    return new errors_ActionError(`${label} has no emulator for ${missing.join(', ')} (looked for ${looked}); ${holds}; choose from those targets or check qemu-url`);
}
/** Gives each chosen emulator its final name, qemu-<target>. */
async function placeEmulators(chosen, destDir) {
    const emulators = new Map();
    for (const c of chosen) {
        const out = external_path_.join(destDir, `qemu-${c.target}`);
        await external_fs_.promises.rename(c.file.path, out);
        emulators.set(c.target, { ...c.file, path: out });
    }
    return emulators;
}
const KIND = {
    hardlink: 'a hard link',
    symlink: 'a symbolic link',
    directory: 'a directory',
    device: 'a device',
    fifo: 'a FIFO',
    sparse: 'a sparse file',
    other: 'a special member',
};
function compare(a, b) {
    for (let i = 0; i < a.length; i++)
        if (a[i] !== b[i])
            return a[i] - b[i];
    return 0;
}

// EXTERNAL MODULE: external "http"
var external_http_ = __webpack_require__(8611);
;// CONCATENATED MODULE: ./src/fetch/url.ts
/**
 * Credentials in a URL (`https://user:token@host/...`): never shown, sent only
 * as HTTP Basic authentication to the URL's own origin.
 */
const USERINFO = /^([a-z][a-z0-9+.-]*:\/\/)([^/?#@]*@)/i;
/** The URL or path with any userinfo replaced by `***@`: safe for logs, errors, summary, manifest and cache keys. */
function redact(location) {
    return location.replace(USERINFO, (_m, scheme) => `${scheme}***@`);
}
/** Splits userinfo off a URL; the password (or token) is what a log must never show. */
function httpTarget(location) {
    const url = new URL(location);
    if (!url.username && !url.password)
        return { url, secrets: [] };
    const user = decodeURIComponent(url.username);
    const pass = decodeURIComponent(url.password);
    url.username = '';
    url.password = '';
    const token = Buffer.from(`${user}:${pass}`).toString('base64');
    return { url, authorization: `Basic ${token}`, secrets: [user, pass, token].filter(s => s.length >= 3) };
}
/** Name of the file behind a URL or path, as a qemu-sha256 line names it: a label only, never a path to write to. */
function fileNameOf(location) {
    try {
        const p = new URL(location).pathname;
        const last = p.slice(p.lastIndexOf('/') + 1);
        return decodeURIComponent(last);
    }
    catch {
        return location.slice(location.lastIndexOf('/') + 1);
    }
}

;// CONCATENATED MODULE: ./src/fetch/download.ts







const DEFAULT_NETWORK = { connectTimeoutMs: 30000, idleTimeoutMs: 30000, attempts: 3, retryDelayMs: 3000 };
/** A download that failed for good; `why` says how without naming the URL or an input, for callers that word their own message. */
class DownloadError extends errors_ActionError {
    why;
    constructor(message, why) {
        super(message);
        this.why = why;
    }
}
/** A failure worth another attempt (network, timeout, 5xx, cut transfer), as opposed to a final answer. */
class Transient extends Error {
}
const MAX_REDIRECTS = 10;
/** A slow download says how far it got this often: a plain line in a log, a progress bar on a terminal (the command). */
const PROGRESS_MS = 2000;
/**
 * Downloads `location` (http or https, credentials in its userinfo sent as Basic
 * auth to its own origin only) to `dest`, which must not exist, hashing the
 * bytes as they arrive. Timeouts, retries, size limit and cancellation end it;
 * on failure `dest` is removed and the error names the URL (redacted).
 */
async function download(location, dest, opts) {
    const shown = opts.label ?? redact(location);
    const { attempts, retryDelayMs } = opts.network;
    for (let attempt = 1;; attempt++) {
        try {
            return await attemptDownload(location, dest, opts);
        }
        catch (e) {
            await external_fs_.promises.rm(dest, { force: true });
            if (!(e instanceof Transient))
                throw e;
            if (attempt >= attempts) {
                const why = `${e.message} (after ${attempts} attempts)`;
                throw new DownloadError(`qemu-url: download of ${shown} failed: ${why}; check qemu-url and the network`, why);
            }
            const wait = retryDelayMs * 2 ** (attempt - 1) * (1 + Math.random() / 2);
            opts.log.info(`Download of ${shown} failed (${e.message}); retrying in ${(wait / 1000).toFixed(1)} s`);
            await pause(wait, opts.signal);
            throwIfAborted(opts.signal);
        }
    }
}
async function attemptDownload(location, dest, opts) {
    const first = httpTarget(location);
    let url = first.url;
    let authorization = first.authorization;
    const shown = (u) => opts.label ?? redact(u.toString());
    for (let hop = 0; hop <= MAX_REDIRECTS; hop++) {
        throwIfAborted(opts.signal);
        const res = await request(url, authorization, opts);
        const status = res.statusCode ?? 0;
        // A body we do not read is not drained either: a server could send it forever and keep the process alive.
        if (status >= 300 && status < 400 && res.headers.location) {
            res.destroy();
            const next = new URL(res.headers.location, url);
            if (next.protocol !== 'http:' && next.protocol !== 'https:') {
                throw new DownloadError(`qemu-url: ${shown(url)} redirects to a ${next.protocol} URL, which is not followed; check qemu-url`, `it redirects to a ${next.protocol} URL, which is not followed`);
            }
            // Credentials are for the URL's own origin (as curl does): a CDN redirect must not receive them.
            if (next.origin !== url.origin)
                authorization = undefined;
            if (next.username || next.password) {
                const t = httpTarget(next.toString());
                authorization = t.authorization;
                url = t.url;
            }
            else
                url = next;
            opts.log.debug(`redirected to ${shown(url)}`);
            continue;
        }
        if (status !== 200) {
            res.destroy();
            const why = `HTTP ${status}${res.statusMessage ? ` ${res.statusMessage}` : ''}`;
            if (status >= 500 || status === 408 || status === 429)
                throw new Transient(why);
            const hint = status === 401 || status === 403 ? 'check the credentials in qemu-url' : 'check qemu-version and qemu-url';
            throw new DownloadError(`qemu-url: download of ${opts.label ?? redact(location)} failed: ${why}; ${hint}`, why);
        }
        return receive(res, url, dest, opts);
    }
    throw new DownloadError(`qemu-url: ${opts.label ?? redact(location)} redirects more than ${MAX_REDIRECTS} times; check qemu-url`, `it redirects more than ${MAX_REDIRECTS} times`);
}
/**
 * How to reach `url`: through the runner's proxy settings (the toolkit's agent honours https_proxy/no_proxy).
 * @actions/http-client (with undici) and `https` (with `tls`) are loaded here, at the first request, not with
 * the action: ~25 ms that a run with nothing to download has no use for, and that would stand before the
 * builder's first command.
 */
async function transport(url) {
    const { HttpClient } = await __webpack_require__.e(/* import() */ 942).then(__webpack_require__.bind(__webpack_require__, 4942));
    const send = url.protocol === 'https:' ? (await Promise.resolve(/* import() */).then(__webpack_require__.t.bind(__webpack_require__, 5692, 23))).request : external_http_.request;
    return { send, agent: new HttpClient('setup-qemu-binfmt').getAgent(url.toString()) };
}
/**
 * An HTTP(S) request through a transport (transport()),
 * destroyed with a Transient failure when no answer comes within the connect timeout, and on cancellation.
 * A failure of the request reaches `reject` (as Transient, unless cancelled). `settled` stops both watches:
 * call it once the answer is in.
 */
function openRequest(url, options, network, signal, reject) {
    const { send, agent } = options.via;
    const req = send(url, { method: options.method, headers: { 'User-Agent': 'setup-qemu-binfmt', ...options.headers }, agent });
    const timer = setTimeout(() => req.destroy(new Transient(`no response within ${network.connectTimeoutMs / 1000} s`)), network.connectTimeoutMs);
    const onAbort = () => void req.destroy(signal?.reason ?? new Error('aborted'));
    signal?.addEventListener('abort', onAbort, { once: true });
    const settled = () => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
    };
    req.on('error', e => {
        settled();
        reject(e instanceof Transient || signal?.aborted ? e : new Transient(errors_errorMessage(e)));
    });
    return { req, settled };
}
/** Sends the GET; resolves with the response once its headers arrive within the connect timeout. */
async function request(url, authorization, opts) {
    const via = await transport(url);
    return new Promise((resolve, reject) => {
        const headers = { Accept: 'application/octet-stream' };
        if (authorization)
            headers.Authorization = authorization;
        const { req, settled } = openRequest(url, { method: 'GET', headers, via }, opts.network, opts.signal, reject);
        req.on('response', res => {
            settled();
            resolve(res);
        });
        req.end();
    });
}
/** Streams the body to `dest`, hashing it; the size limit applies before a byte is written. */
async function receive(res, url, dest, opts) {
    const declared = Number(res.headers['content-length']);
    const shown = opts.label ?? redact(url.toString());
    const tooBig = () => new DownloadError(`qemu-url: ${shown} is larger than ${opts.maxBytes} bytes, the limit for one download; refusing it - check qemu-url`, `it is larger than ${opts.maxBytes} bytes, the limit for one download`);
    if (Number.isFinite(declared) && declared > opts.maxBytes) {
        res.destroy();
        throw tooBig();
    }
    const hash = (0,external_crypto_.createHash)('sha256');
    let size = 0;
    const file = await external_fs_.promises.open(dest, 'wx', 0o600).catch(e => {
        res.destroy();
        throw diskError(e, dest);
    });
    // A server that sends headers then nothing must not hang the run.
    res.setTimeout(opts.network.idleTimeoutMs, () => res.destroy(new Transient(`no data for ${opts.network.idleTimeoutMs / 1000} s`)));
    const onAbort = () => void res.destroy(opts.signal?.reason ?? new Error('aborted'));
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    // Cancelled while the file was being opened: the event has fired already, with nobody listening.
    if (opts.signal?.aborted)
        onAbort();
    let reported = Date.now();
    try {
        for await (const chunk of res) {
            size += chunk.length;
            if (size > opts.maxBytes)
                throw tooBig();
            if (Date.now() - reported >= PROGRESS_MS) {
                reported = Date.now();
                opts.log.progress({ shown, bytes: size, declared });
            }
            hash.update(chunk);
            await file.write(chunk).catch(e => {
                throw diskError(e, dest);
            });
        }
    }
    catch (e) {
        res.destroy();
        if (e instanceof errors_ActionError || e instanceof Transient || opts.signal?.aborted)
            throw opts.signal?.aborted ? opts.signal.reason : e;
        throw new Transient(errors_errorMessage(e));
    }
    finally {
        opts.signal?.removeEventListener('abort', onAbort);
        await file.close();
    }
    if (!res.complete || (Number.isFinite(declared) && size !== declared)) {
        throw new Transient(`the transfer ended after ${size} of ${Number.isFinite(declared) ? declared : '?'} bytes`);
    }
    return { sha256: hash.digest('hex'), size };
}

;// CONCATENATED MODULE: ./src/fetch/actions-cache.ts











/**
 * The key to save `files` under: `<prefix>-` and their digests' hash, so that what an entry holds
 * decides its name; `fresh` (a restored entry was broken or failed its check) adds the time, so that the good
 * entry is saved even when a bad one took its name, and is the newest the next restore finds.
 */
function saveKey(prefix, files, fresh) {
    const sums = [...files]
        .sort((a, b) => a.slot.localeCompare(b.slot))
        .map(f => `${f.slot}=${f.sha256}`)
        .join(',');
    const key = `${prefix}-${(0,external_crypto_.createHash)('sha256').update(sums).digest('hex').slice(0, 16)}`;
    return fresh ? `${key}-${Date.now().toString(36)}` : key;
}
const SERVICE = '/twirp/github.actions.results.api.v1.CacheService/';
/** a file of an entry, as the post step saves it: a slot name, never a path */
const SLOT = /^[a-z0-9_]+$/;
/** what the restored files are called in messages (an entry and its member names are untrusted) */
const RESTORED = 'the restored entry';
/**
 * The cache service v2 (Twirp; what @actions/cache speaks when the runner sets ACTIONS_CACHE_SERVICE_V2
 * and ACTIONS_RESULTS_URL, except on GitHub Enterprise Server), or why not.
 */
function serviceV2() {
    const env = process.env;
    if (!env.ACTIONS_RESULTS_URL && !env.ACTIONS_CACHE_URL)
        return { why: 'is not available here (local run?)', local: true };
    const host = (() => {
        try {
            return new URL(env.GITHUB_SERVER_URL || 'https://github.com').hostname.toLowerCase();
        }
        catch {
            return '';
        }
    })();
    const ghes = host !== 'github.com' && !host.endsWith('.ghe.com') && !host.endsWith('.localhost');
    if (!env.ACTIONS_CACHE_SERVICE_V2 || !env.ACTIONS_RESULTS_URL || ghes) {
        return { why: 'here is not v2 (no ACTIONS_CACHE_SERVICE_V2 / ACTIONS_RESULTS_URL, or GitHub Enterprise Server)' };
    }
    if (!env.ACTIONS_RUNTIME_TOKEN)
        return { why: 'has no ACTIONS_RUNTIME_TOKEN here' };
    return { url: env.ACTIONS_RESULTS_URL, token: env.ACTIONS_RUNTIME_TOKEN };
}
/** The compression @actions/cache saves with here (zstd when `zstd --quiet --version` says anything, else gzip): part of the entry's version. */
async function compressionMethod() {
    const said = await new Promise(resolve => {
        (0,external_child_process_.execFile)('zstd', ['--quiet', '--version'], { timeout: 10000 }, (_e, stdout, stderr) => resolve(`${stdout ?? ''}${stderr ?? ''}`.trim()));
    });
    return said ? 'zstd-without-long' : 'gzip';
}
/** The version @actions/cache gives an entry of `paths` (utils/cacheUtils getCacheVersion, on Linux): the service matches it exactly. */
function cacheVersion(paths, compression) {
    return (0,external_crypto_.createHash)('sha256')
        .update([...paths, compression, '1.0'].join('|'))
        .digest('hex');
}
/**
 * Restores the newest entry saved under `prefix`, with this action's own client and tar reader: the
 * entry is looked up, its archive downloaded, and only the files `req.slots` names (regular files where
 * the post step saved them) are written, into a directory this run makes. An entry holding anything
 * else is not used (a warning says so). What is restored is as untrusted as a download: the caller checks it.
 */
async function restoreEntry(req) {
    const { log } = req;
    const service = serviceV2();
    if ('why' in service) {
        if (service.local)
            log.debug(`The Actions cache service ${service.why}; using the runner tool cache only`);
        else
            log.debug(`The Actions cache service ${service.why}; not restoring: only v2 entries are restored, by this action's own reader`);
        return { available: false };
    }
    const mode = (process.env.ACTIONS_CACHE_MODE ?? '').trim().toLowerCase();
    if (mode === 'none' || mode === 'write-only') {
        log.info(`Not restoring from the Actions cache: the effective cache mode '${mode}' does not permit reads`);
        return { available: true };
    }
    // Nothing left from an earlier run may be saved as this run's.
    external_fs_.rmSync(req.saveDir, { recursive: true, force: true });
    let found;
    try {
        found = await lookUp(service, req);
    }
    catch (e) {
        if (req.signal?.aborted)
            throw e;
        log.warning(`Actions cache restore failed, downloading instead: ${errors_errorMessage(e)}`);
        return { available: true, failed: true };
    }
    if (!found)
        return { available: true };
    const dir = await external_fs_.promises.mkdtemp(external_path_.join(req.tempDir, 'restored-entry-'));
    const blob = external_path_.join(dir, '.entry');
    let keep = false;
    try {
        try {
            await download(found.url, blob, {
                maxBytes: req.limits.archive,
                network: req.network,
                signal: req.signal,
                log,
                label: `the Actions cache entry ${found.key}`,
            });
        }
        catch (e) {
            if (req.signal?.aborted)
                throw e;
            log.warning(`Actions cache restore failed, downloading instead: the entry ${found.key} could not be downloaded (${e instanceof DownloadError ? e.why : errors_errorMessage(e)})`);
            return { available: true, failed: true };
        }
        try {
            await readEntry(blob, dir, req);
        }
        catch (e) {
            if (req.signal?.aborted)
                throw e;
            log.warning(`Not using the Actions cache entry ${found.key}: ${errors_errorMessage(e)}; downloading instead`);
            return { available: true, failed: true };
        }
        log.info(`Restored emulators from the Actions cache (${found.key})`);
        keep = true;
        return { available: true, hit: found.key, dir };
    }
    finally {
        await external_fs_.promises.rm(keep ? blob : dir, { recursive: true, force: true });
    }
}
const actions_cache_KIND = {
    file: 'a file',
    hardlink: 'a hard link',
    symlink: 'a symlink',
    directory: 'a directory',
    device: 'a device',
    fifo: 'a FIFO',
    sparse: 'a sparse file',
    other: 'a special member',
};
/** A member name made safe for a log line: one line, short, nothing a runner reads as a command. */
const shownName = (name) => `"${untrusted(name, 120).replace(/[^A-Za-z0-9._/+=@ -]/g, '?')}"`;
/**
 * Reads the entry's archive `blob`, writing the files `req.slots` names to `dir/<slot>` and nothing else;
 * anything in it that the post step does not save (another path, a link, a device, a file twice) refuses the entry.
 * A member's name is where `tar -P` would put it, resolved against the workspace as the client packs it.
 */
async function readEntry(blob, dir, req) {
    const workspace = process.env.GITHUB_WORKSPACE || process.cwd();
    const saveDir = external_path_.resolve(req.saveDir);
    const wanted = new Set(req.slots);
    const taken = new Set();
    const max = req.limits.download;
    let declared = 0;
    await readCompressedTar(blob, RESTORED, async (h) => {
        const where = external_path_.resolve(workspace, h.name);
        if (where === saveDir && h.type === 'directory')
            return 'skip';
        const slot = external_path_.dirname(where) === saveDir ? external_path_.basename(where) : undefined;
        if (slot === undefined || !SLOT.test(slot)) {
            throw new errors_ActionError(`${RESTORED} holds ${shownName(h.name)}, which is not a file this action saves (${saveDir}/<file>)`);
        }
        if (h.type !== 'file')
            throw new errors_ActionError(`${RESTORED} holds ${shownName(h.name)} as ${actions_cache_KIND[h.type]}, not as a regular file`);
        if (h.fullSize > max)
            throw new errors_ActionError(`${RESTORED} holds ${shownName(h.name)} of ${h.fullSize} bytes, more than ${max}`);
        if ((declared += h.fullSize) > req.limits.archive)
            throw new errors_ActionError(`${RESTORED} declares more than ${req.limits.archive} bytes`);
        if (taken.has(slot))
            throw new errors_ActionError(`${RESTORED} holds ${shownName(h.name)} twice`);
        taken.add(slot);
        if (!wanted.has(slot))
            return 'skip';
        const out = await external_fs_.promises.open(external_path_.join(dir, slot), 'wx', 0o600);
        let size = 0;
        return {
            write: async (chunk) => {
                if ((size += chunk.length) > max)
                    throw new errors_ActionError(`${RESTORED} holds ${shownName(h.name)} larger than ${max} bytes`);
                await out.write(chunk);
            },
            end: () => out.close(),
        };
    }, req.signal);
    const missing = req.slots.filter(s => !taken.has(s));
    if (missing.length)
        throw new errors_ActionError(`${RESTORED} has no ${missing.map(s => `${saveDir}/${s}`).join(', ')}`);
}
/** GetCacheEntryDownloadURL for the newest entry under `req.prefix`; undefined when there is none. */
async function lookUp(service, req) {
    const version = cacheVersion([req.saveDir], await compressionMethod());
    const body = JSON.stringify({ key: req.prefix, restore_keys: [`${req.prefix}-`], version });
    // As the client resolves it: from the URL's origin.
    const answer = await twirp(new URL(`${SERVICE}GetCacheEntryDownloadURL`, service.url), service.token, body, req);
    if (answer.ok !== true)
        return undefined;
    const key = typeof answer.matched_key === 'string' ? answer.matched_key : '';
    const url = typeof answer.signed_download_url === 'string' ? answer.signed_download_url : '';
    // Only an entry of ours: a key under the prefix asked for.
    if (!key.startsWith(`${req.prefix}-`) || !/^[\x21-\x7e]+$/.test(key))
        throw new Error(`the cache service matched ${shownName(key)}, not a key under ${req.prefix}-`);
    if (!/^https?:/.test(url))
        throw new Error(`the cache service gave no http(s) download URL for ${key}`);
    return { key, url };
}
const RETRY = new Set([429, 500, 502, 503, 504]);
/** One Twirp JSON call, retried as @actions/cache retries (5 attempts, the wait growing by half each time). */
async function twirp(url, token, body, req) {
    const attempts = 5;
    for (let attempt = 1;; attempt++) {
        throwIfAborted(req.signal);
        let why;
        try {
            const res = await post(url, token, body, req);
            if (res.status === 200) {
                try {
                    const parsed = JSON.parse(res.text);
                    if (parsed && typeof parsed === 'object')
                        return parsed;
                }
                catch {
                    // below
                }
                throw new Error('the cache service answered something that is not a JSON object');
            }
            const msg = (() => {
                try {
                    const m = JSON.parse(res.text).msg;
                    return typeof m === 'string' ? ` (${untrusted(m, 200)})` : '';
                }
                catch {
                    return '';
                }
            })();
            why = `HTTP ${res.status}${msg}`;
            if (!RETRY.has(res.status))
                throw new Error(`the cache service answered ${why}`);
        }
        catch (e) {
            if (!(e instanceof Transient))
                throw e;
            why = e.message;
        }
        if (attempt >= attempts)
            throw new Error(`the cache service answered ${why} (after ${attempts} attempts)`);
        const wait = req.network.retryDelayMs * 1.5 ** (attempt - 1) * (1 + Math.random() / 2);
        req.log.info(`Looking up the Actions cache failed (${why}); retrying in ${(wait / 1000).toFixed(1)} s`);
        await pause(wait, req.signal);
    }
}
/** A POST with the runtime token; the answer's body read up to 1 MiB, within the network policy's timeouts. */
async function post(url, token, body, req) {
    const via = await transport(url);
    return new Promise((resolve, reject) => {
        const headers = {
            'Content-Type': 'application/json',
            Accept: 'application/json',
            Authorization: `Bearer ${token}`,
            'Content-Length': Buffer.byteLength(body),
        };
        const { req: r, settled: done } = openRequest(url, { method: 'POST', headers, via }, req.network, req.signal, reject);
        r.on('response', res => {
            const parts = [];
            let size = 0;
            res.on('data', (c) => {
                if ((size += c.length) > 1 << 20)
                    res.destroy(new Error('the cache service answered more than 1 MiB'));
                else
                    parts.push(c);
            });
            res.on('end', () => {
                done();
                resolve({ status: res.statusCode ?? 0, text: Buffer.concat(parts).toString('utf8') });
            });
            res.on('error', e => {
                done();
                reject(e);
            });
        });
        r.end(body);
    });
}
/**
 * Saves the files the main step downloaded, if they are still what main read; never fails the job.
 * Removes them afterwards: the tool cache keeps the emulators, not the archives.
 */
async function saveEntry(pending, log) {
    try {
        await save(pending, log);
    }
    finally {
        external_fs_.rmSync(pending.dir, { recursive: true, force: true });
    }
}
async function save(pending, log) {
    // Only where this action restores from (the v2 service): an entry it would never read is not worth saving.
    const service = serviceV2();
    if ('why' in service) {
        log.debug(`The Actions cache service ${service.why}; not saving`);
        return;
    }
    const cache = await Promise.all(/* import() */[__webpack_require__.e(942), __webpack_require__.e(838), __webpack_require__.e(808)]).then(__webpack_require__.bind(__webpack_require__, 808));
    if (!external_fs_.existsSync(pending.dir)) {
        log.warning(`Actions cache: ${pending.dir} is gone; nothing to save`);
        return;
    }
    for (const f of pending.files) {
        const now = await sha256File(`${pending.dir}/${f.slot}`).catch(() => 'unreadable');
        if (now !== f.sha256) {
            log.warning(`Actions cache: ${pending.dir}/${f.slot} changed after the main step read it (sha256 ${now}, was ${f.sha256}); not saving it`);
            return;
        }
    }
    try {
        // -1: the service kept nothing (the key exists already, or it refused); @actions/cache says why at info level.
        const id = await cache.saveCache([pending.dir], pending.key);
        if (id === -1)
            log.info(`The Actions cache did not store the emulators under ${pending.key} (see above); the next job downloads them`);
        else
            log.info(`Saved emulators to the Actions cache (${pending.key})`);
    }
    catch (e) {
        log.warning(`Actions cache save failed (the emulators are still used): ${errors_errorMessage(e)}`);
    }
}
/** For post: the state main saved, or undefined. */
function parsePending(state) {
    if (!state)
        return undefined;
    try {
        const p = JSON.parse(state);
        const files = Array.isArray(p.files) && p.files.every(f => typeof f?.slot === 'string' && /^[a-z0-9_]+$/.test(f.slot) && typeof f.sha256 === 'string');
        return typeof p.dir === 'string' && typeof p.key === 'string' && files ? p : undefined;
    }
    catch {
        return undefined;
    }
}

// EXTERNAL MODULE: external "url"
var external_url_ = __webpack_require__(7016);
;// CONCATENATED MODULE: ./src/fetch/source.ts





const PLACEHOLDERS = ['version', 'qemu', 'host', 'target'];
function resolveSource(template, version, host) {
    for (const m of template.matchAll(/\{([^}]*)\}/g)) {
        if (!PLACEHOLDERS.includes(m[1])) {
            throw new errors_ActionError(`qemu-url: unknown placeholder {${m[1]}}; use ${PLACEHOLDERS.map(p => `{${p}}`).join(', ')}`);
        }
    }
    const qemu = version.replace(/-[^-]*$/, '');
    const filled = template
        .replace(/\{version\}/g, version)
        .replace(/\{qemu\}/g, qemu)
        .replace(/\{host\}/g, host);
    const perTarget = filled.includes('{target}');
    const versioned = /\{(version|qemu)\}/.test(template);
    const locate = (target) => (perTarget ? filled.replace(/\{target\}/g, target ?? '') : filled);
    const scheme = /^([a-zA-Z][a-zA-Z0-9+.-]*):/.exec(filled)?.[1].toLowerCase();
    if (scheme === 'http' || scheme === 'https') {
        try {
            new URL(locate('x'));
        }
        catch {
            throw new errors_ActionError(`qemu-url: '${redact(template)}' is not a valid URL; use https://..., file://... or a local path`);
        }
        return { id: redact(filled), perTarget, local: false, versioned, locate };
    }
    if (scheme === 'file') {
        let p;
        try {
            p = (0,external_url_.fileURLToPath)(filled.replace(/\{target\}/g, '__TARGET__'));
        }
        catch {
            throw new errors_ActionError(`qemu-url: '${redact(template)}' is not a valid file:// URL; use file:///absolute/path`);
        }
        return localSource(p);
    }
    if (scheme && scheme.length > 1) {
        throw new errors_ActionError(`qemu-url: unsupported scheme '${scheme}:' in '${redact(template)}'; use https://, http://, file:// or a local path`);
    }
    return localSource(filled.replace(/\{target\}/g, '__TARGET__'));
    function localSource(p) {
        const abs = external_path_.resolve(p);
        return {
            id: `file:${abs}`,
            perTarget,
            local: true,
            versioned,
            locate: (target) => (perTarget ? abs.replace(/__TARGET__/g, target ?? '') : abs),
        };
    }
}
/** For a local directory source: the emulator files in it, by QEMU target name (qemu-T-static preferred over qemu-T). */
function scanDirectory(dir) {
    const found = new Map();
    let names;
    try {
        names = external_fs_.readdirSync(dir);
    }
    catch (e) {
        throw new errors_ActionError(`qemu-url: cannot read directory ${dir} (${e.code}); check the path`);
    }
    for (const name of names.sort()) {
        const m = /^qemu-(.+?)(-static)?$/.exec(name);
        if (!m)
            continue;
        const file = external_path_.join(dir, name);
        if (m[2] || !found.has(m[1])) {
            try {
                if (external_fs_.statSync(file).isFile())
                    found.set(m[1], file);
            }
            catch {
                // dangling link: not an emulator
            }
        }
    }
    return found;
}

;// CONCATENATED MODULE: ./src/fetch/strategies.ts











/** What a per-target source with `platforms: all` offers: the emulators of a tonistiigi/binfmt release. */
const PER_TARGET_ALL = ['aarch64', 'arm', 'riscv64', 'ppc64le', 's390x', 'i386', 'x86_64', 'mips64el', 'mips64', 'loongarch64'];
function strategyFor(source) {
    if (source.perTarget)
        return new PerTargetSource(source);
    if (source.local) {
        const kind = localKind(source.locate());
        if (kind === 'directory')
            return new DirectorySource(source.locate());
    }
    return new BundleSource(source);
}
/** A local qemu-url must be a regular file or a directory: stat only, nothing opened (a FIFO would block, /dev/zero never end). */
function localKind(p) {
    let st;
    try {
        st = (0,external_fs_.statSync)(p);
    }
    catch (e) {
        throw new errors_ActionError(`qemu-url: ${p} does not exist (${e.code}); check the path`);
    }
    if (st.isFile())
        return 'file';
    if (st.isDirectory())
        return 'directory';
    const what = st.isFIFO()
        ? 'a FIFO'
        : st.isCharacterDevice()
            ? 'a character device'
            : st.isBlockDevice()
                ? 'a block device'
                : st.isSocket()
                    ? 'a socket'
                    : 'not a regular file';
    throw new errors_ActionError(`qemu-url: ${p} is ${what}; point it at an archive, an emulator binary or a directory of emulators`);
}
async function obtain(location, local, ctx, slot) {
    const label = redact(location);
    // The name is always this run's own (it picks the qemu-sha256 line), whatever the file came from.
    const name = fileNameOf(location);
    throwIfAborted(ctx.signal);
    if (ctx.restored && !local) {
        const dest = external_path_.join(await external_fs_.promises.mkdtemp(external_path_.join(ctx.tempDir, 'restored-')), 'download');
        const sha256 = await copyHashed(external_path_.join(ctx.restored, slot), dest, ctx.limits.download, ctx.signal);
        return { file: dest, label: `${label} (from the Actions cache)`, name, sha256, slot };
    }
    if (local) {
        if (localKind(location) !== 'file')
            throw new errors_ActionError(`qemu-url: ${location} is a directory; with {target} in qemu-url each target names a file`);
        const { size } = await external_fs_.promises.stat(location);
        if (size > ctx.limits.download) {
            throw new errors_ActionError(`qemu-url: ${location} is ${size} bytes, more than the ${ctx.limits.download} an emulator archive may be; check qemu-url`);
        }
        return { file: location, label, name, sha256: await hashFile(location, ctx.signal), slot };
    }
    const dir = await external_fs_.promises.mkdtemp(external_path_.join(ctx.tempDir, 'download-'));
    // The name is ours: the URL's last segment is only a label (it may decode to '../../etc/...').
    const dest = external_path_.join(dir, 'download');
    ctx.log.info(`Downloading ${label}`);
    const got = await download(location, dest, { maxBytes: ctx.limits.download, network: ctx.network, signal: ctx.signal, log: ctx.log });
    return { file: dest, label, name, sha256: got.sha256, slot };
}
/**
 * Copies `src` to `dest` in one read, hashing what it copies: what is checked is what is used, even if
 * `src` changes meanwhile. Only a regular file no larger than `max` (the entry is untrusted: no links).
 */
async function copyHashed(src, dest, max, signal) {
    let fh;
    try {
        fh = await external_fs_.promises.open(src, external_fs_.constants.O_RDONLY | external_fs_.constants.O_NOFOLLOW);
    }
    catch (e) {
        throw new errors_ActionError(`${external_path_.basename(src)} is missing from the entry (${e.code})`);
    }
    try {
        const st = await fh.stat();
        if (!st.isFile())
            throw new errors_ActionError(`${external_path_.basename(src)} in the entry is not a regular file`);
        if (st.size > max)
            throw new errors_ActionError(`${external_path_.basename(src)} in the entry is ${st.size} bytes, more than ${max}`);
        const h = (0,external_crypto_.createHash)('sha256');
        const out = await external_fs_.promises.open(dest, 'wx', 0o600);
        try {
            let size = 0;
            for await (const chunk of fh.createReadStream({ highWaterMark: 1024 * 1024, signal, autoClose: false })) {
                if ((size += chunk.length) > max)
                    throw new errors_ActionError(`${external_path_.basename(src)} in the entry grew past ${max} bytes`);
                h.update(chunk);
                await out.write(chunk);
            }
        }
        finally {
            await out.close();
        }
        return h.digest('hex');
    }
    finally {
        await fh.close();
    }
}
function hashFile(file, signal) {
    return new Promise((resolve, reject) => {
        const h = (0,external_crypto_.createHash)('sha256');
        (0,external_fs_.createReadStream)(file, { highWaterMark: 1024 * 1024, signal })
            .on('data', d => h.update(d))
            .on('error', reject)
            .on('end', () => resolve(h.digest('hex')));
    });
}
/** A name that may be an emulator itself (covered by its own line) rather than an archive. */
const mayBeEmulator = (name) => /^qemu-[^/]+$/.test(name) && !/\.(tar|tgz|gz|xz|zst|deb)/.test(name);
const strategies_stored = (e, from, packageVersion) => ({
    ...e,
    file: from.name,
    fileSha256: from.sha256,
    ...(packageVersion ? { packageVersion } : {}),
});
/** A source whose files are read (downloaded, or copied from this machine) into the tool cache's staging. */
class FileSource {
    source;
    label;
    inPlace = false;
    local;
    constructor(source, 
    /** as messages name it: credentials removed */
    label) {
        this.source = source;
        this.label = label;
        this.local = source.local;
    }
}
/** One archive holding every emulator (the tonistiigi/binfmt release, a .deb, a local archive). */
class BundleSource extends FileSource {
    constructor(source) {
        super(source, redact(source.locate()));
    }
    offers() {
        return undefined;
    }
    slots() {
        return ['archive'];
    }
    async materialise(want, into, ctx) {
        let t = performance.now();
        const got = await obtain(this.source.locate(), this.local, ctx, 'archive');
        ctx.timings.download += performance.now() - t;
        ctx.policy.checkFile(got, false);
        t = performance.now();
        const x = await extractEmulators(got.file, got.label, want, into, { host: ctx.host, limits: ctx.limits, signal: ctx.signal });
        // A .deb says which package version the emulators are: read once here, kept with them in the tool cache.
        const pkg = await debVersion(got.file, got.label, ctx.signal);
        ctx.timings.extract += performance.now() - t;
        return { emulators: new Map([...x.emulators].map(([n, e]) => [n, strategies_stored(e, got, pkg)])), offered: x.offered, kept: [got] };
    }
}
/** One file per emulator (`{target}` in qemu-url): an emulator binary, or an archive holding it. */
class PerTargetSource extends FileSource {
    constructor(source) {
        super(source, redact(source.id));
    }
    offers() {
        return PER_TARGET_ALL;
    }
    slots(want) {
        return pickEmulators(want, PER_TARGET_ALL) ?? [];
    }
    async materialise(want, into, outer) {
        const names = pickEmulators(want, PER_TARGET_ALL) ?? [];
        // The first failure stops the sibling downloads and extractions too.
        const stop = new AbortController();
        const signal = outer.signal ? AbortSignal.any([outer.signal, stop.signal]) : stop.signal;
        const ctx = { ...outer, signal };
        const all = (jobs) => settleAll(jobs, stop);
        const t = performance.now();
        const files = await all(names.map(n => obtain(this.source.locate(n), this.local, ctx, n)));
        ctx.timings.download += performance.now() - t;
        for (const f of files)
            ctx.policy.checkFile(f, mayBeEmulator(f.name));
        const t2 = performance.now();
        const out = await all(names.map(async (n, i) => {
            const got = files[i];
            if ((await detectFormat(got.file, got.label)) === 'elf') {
                const e = await passFile(got.file, n, external_path_.join(into, `qemu-${n}`), ctx.host, `qemu-${n} from ${got.label}`, ctx.limits.emulator, ctx.signal);
                return [n, strategies_stored(e, got)];
            }
            const x = await extractEmulators(got.file, got.label, { names: [n], required: true }, into, { host: ctx.host, limits: ctx.limits, signal: ctx.signal });
            return [n, strategies_stored(x.emulators.get(n), got)];
        }));
        ctx.timings.extract += performance.now() - t2;
        return { emulators: new Map(out), offered: PER_TARGET_ALL, kept: files };
    }
}
/** A local directory of emulators (e.g. /usr/bin with Debian's qemu-user-static): checked and used in place. */
class DirectorySource {
    label;
    inPlace = true;
    local = true;
    found;
    constructor(label) {
        this.label = label;
    }
    offers() {
        this.found ??= scanDirectory(this.label);
        return [...this.found.keys()];
    }
    slots() {
        return [];
    }
    async materialise(want, _into, ctx) {
        const offered = this.offers();
        const names = pickEmulators(want, offered) ?? [];
        const found = this.found;
        const t = performance.now();
        const out = await Promise.all(names.map(async (n) => {
            const file = found.get(n);
            if (!file) {
                throw new errors_ActionError(`qemu-url: ${this.label} has no qemu-${n} or qemu-${n}-static; it has ${offered.map(k => `qemu-${k}`).join(', ') || 'no emulators'}`);
            }
            const e = await passFile(file, n, undefined, ctx.host, `qemu-${n} from ${file}`, ctx.limits.emulator, ctx.signal);
            return [n, { ...e, file: external_path_.basename(file), fileSha256: e.sha256 }];
        }));
        ctx.timings.extract += performance.now() - t;
        return { emulators: new Map(out), offered };
    }
}

// EXTERNAL MODULE: ./src/compile-cache.ts + 1 modules
var compile_cache = __webpack_require__(6232);
;// CONCATENATED MODULE: ./src/fetch/tool-cache.ts






const OFFERS = 'offers.json';
/** `@actions/tool-cache` marks a complete `<tool>/<version>/<arch>` directory with `<arch>.complete` beside it */
const COMPLETE = '.complete';
const STAGING = '.tmp-';
/** a staging directory this old belongs to a run that died */
const STALE_MS = 60 * 60 * 1000;
/**
 * One tool-cache entry: `<root>/setup-qemu-binfmt/<version>/<arch>/`, holding
 * `qemu-<T>` binaries, each trusted only once its `qemu-<T>.json` marker exists
 * (written after the binary, by rename) and the binary's size matches it.
 * Writers stage in a directory of their own inside the entry and rename into
 * place, so concurrent runs both succeed and a run killed halfway leaves
 * nothing a later run trusts.
 *
 * Once an emulator is in place, `<arch>.complete` beside the entry says so to
 * `@actions/tool-cache`'s `find()` (it wants `<tool>/<semver>/<arch>/` and that
 * file), so later steps of a job can find the emulators. It is for them only:
 * this code never reads it, the per-emulator markers alone decide what is trusted.
 */
class ToolCacheEntry {
    dir;
    constructor(dir) {
        this.dir = dir;
    }
    static at(toolCache, tool, version, arch) {
        return new ToolCacheEntry(external_path_.join(toolCache, tool, version, arch));
    }
    /** The entry of `arch` under any version (the version is learned from what it holds), if there is one. */
    static find(toolCache, tool, arch) {
        let versions;
        try {
            versions = external_fs_.readdirSync(external_path_.join(toolCache, tool)).filter(v => !v.startsWith('.'));
        }
        catch {
            return undefined;
        }
        const found = versions.sort().find(v => external_fs_.existsSync(external_path_.join(toolCache, tool, v, arch)));
        return found === undefined ? undefined : ToolCacheEntry.at(toolCache, tool, found, arch);
    }
    /** Removes the entry's directory, and its version's, when nothing is left in them (another run may still be using them). */
    removeIfEmpty() {
        for (const d of [this.dir, external_path_.dirname(this.dir)]) {
            try {
                external_fs_.rmdirSync(d);
            }
            catch {
                return;
            }
            // find() must not be told of a directory that is gone.
            if (d === this.dir)
                external_fs_.rmSync(this.completeMarker(), { force: true });
        }
    }
    /** `<entry>.complete`, the file `@actions/tool-cache`'s find() looks for beside a complete entry. */
    completeMarker() {
        return `${this.dir}${COMPLETE}`;
    }
    /**
     * The emulators stored and intact (by marker and size), and what the source offers when known.
     * `ownOnly`: a marker is believed only where nobody but this user or root could have written it
     * (it says which file an emulator came from, and a pin on that file rests on it); otherwise the
     * entry counts as empty and `doubt` says why.
     */
    read(ownOnly = false) {
        const emulators = new Map();
        let names;
        try {
            names = external_fs_.readdirSync(this.dir);
        }
        catch {
            return { emulators };
        }
        const uid = process.geteuid?.() ?? -1;
        if (ownOnly) {
            let doubt;
            try {
                doubt = (0,compile_cache/* othersMayChange */.RT)(external_fs_.realpathSync(this.dir), uid);
            }
            catch (e) {
                doubt = `${this.dir} cannot be checked (${e.code})`;
            }
            if (doubt)
                return { emulators, doubt };
        }
        for (const n of names) {
            const m = /^qemu-([a-z0-9_]+)\.json$/.exec(n);
            if (!m)
                continue;
            const bin = external_path_.join(this.dir, `qemu-${m[1]}`);
            const json = external_path_.join(this.dir, n);
            try {
                const st = external_fs_.lstatSync(bin);
                if (ownOnly && ((0,compile_cache/* othersMayChangeFile */.hO)(bin, st, uid) || (0,compile_cache/* othersMayChangeFile */.hO)(json, external_fs_.lstatSync(json), uid)))
                    continue;
                const marker = JSON.parse(external_fs_.readFileSync(json, 'utf8'));
                if (!st.isFile() || st.size !== marker.size || !/^[0-9a-f]{64}$/.test(marker.sha256))
                    continue;
                emulators.set(m[1], {
                    path: bin,
                    sha256: marker.sha256,
                    size: marker.size,
                    reportedVersion: marker.reportedVersion,
                    ...(typeof marker.packageVersion === 'string' ? { packageVersion: marker.packageVersion } : {}),
                    file: marker.file,
                    fileSha256: marker.fileSha256,
                });
            }
            catch {
                // half-written or foreign: not trusted
            }
        }
        let offered;
        try {
            const o = JSON.parse(external_fs_.readFileSync(external_path_.join(this.dir, OFFERS), 'utf8'));
            if (Array.isArray(o.offered) && o.offered.every(x => typeof x === 'string'))
                offered = o.offered;
        }
        catch {
            // unknown: a later `all` run reads the source again
        }
        return { emulators, offered };
    }
    /** A fresh directory inside the entry for this run to write into; removes stale ones of dead runs. */
    stage() {
        try {
            external_fs_.mkdirSync(this.dir, { recursive: true, mode: 0o755 });
        }
        catch (e) {
            throw toolCacheError(realMkdirError(this.dir, e), this.dir);
        }
        this.sweep();
        const dir = external_path_.join(this.dir, `${STAGING}${process.pid}-${(0,external_crypto_.randomBytes)(4).toString('hex')}`);
        try {
            external_fs_.mkdirSync(dir, { mode: 0o700 });
        }
        catch (e) {
            throw toolCacheError(e, this.dir);
        }
        return dir;
    }
    sweep() {
        let names;
        try {
            names = external_fs_.readdirSync(this.dir).filter(n => n.startsWith(STAGING));
        }
        catch {
            return;
        }
        for (const n of names) {
            const p = external_path_.join(this.dir, n);
            try {
                if (Date.now() - external_fs_.statSync(p).mtimeMs > STALE_MS)
                    external_fs_.rmSync(p, { recursive: true, force: true });
            }
            catch {
                // another run's, or already gone
            }
        }
    }
    /**
     * Moves the staged emulators into place (binary first, then its marker) and
     * records what the source offers; removes the staging directory.
     */
    commit(staging, emulators, offered) {
        const placed = new Map();
        try {
            // Staged elsewhere when the version (this entry's folder) was learned from what was staged.
            external_fs_.mkdirSync(this.dir, { recursive: true, mode: 0o755 });
            for (const [t, e] of emulators) {
                const bin = external_path_.join(this.dir, `qemu-${t}`);
                external_fs_.chmodSync(e.path, 0o755);
                external_fs_.renameSync(e.path, bin);
                const marker = {
                    sha256: e.sha256,
                    size: e.size,
                    file: e.file,
                    fileSha256: e.fileSha256,
                    reportedVersion: e.reportedVersion,
                    packageVersion: e.packageVersion,
                };
                this.writeAtomic(`qemu-${t}.json`, JSON.stringify(marker), staging);
                placed.set(t, { ...e, path: bin });
            }
            if (offered)
                this.writeAtomic(OFFERS, JSON.stringify({ offered }), staging);
            if (placed.size)
                this.markComplete(staging);
        }
        catch (e) {
            throw diskError(e, external_path_.join(this.dir, 'x'));
        }
        finally {
            external_fs_.rmSync(staging, { recursive: true, force: true });
        }
        return placed;
    }
    writeAtomic(name, content, staging) {
        const tmp = external_path_.join(staging, `${name}.tmp`);
        external_fs_.writeFileSync(tmp, content, { mode: 0o644 });
        external_fs_.renameSync(tmp, external_path_.join(this.dir, name));
    }
    /**
     * Tells find() the entry is usable (by rename, so a concurrent run or a reader never sees half a file).
     * Only other steps read it; if it cannot be written they do not find the entry, and this run goes on.
     */
    markComplete(staging) {
        const tmp = external_path_.join(staging, COMPLETE);
        try {
            external_fs_.writeFileSync(tmp, '', { mode: 0o644 });
            external_fs_.renameSync(tmp, this.completeMarker());
        }
        catch {
            // not needed by this run
        }
    }
}
/** Recursive mkdir reports ENOENT for a read-only parent: create the first missing level alone to learn why. */
function realMkdirError(dir, e) {
    if (e.code !== 'ENOENT')
        return e;
    let missing = dir;
    while (!external_fs_.existsSync(external_path_.dirname(missing)) && external_path_.dirname(missing) !== missing)
        missing = external_path_.dirname(missing);
    try {
        external_fs_.mkdirSync(missing);
        external_fs_.rmdirSync(missing);
    }
    catch (inner) {
        return inner;
    }
    return e;
}
/** A tool cache this user cannot write says so, and what to do. */
function toolCacheError(e, dir) {
    const code = e.code;
    if (code === 'EROFS' || code === 'EACCES' || code === 'EPERM' || code === 'ENOENT' || code === 'ENOTDIR') {
        const why = {
            EROFS: 'it is on a read-only file system',
            EACCES: 'permission denied',
            EPERM: 'permission denied',
            ENOENT: 'a parent directory is missing and cannot be made',
            ENOTDIR: 'a parent is not a directory',
        }[code];
        return new errors_ActionError(`cannot write the tool cache entry ${dir} (${code}: ${why}); make RUNNER_TOOL_CACHE a writable directory for this user, or point it elsewhere`);
    }
    return diskError(e, external_path_.join(dir, 'x'));
}

;// CONCATENATED MODULE: ./src/fetch/index.ts











const TOOL = 'setup-qemu-binfmt';
const hash = (s) => (0,external_crypto_.createHash)('sha256').update(s).digest('hex');
// semver 2.0 as @actions/tool-cache's find() takes it: no leading zeros in numeric identifiers (7.2.0-01 is not one).
const IDENT = '(?:0|[1-9]\\d*|\\d*[A-Za-z-][0-9A-Za-z-]*)';
const SEMVER = new RegExp(`^(?:0|[1-9]\\d*)\\.(?:0|[1-9]\\d*)\\.(?:0|[1-9]\\d*)(?:-${IDENT}(?:\\.${IDENT})*)?$`);
/** Tool-cache versions must be semver, so that other steps' find() sees them; other versions get a stable stand-in. */
function toolVersion(version) {
    return SEMVER.test(version) ? version : `0.0.0-v${hash(version).slice(0, 12)}`;
}
function networkPolicy(req) {
    return req.network ?? DEFAULT_NETWORK;
}
/**
 * The emulators `req.want` names, from the tool cache when it has them intact,
 * else from the Actions cache, else fetched from the source in one pass and
 * stored. With qemu-sha256 lines, the digests of the files to be registered
 * are checked before this returns, on cold and warm runs alike.
 */
async function fetchEmulators(req) {
    const { source } = req;
    const strategy = strategyFor(source);
    const policy = new ChecksumPolicy(req.sha256);
    const timings = { download: 0, extract: 0 };
    const ctx = {
        host: req.host,
        limits: req.limits ?? DEFAULT_LIMITS,
        network: networkPolicy(req),
        policy,
        tempDir: req.tempDir,
        signal: req.signal,
        log: req.log,
        timings,
    };
    if (strategy.inPlace)
        return useInPlace(req, strategy, ctx);
    const cached = new CachedEntry(req, strategy, ctx);
    let got = { from: 'tool-cache' };
    if (!cached.complete())
        got = await fillEntry(req, cached, strategy, ctx);
    else
        req.log.info(`Using cached emulators from ${cached.entry.dir}`);
    // Pins hold for what an earlier run stored too: the bytes about to be registered are hashed, not the marker believed.
    if (policy.active)
        await cached.recheckStored();
    const chosen = cached.chosen();
    // One line per file the emulators came from (an archive holds many): what the summary offers to pin.
    const files = [...new Map([...chosen.values()].map(e => [e.file, e.fileSha256]))].map(([name, sha256]) => ({ name, sha256 }));
    return {
        emulators: verified(chosen, policy),
        cacheHit: got.from === 'tool-cache' || got.from === 'actions-cache',
        from: got.from,
        timings,
        pendingSave: got.pendingSave,
        files,
        version: ownVersion(source, chosen.values()),
    };
}
/** A local directory's emulators, used where they lie. */
async function useInPlace(req, strategy, ctx) {
    const m = await strategy.materialise(req.want, '', ctx);
    // Used where they lie: the summary names the file itself.
    const inPlace = new Map([...verified(m.emulators, ctx.policy)].map(([n, e]) => [n, { ...e, origin: e.path }]));
    const files = [...m.emulators.values()].map(e => ({ name: external_path_.basename(e.path), sha256: e.sha256 }));
    // Used where they lie: nothing came from a cache.
    return { emulators: inPlace, cacheHit: false, from: 'local', timings: ctx.timings, files, version: ownVersion(req.source, m.emulators.values()) };
}
/**
 * The tool cache entry a request is stored in, what it holds, and the emulators added to it
 * in this run. Its identity is the source, the version and the host (and, for a local file,
 * its size and mtime); a local file the version input does not name is stored under the
 * version its emulators report.
 */
class CachedEntry {
    req;
    strategy;
    ctx;
    entry;
    stored;
    /** what this run placed: checked against the pins on the way in */
    fresh = new Set();
    /** the Actions cache key's prefix: a key is this and what the entry holds (see actions-cache.ts) */
    keyPrefix;
    root;
    arch;
    constructor(req, strategy, ctx) {
        this.req = req;
        this.strategy = strategy;
        this.ctx = ctx;
        const { source } = req;
        // A local file the version input does not name is its own version: it is stored under the version its
        // emulators report (learned when they are stored, found again by its identity alone).
        const learnsVersion = source.local && !source.versioned;
        let id = learnsVersion ? `${source.id}|${req.host}` : `${source.id}|${req.version}|${req.host}`;
        // A local file may change in place: its size and mtime are part of its identity.
        if (source.local && !source.perTarget) {
            const st = external_fs_.statSync(source.locate());
            id += `|${st.size}|${st.mtimeMs}`;
        }
        this.arch = `${req.host}-${hash(id).slice(0, 12)}`;
        this.root = req.toolCache;
        this.entry = learnsVersion
            ? (ToolCacheEntry.find(this.root, TOOL, this.arch) ?? ToolCacheEntry.at(this.root, TOOL, PENDING, this.arch))
            : ToolCacheEntry.at(this.root, TOOL, toolVersion(req.version), this.arch);
        this.keyPrefix = `${TOOL}-3-${this.arch}-${hash(`${req.version}|${req.selectionKey}`).slice(0, 16)}`;
        // Under a pin, what the entry says about where an emulator came from is believed only where no one else could have written it.
        const stored = this.entry.read(ctx.policy.active);
        if (stored.doubt)
            req.log.info(`Not believing the tool cache entry ${this.entry.dir} while emulators are pinned: ${stored.doubt}; reading the source again`);
        this.stored = stored;
    }
    /** The emulators to use, once the source's offer (or the entry's record of it) is known. */
    names() {
        return pickEmulators(this.req.want, this.strategy.offers() ?? this.stored.offered);
    }
    complete() {
        return this.names()?.every(n => this.stored.emulators.has(n)) ?? false;
    }
    /** Only what is missing; `all` with an unknown offer reads the whole source. */
    missing() {
        const wanted = this.names();
        return wanted ? { names: wanted.filter(n => !this.stored.emulators.has(n)), required: true } : this.req.want;
    }
    /** Reads `want` from the source (or the restored Actions-cache files) into the entry; the downloaded files, for the Actions cache. */
    async fill(want, restored) {
        const staging = this.entry.stage();
        try {
            const m = await this.strategy.materialise(want, staging, { ...this.ctx, restored });
            // Nothing unchecked enters the tool cache.
            for (const [n, e] of m.emulators)
                this.ctx.policy.checkEmulator(n, e.sha256, { name: e.file, sha256: e.fileSha256 });
            // A local file that names no version is stored under the version its emulators report.
            const pending = this.entry;
            if (external_path_.basename(external_path_.dirname(this.entry.dir)) === PENDING)
                this.entry = ToolCacheEntry.at(this.root, TOOL, toolVersion(qemuVersionOf(m.emulators.values()) ?? this.req.version), this.arch);
            const placed = this.entry.commit(staging, m.emulators, m.offered ?? this.stored.offered);
            if (this.entry !== pending)
                pending.removeIfEmpty();
            for (const n of placed.keys())
                this.fresh.add(n);
            this.stored = { emulators: new Map([...this.stored.emulators, ...placed]), offered: m.offered ? [...m.offered] : this.stored.offered };
            return m.kept ?? [];
        }
        catch (e) {
            external_fs_.rmSync(staging, { recursive: true, force: true });
            throw e;
        }
    }
    /** Hashes the stored emulators this run did not place: an earlier run's marker is not believed under a pin. */
    async recheckStored() {
        for (const n of (this.names() ?? []).filter(x => !this.fresh.has(x))) {
            const e = this.stored.emulators.get(n);
            const actual = await sha256File(e.path);
            if (actual !== e.sha256) {
                throw new errors_ActionError(`qemu-sha256: ${e.path} in the tool cache changed after it was stored (sha256 ${actual}, stored ${e.sha256}); nothing was registered - remove ${this.entry.dir} and re-run`);
            }
        }
    }
    chosen() {
        return new Map((this.names() ?? []).map(n => [n, this.stored.emulators.get(n)]));
    }
}
/**
 * Fills what the entry lacks: from the Actions cache when it has an entry that reads as a download
 * would, else from the source; a download is kept for the post step to save.
 */
async function fillEntry(req, cached, strategy, ctx) {
    const want = cached.missing();
    const useCache = req.cache && !req.source.local;
    // Where the post step saves from; a restore writes only into a directory of its own.
    const cacheDir = external_path_.join(cached.entry.dir, 'source');
    // A restored entry holds the downloaded files, as untrusted as a download: read and checked (pins too) exactly as one.
    const cache = useCache
        ? await restoreEntry({
            saveDir: cacheDir,
            prefix: cached.keyPrefix,
            slots: strategy.slots(want),
            tempDir: req.tempDir,
            limits: ctx.limits,
            network: ctx.network,
            signal: ctx.signal,
            log: req.log,
        })
        : { available: false };
    let failed = cache.failed ?? false;
    if (cache.hit && cache.dir) {
        try {
            await cached.fill(want, cache.dir);
            return { from: 'actions-cache' };
        }
        catch (e) {
            if (ctx.signal?.aborted)
                throw e;
            failed = true;
            req.log.warning(`Not using the Actions cache entry ${cache.hit}: ${errors_errorMessage(e)}; downloading instead`);
        }
        finally {
            external_fs_.rmSync(cache.dir, { recursive: true, force: true });
        }
    }
    const kept = await cached.fill(want);
    const pendingSave = useCache ? keepForSave(kept, cacheDir, cached.keyPrefix, failed, cache.available, req.log) : undefined;
    return { from: req.source.local ? 'local' : 'download', pendingSave };
}
/** Where a local file's emulators are staged before their version is known. */
const PENDING = '.pending';
/** The QEMU version every one of the emulators reports (`qemu-aarch64 version 7.2.22 (...)` -> 7.2.22), if they agree. */
function qemuVersionOf(emulators) {
    const found = new Set([...emulators].map(e => /version (\d+\.\d+\.\d+)/.exec(e.reportedVersion ?? '')?.[1]));
    const [only] = found;
    return found.size === 1 ? only : undefined;
}
/** See FetchResult.version. */
function ownVersion(source, emulators) {
    const all = [...emulators];
    const packages = new Set(all.map(e => e.packageVersion));
    const [pkg] = packages;
    if (packages.size === 1 && pkg)
        return pkg;
    return source.versioned ? undefined : qemuVersionOf(all);
}
/**
 * Copies the downloaded files where the post step saves them from; undefined (and a warning) if that
 * fails. Without the cache service nothing is copied: the post step says it is not saving.
 */
function keepForSave(kept, dir, prefix, fresh, service, log) {
    const files = kept.map(k => ({ slot: k.slot, sha256: k.sha256 }));
    if (!service)
        return { dir, key: saveKey(prefix, files, fresh), files };
    try {
        external_fs_.mkdirSync(dir, { recursive: true, mode: 0o755 });
        // Whole files only: another run of the same entry may be saving the same slot.
        for (const k of kept) {
            const tmp = external_path_.join(dir, `.${k.slot}-${process.pid}`);
            external_fs_.copyFileSync(k.file, tmp);
            external_fs_.renameSync(tmp, external_path_.join(dir, k.slot));
        }
    }
    catch (e) {
        log.warning(`Not saving to the Actions cache: cannot copy the downloads to ${dir} (${errors_errorMessage(e)})`);
        return undefined;
    }
    return { dir, key: saveKey(prefix, files, fresh), files };
}
/** The policy's verdict on each emulator, then the emulators as main uses them. */
function verified(emulators, policy) {
    const out = new Map();
    for (const [n, e] of emulators) {
        policy.checkEmulator(n, e.sha256, { name: e.file, sha256: e.fileSha256 });
        out.set(n, { name: n, path: e.path, origin: e.file, reportedVersion: e.reportedVersion });
    }
    return out;
}

;// CONCATENATED MODULE: ./src/host.ts


function detectHost(nodeArch = process.arch) {
    switch (nodeArch) {
        case 'x64':
            return { arch: 'amd64', target: getTarget('x86_64'), nativeCandidates: [getTarget('i386'), getTarget('i486')] };
        case 'arm64':
            // Many arm64 server CPUs have no AArch32: arm is tried, never assumed.
            return { arch: 'arm64', target: getTarget('aarch64'), nativeCandidates: [getTarget('arm')] };
        default:
            throw new errors_ActionError(`this runner's architecture (${nodeArch}) is not supported; use an x86_64 (amd64) or arm64 runner`);
    }
}
/** linux/amd64/v2.. up to the x86-64 `level` (1..4) the CPU runs; none when the level is unknown. */
function amd64Levels(level) {
    const levels = [];
    for (let v = 2; v <= (level ?? 1); v++)
        levels.push(`linux/amd64/v${v}`);
    return levels;
}
/** Docker platforms the host runs without QEMU, given which candidate targets ran natively and the x86-64 level the CPU reported. */
function nativePlatforms(host, native, amd64Level) {
    const platforms = [...dockerPlatforms(host.target)];
    if (host.arch === 'amd64')
        platforms.push(...amd64Levels(amd64Level));
    for (const t of native)
        for (const p of dockerPlatforms(t))
            if (!platforms.includes(p))
                platforms.push(p);
    return platforms;
}

// EXTERNAL MODULE: external "net"
var external_net_ = __webpack_require__(9278);
;// CONCATENATED MODULE: ./src/lock.ts





/**
 * The host-wide lock around every read-plan-change-verify of binfmt_misc, one
 * table for the whole host. It is an abstract unix socket: binding the name
 * succeeds for one process at a time, whichever user it runs as, and the kernel
 * frees it the moment its holder exits, even on SIGKILL, so no stale lock file
 * is ever left to time out. Abstract names belong to a network namespace: jobs
 * in containers with their own network are not serialized with the host's.
 */
// Padded to the whole of sun_path (108 bytes): Node 20 binds abstract names padded with NULs to that
// length, Node 22+ binds them at their own length, and for the kernel those are different names.
// A name that fills sun_path is the same name to every Node version.
const LOCK_NAME = '\0setup-qemu-binfmt/binfmt_misc/'.padEnd(108, '.');
/** This run, as a waiting run is told; `since` is when it bound the name (a Date.now()). */
function me(since) {
    const job = [
        process.env.GITHUB_REPOSITORY,
        process.env.GITHUB_RUN_ID && `run ${process.env.GITHUB_RUN_ID}`,
        process.env.GITHUB_JOB && `job ${process.env.GITHUB_JOB}`,
    ]
        .filter(Boolean)
        .join(' ');
    let user;
    try {
        user = external_os_.userInfo().username;
    }
    catch {
        user = String(process.getuid?.() ?? '?');
    }
    return { pid: process.pid, user, ...(job ? { job } : {}), since: new Date(since).toISOString() };
}
function describeHolder(h) {
    if (!h)
        return 'another process (it did not say who it is)';
    return `pid ${h.pid} (user ${h.user}${h.job ? `, ${h.job}` : ''}, since ${h.since})`;
}
/** A field of the holder's answer, made safe to print: any local user can bind the name and answer anything. */
function field(v, max) {
    if (typeof v !== 'string')
        return undefined;
    const s = untrusted(v, max).trim();
    return s || undefined;
}
/** The holder's answer, checked; undefined when it is not one. */
function parseHolder(text) {
    let h;
    try {
        h = JSON.parse(text);
    }
    catch {
        return undefined;
    }
    if (typeof h !== 'object' || h === null || !Number.isSafeInteger(h.pid) || h.pid <= 0)
        return undefined;
    const user = field(h.user, 64);
    const since = field(h.since, 40);
    if (!user || !since)
        return undefined;
    const job = field(h.job, 200);
    return { pid: h.pid, user, ...(job ? { job } : {}), since };
}
/** Asks the holder who it is; undefined when it does not answer in time. */
function askHolder(name) {
    return new Promise(resolve => {
        const socket = external_net_.connect({ path: name });
        let data = '';
        const done = (h) => {
            socket.destroy();
            resolve(h);
        };
        // A whole-answer deadline, not an idle one: a holder that trickles bytes must not stall the wait.
        const timer = setTimeout(() => done(), 1000);
        socket.on('close', () => clearTimeout(timer));
        socket.on('data', d => {
            data += d.toString();
            if (data.length > 4096)
                done();
        });
        socket.on('end', () => done(parseHolder(data)));
        socket.on('error', () => done());
    });
}
function tryBind(name) {
    return new Promise((resolve, reject) => {
        const sockets = new Set();
        const since = Date.now();
        // Who we are is looked up (the user database, the clock's zone) only when a waiting run asks: most runs never wait.
        let holder;
        const server = external_net_.createServer(socket => {
            sockets.add(socket);
            socket.on('close', () => sockets.delete(socket));
            socket.on('error', () => undefined);
            // A client that never closes its side must not keep this connection open.
            socket.end((holder ??= JSON.stringify(me(since))), () => socket.destroy());
            socket.unref();
        });
        server.once('error', (e) => (e.code === 'EADDRINUSE' ? resolve(undefined) : reject(e)));
        server.listen({ path: name }, () => {
            // A lock must never keep the process alive by itself.
            server.unref();
            resolve({ server, sockets });
        });
    });
}
class HostLock {
    bound;
    constructor(bound) {
        this.bound = bound;
    }
    /** Waits for the lock; throws an ActionError naming the holder after `timeoutMs`, CancelledError when cancelled. */
    static async acquire(opts) {
        const name = opts.name ?? LOCK_NAME;
        const deadline = Date.now() + opts.timeoutMs;
        let told = false;
        for (;;) {
            if (opts.cancel?.aborted)
                throw new CancelledError();
            const bound = await tryBind(name);
            if (bound)
                return new HostLock(bound);
            const other = await askHolder(name);
            if (Date.now() >= deadline) {
                throw new errors_ActionError(`binfmt_misc is locked by another setup-qemu-binfmt run, ${describeHolder(other)}, for more than ${Math.round(opts.timeoutMs / 1000)} s; ` +
                    `wait for that job to finish, or raise lock-timeout`);
            }
            if (!told) {
                opts.log(`Waiting for another setup-qemu-binfmt run to finish changing binfmt_misc: ${describeHolder(other)}`);
                told = true;
            }
            await pause(100 + Math.random() * 150, opts.cancel);
        }
    }
    /** Frees the name at once; answers still being sent to waiting runs are cut off. */
    release() {
        return new Promise(resolve => {
            this.bound.server.close(() => resolve());
            // close() waits for open connections: end them, whoever holds them open.
            for (const s of this.bound.sockets)
                s.destroy();
        });
    }
}

;// CONCATENATED MODULE: ./src/fetch/pins.ts
// Built-in digests for the default release's assets. tonistiigi/binfmt
// publishes no checksum file, so the default download is checked against
// digests recorded here (each confirmed by independent public pins of the same
// asset). They apply only to the default source and version without a
// qemu-sha256 input: a user's qemu-sha256 always wins, and any other source or
// version is the user's to pin.


/** Known digests of the default release's assets (DEFAULT_QEMU_VERSION), per host. */
const DEFAULT_RELEASE = {
    amd64: { name: 'qemu_v10.2.3_linux-amd64.tar.gz', sha256: '8e7d8f4c0c7809fc3fea0085199fd6b16f671e7c73d9bf6bec711e1cb535920a' },
    arm64: undefined,
};
/** The default release's asset name for `host` (the default URL's last segment). */
function defaultAssetName(host, version = DEFAULT_QEMU_VERSION) {
    const qemu = version.replace(/-[^-]*$/, '');
    const url = DEFAULT_QEMU_URL.replace(/\{version\}/g, version)
        .replace(/\{qemu\}/g, qemu)
        .replace(/\{host\}/g, host);
    return decodeURIComponent(url.slice(url.lastIndexOf('/') + 1));
}
/**
 * The checksum list fetching must enforce: the user's qemu-sha256 when given;
 * else, for the default qemu-url and qemu-version, the built-in digest of this
 * host's asset when one is known.
 */
function pinning(input, host) {
    if (input.sha256.size)
        return { kind: 'user', list: input.sha256 };
    if (input.qemuUrl !== DEFAULT_QEMU_URL || input.qemuVersion !== DEFAULT_QEMU_VERSION)
        return { kind: 'none', list: new Map() };
    const fileName = defaultAssetName(host);
    const known = DEFAULT_RELEASE[host];
    // A digest recorded for another asset name (the default version moved on) pins nothing.
    if (!known || known.name !== fileName)
        return { kind: 'not-pinned', list: new Map(), fileName };
    return { kind: 'built-in', list: new Map([[known.name, known.sha256]]), file: known };
}
/** A qemu-sha256 line for `file`, in sha256sum's format. */
function checksumLine(file) {
    return `${file.sha256}  ${file.name}`;
}
/** Whether `file` was checked, in words for the summary. */
function pinnedStatus(p, file) {
    switch (p.kind) {
        case 'user':
            return p.list.has(file.name) ? 'pinned by qemu-sha256' : 'pinned by qemu-sha256 (its emulators are listed)';
        case 'built-in':
            return file.name === p.file.name ? 'pinned by the built-in digest of the default release' : 'not pinned';
        case 'not-pinned':
            return `not pinned: no built-in digest for ${p.fileName}; check it and set qemu-sha256`;
        case 'none':
            return 'not pinned: set qemu-sha256';
    }
}
/**
 * A mismatch with a built-in digest is not a wrong list of the user's: says
 * that the default release's asset is not the one pinned, and what to do.
 */
function explainPinFailure(p, e) {
    const got = e instanceof errors_ActionError && /checksum mismatch/.test(e.message) ? /got ([0-9a-f]{64})/.exec(e.message)?.[1] : undefined;
    if (p.kind !== 'built-in' || !got)
        return e;
    return new errors_ActionError(`the default release's ${p.file.name} has sha256 ${got}, not the ${p.file.sha256} built into this action: ` +
        `the asset changed upstream or was altered on the way; nothing was registered - set qemu-version and qemu-url to a release you have checked and pin it with qemu-sha256`);
}

;// CONCATENATED MODULE: ./src/register.ts


const isQemuEntry = (name) => name.startsWith('qemu-');
const register_STAGING = /^qemu-.+\.staged-(\d+)$/;
/** The staging name of `name` for the process `pid`. */
function stagingName(name, pid = process.pid) {
    return `${name}.staged-${pid}`;
}
/** The entry a staging name stands for (`qemu-arm.staged-12` -> `qemu-arm`); any other name as it is. */
function unstaged(name) {
    return stagedBy(name) === undefined ? name : name.slice(0, name.lastIndexOf('.staged-'));
}
/** The process that staged this entry, when the name is a staging name. */
function stagedBy(name) {
    const m = register_STAGING.exec(name);
    return m ? Number(m[1]) : undefined;
}
/**
 * Decides what to do with the kernel's current entries. Entries whose names do
 * not start with `qemu-` are never touched; an identical entry is kept (unless
 * `pinned`: the kernel holds whatever file was at that path when it was
 * registered, so only a fresh registration from the checked file is pinned); a
 * different one of the same name is replaced; `reset` removes every other
 * qemu-* entry as well. Staging entries of other runs are left to their owners.
 */
function planChanges(existing, wanted, opts) {
    const byName = new Map(existing.map(e => [e.name, e]));
    const changes = [];
    const wantedNames = new Set(wanted.map(w => w.spec.name));
    if (opts.reset) {
        for (const e of existing) {
            if (!isQemuEntry(e.name) || wantedNames.has(e.name) || stagedBy(e.name) !== undefined || opts.inUse?.(e.name))
                continue;
            changes.push({ kind: 'remove', entry: e });
        }
    }
    for (const w of wanted) {
        if (!isQemuEntry(w.spec.name))
            throw new Error(`refusing to manage non-qemu entry ${w.spec.name}`);
        const old = byName.get(w.spec.name);
        if (!old)
            changes.push({ kind: 'add', wanted: w });
        else if (opts.reset)
            changes.push({ kind: 'replace', wanted: w, old, why: 'reset' });
        else if (!sameEntry(old, w.spec))
            changes.push({ kind: 'replace', wanted: w, old, why: 'differs' });
        else if (opts.pinned)
            changes.push({ kind: 'replace', wanted: w, old, why: 'pinned' });
        else
            changes.push({ kind: 'keep', wanted: w, entry: old });
    }
    return changes;
}
function describeEntry(e, named = true) {
    const what = `interpreter ${e.interpreter}, flags ${e.flags || 'none'}${e.enabled ? '' : ', disabled'}`;
    return named ? `${e.name} (${what})` : what;
}
/** What a run has registered and not yet made final: what a failure removes. */
class Journal {
    added = [];
    get empty() {
        return this.added.length === 0;
    }
}
/**
 * Registers the new entries, each under its staging name; removes and replaces
 * nothing yet. On a failure removes what it registered and rethrows.
 */
async function applyChanges(writer, reader, changes, journal, log) {
    const registrations = [];
    const ops = [];
    for (const c of changes) {
        announce(c, log);
        if (c.kind === 'remove')
            continue;
        const r = registrationOf(c);
        registrations.push(r);
        if (r.staged === r.spec.name)
            continue;
        ops.push({ kind: 'register', spec: { ...r.spec, name: r.staged } });
        journal.added.push(r.staged);
    }
    if (ops.length) {
        try {
            await writer.apply(ops);
        }
        catch (e) {
            await rollback(writer, reader, journal, log);
            throw e;
        }
    }
    return registrations;
}
/** The log line that says what a change is about to do. */
function announce(c, log) {
    switch (c.kind) {
        case 'remove':
            log.info(`reset: removing ${describeEntry(c.entry)}`);
            break;
        case 'keep':
            log.info(`${c.entry.name}: already registered with ${c.entry.interpreter} and flags ${c.entry.flags}; kept`);
            break;
        case 'replace': {
            const { name, interpreter, flags } = c.wanted.spec;
            if (c.why === 'reset')
                log.info(`reset: removing ${describeEntry(c.old)}\n${name}: registering ${interpreter} with flags ${flags}`);
            else if (c.why === 'pinned')
                log.info(`${name}: registering again from the pinned file ${interpreter} (the kernel holds whatever file was there when the entry was made)`);
            else
                log.info(`${name}: replacing the existing entry (${describeEntry(c.old, false)}) with ${interpreter}, flags ${flags}`);
            break;
        }
        case 'add':
            log.info(`${c.wanted.spec.name}: registering ${c.wanted.spec.interpreter} with flags ${c.wanted.spec.flags}`);
            break;
    }
}
/** A kept entry is verified under its own name; a new one under its staging name until commit. */
function registrationOf(c) {
    const { target, spec } = c.wanted;
    if (c.kind === 'keep')
        return { target, spec, action: 'kept', staged: spec.name };
    if (c.kind === 'replace')
        return { target, spec, action: 'replaced', previous: c.old, staged: stagingName(spec.name) };
    return { target, spec, action: 'added', staged: stagingName(spec.name) };
}
/**
 * Once every new entry is verified: each staged entry takes its real name (an
 * old entry goes, the new one is registered under the name, the staging entry
 * goes: at every moment a working entry serves the target), and what `reset`
 * asked to remove goes. Throws naming what is left when the kernel refuses.
 */
async function commit(writer, reader, changes, registrations, journal, log) {
    const ops = [];
    for (const r of registrations) {
        if (r.staged === r.spec.name)
            continue;
        if (r.action === 'replaced')
            ops.push({ kind: 'remove', name: r.spec.name });
        ops.push({ kind: 'register', spec: r.spec }, { kind: 'remove', name: r.staged });
    }
    const removed = changes.flatMap(c => (c.kind === 'remove' ? [c.entry.name] : []));
    for (const name of removed)
        ops.push({ kind: 'remove', name });
    if (ops.length) {
        try {
            await writer.apply(ops);
        }
        catch (e) {
            const staged = registrations.filter(r => r.staged !== r.spec.name && reader.read(r.staged) !== undefined).map(r => r.staged);
            throw new Error(`putting the verified entries in place failed (${errors_errorMessage(e)})` +
                (staged.length ? `; ${staged.join(', ')} stay${staged.length > 1 ? '' : 's'} registered and work${staged.length > 1 ? '' : 's'}` : ''));
        }
    }
    for (const name of removed)
        log.info(`reset: removed ${name}`);
    journal.added.length = 0;
}
/**
 * Removes what this run registered and has not made final, judged by what the
 * kernel shows now (a failed batch may have stopped anywhere). Entries that were
 * there before the run were never touched. Best effort: failures are warnings.
 */
async function rollback(writer, reader, journal, log) {
    const present = journal.added.filter(n => reader.read(n) !== undefined);
    try {
        if (present.length)
            await writer.apply(present.map(name => ({ kind: 'remove', name })));
        for (const name of present)
            log.info(`rollback: removed ${name}`);
    }
    catch (e) {
        const left = journal.added.filter(n => reader.read(n) !== undefined);
        log.warning(`rollback incomplete: ${errors_errorMessage(e)}${left.length ? `; still registered: ${left.join(', ')}` : ''}`);
    }
    journal.added.length = 0;
}

;// CONCATENATED MODULE: ./src/report.ts


function checksumRows(files, p) {
    return [...files].sort((a, b) => a.name.localeCompare(b.name)).map(f => ({ line: checksumLine(f), pinned: pinnedStatus(p, f) }));
}
/** Platforms that run after the step: native ones first, then every verified emulated one. */
function availablePlatforms(o) {
    const verified = new Set(o.probes.filter(p => p.ok).map(p => p.target));
    const out = [...o.nativePlatforms];
    for (const r of o.registrations) {
        if (!verified.has(r.target))
            continue;
        for (const p of dockerPlatforms(r.target))
            if (!out.includes(p))
                out.push(p);
    }
    return out;
}
/** The run's answer: the action's outputs, the command's --json. With a builder, its platforms are the ones that run. */
function outputs(o, builder) {
    const platforms = builder?.platforms ?? availablePlatforms(o);
    const out = {
        platforms: platforms.join(','),
        // The same list, ready for a matrix: fromJSON(steps.<id>.outputs.platforms-json).
        'platforms-json': JSON.stringify(platforms),
        emulators: o.registrations.map(r => r.target.name).join(','),
        'qemu-version': o.qemuVersion,
        'cache-hit': String(o.cacheHit),
        method: o.method,
        sha256: checksumRows(o.files, o.pinning)
            .map(r => r.line)
            .join('\n'),
    };
    if (builder) {
        out.builder = builder.name;
        out.nodes = JSON.stringify(builder.nodes.map(n => ({
            name: n.name,
            endpoint: n.endpoint,
            status: n.status,
            buildkit: n.buildkit,
            platforms: n.platforms,
            remote: n.remote === true,
        })));
    }
    return out;
}
function reportRows(o, emulatorOf) {
    const rows = o.nativePlatforms.map(p => ({
        platforms: [p],
        emulator: 'native',
        qemuVersion: '',
        flags: '',
        source: 'runner',
        verified: 'yes (native)',
    }));
    for (const r of o.registrations) {
        const probe = o.probes.find(p => p.target === r.target);
        const emu = o.emulators.get(emulatorOf(r.target));
        rows.push({
            platforms: dockerPlatforms(r.target).length ? dockerPlatforms(r.target) : [`(${r.target.name})`],
            emulator: `${r.spec.name} (${r.action})`,
            qemuVersion: emu?.reportedVersion?.replace(/^qemu-\S+ version /, '') || o.qemuVersion,
            flags: r.spec.flags,
            source: emu?.origin ?? '',
            verified: probe?.ok ? 'yes' : `no: ${probe?.detail ?? 'not run'}`,
            ms: probe?.ms,
        });
    }
    return rows;
}

;// CONCATENATED MODULE: ./src/job-records.ts




/**
 * Which live jobs on this host use which qemu-* entries, so that `uninstall` in
 * one job's post step never removes an entry another running job relies on.
 * A job is the process that lives exactly as long as it: the runner's
 * Runner.Worker, else the parent of this process. A record whose process is gone
 * counts for nothing. Records can only ever keep entries registered: when they
 * cannot be read safely, uninstall keeps everything.
 */
const USAGE_DIR = '/tmp/setup-qemu-binfmt-jobs';
/** root's records: where only root can write, so no other user can block, hide or redirect them. */
const ROOT_USAGE_DIR = '/run/setup-qemu-binfmt-jobs';
/**
 * Which binfmt_misc instance a name belongs to: the device of its mount. The
 * host has one; a user namespace may mount one of its own, with other entries.
 */
function tableOf(root) {
    try {
        return String(external_fs_.statSync(root).dev);
    }
    catch {
        return '?';
    }
}
/** Field 22 of /proc/<pid>/stat (start time in clock ticks since boot); undefined when the process is gone. */
function startTime(pid) {
    try {
        const stat = external_fs_.readFileSync(`/proc/${pid}/stat`, 'utf8');
        // comm (field 2) may hold spaces and parentheses: count from its closing one.
        return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
    }
    catch {
        return undefined;
    }
}
function parentOf(pid) {
    try {
        const stat = external_fs_.readFileSync(`/proc/${pid}/stat`, 'utf8');
        return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
    }
    catch {
        return undefined;
    }
}
function commOf(pid) {
    try {
        return external_fs_.readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
    }
    catch {
        return '';
    }
}
/** USER_HZ, the unit of /proc/<pid>/stat's times: 100 on every Linux architecture this tool runs on. */
const TICKS_PER_S = 100;
/** When the process started (ms since the epoch, to the second: boot time is whole seconds); undefined when it is gone. */
function startedAtMs(pid) {
    const ticks = startTime(pid);
    const btime = /^btime (\d+)$/m.exec(readOr(() => external_fs_.readFileSync('/proc/stat', 'utf8'), ''))?.[1];
    if (ticks === undefined || btime === undefined)
        return undefined;
    return Number(btime) * 1000 + (Number(ticks) * 1000) / TICKS_PER_S;
}
function alive(job) {
    return startTime(job.pid) === job.start;
}
/** The process that lives as long as this job: the nearest Runner.Worker above us, else our parent. */
function currentJob(self = process.pid) {
    const parent = parentOf(self);
    let pid = parent;
    for (let hops = 0; pid && pid > 1 && hops < 32; hops++) {
        if (commOf(pid) === 'Runner.Worker')
            break;
        pid = parentOf(pid);
    }
    const job = pid && pid > 1 ? pid : parent;
    const start = job ? startTime(job) : undefined;
    return job && start ? { pid: job, start } : undefined;
}
// The effective uid: it owns what this process makes and decides what it may change.
const myUid = () => process.geteuid?.() ?? -1;
/** A directory nobody but root can change: a real directory owned by root, not writable by group or others. */
function rootOnly(st) {
    return st.isDirectory() && st.uid === 0 && (st.mode & 0o022) === 0;
}
/** A directory in which nobody but root can replace a root-owned name: root's, and not writable by others or sticky (/tmp). */
function rootNames(st) {
    return st.isDirectory() && st.uid === 0 && ((st.mode & 0o022) === 0 || (st.mode & 0o1000) !== 0);
}
/** Why root's records directory (or a directory above it) is not one only root can change, or undefined (also when missing). */
function rootDirProblem(dir) {
    let st;
    try {
        st = external_fs_.lstatSync(dir);
    }
    catch {
        return undefined;
    }
    if (!rootOnly(st))
        return `${dir} is not a directory only root can write (owner uid ${st.uid}, mode ${(st.mode & 0o7777).toString(8)}); remove it`;
    for (let up = external_path_.dirname(dir);; up = external_path_.dirname(up)) {
        if (!rootNames(external_fs_.statSync(up)))
            return `${up} lets users other than root replace ${dir}; make it owned by root and mode 0755`;
        if (up === external_path_.dirname(up))
            return undefined;
    }
}
/** Why the shared top directory cannot be used, or undefined (also when it is missing). */
function topProblem(dir) {
    let st;
    try {
        st = external_fs_.lstatSync(dir);
    }
    catch {
        return undefined;
    }
    return st.isDirectory() ? undefined : `${dir} is not a directory; remove it`;
}
/**
 * Which uids (as directory names give them, uids of the parent namespace) are mapped into this
 * process's user namespace: all in the initial one. Files of an unmapped user show as owned by
 * the overflow uid here, so their ownership could not be checked.
 */
function mappedUids() {
    const map = readOr(() => external_fs_.readFileSync('/proc/self/uid_map', 'utf8'), '');
    const ranges = map
        .trim()
        .split('\n')
        .map(l => l.trim().split(/\s+/).map(Number))
        .filter(r => r.length === 3 && r.every(Number.isFinite));
    // Unreadable: assume mapped, so that a directory that cannot be checked keeps entries (fail safe).
    if (!ranges.length)
        return () => true;
    return uid => ranges.some(([, outside, count]) => uid >= outside && uid < outside + count);
}
/** Why a user's record directory cannot be trusted to hold all of that user's records, or undefined. */
function userDirProblem(dir, uid, top) {
    const st = external_fs_.lstatSync(dir);
    if (!st.isDirectory() || st.uid !== uid || (st.mode & 0o022) !== 0)
        return `${dir} is not a directory of uid ${uid} that only it can write (owner uid ${st.uid}); remove it (only its owner or root can)`;
    // The top directory's owner can rename anything in it, sticky bit or not: it could hide this user's records.
    if (top.uid !== 0 && top.uid !== uid)
        return `${external_path_.dirname(dir)} belongs to uid ${top.uid}, who could remove uid ${uid}'s records; remove it (as root)`;
    return undefined;
}
/** Opens a directory itself, never what a symlink swapped in for it points to. */
function openDir(dir) {
    return external_fs_.openSync(dir, external_fs_.constants.O_RDONLY | external_fs_.constants.O_DIRECTORY | external_fs_.constants.O_NOFOLLOW);
}
/** mkdir, then the mode umask trimmed, set on the directory made (by descriptor): false when it existed. */
function makeDir(dir, mode) {
    try {
        external_fs_.mkdirSync(dir, { mode });
    }
    catch (e) {
        if (e.code === 'EEXIST')
            return false;
        throw e;
    }
    const fd = openDir(dir);
    try {
        if (external_fs_.fstatSync(fd).uid === myUid())
            external_fs_.fchmodSync(fd, mode);
    }
    finally {
        external_fs_.closeSync(fd);
    }
    return true;
}
const ENTRY_NAME = /^\d+$/;
/**
 * Records live in one directory per user (`<dir>/<uid>/<pid>-<start>.json`):
 * root's under /run, where only root can write; every other user's under a
 * shared top directory in /tmp, where each writes only its own. Readers read
 * both; a user directory that cannot be trusted makes the records unknown
 * (uninstall then keeps everything), never silently empty. Nothing is ever
 * chowned or chmodded by path where another user can write.
 */
class UsageRecords {
    table;
    dir;
    rootDir;
    /** `table`: the binfmt_misc instance the names belong to (tableOf); `dir`, `rootDir`: the two areas (tests use their own) */
    constructor(table, dir = USAGE_DIR, rootDir = ROOT_USAGE_DIR) {
        this.table = table;
        this.dir = dir;
        this.rootDir = rootDir;
    }
    key(entry) {
        return `${this.table}/${entry}`;
    }
    get own() {
        return myUid() === 0 ? this.rootDir : external_path_.join(this.dir, String(myUid()));
    }
    /** Why the records cannot be used (then uninstall and reset keep everything), or undefined. */
    problem() {
        return rootDirProblem(this.rootDir) ?? topProblem(this.dir);
    }
    ensureDirs() {
        if (myUid() === 0) {
            this.adoptTop();
            const problem = rootDirProblem(this.rootDir);
            if (problem)
                throw new Error(problem);
            // /run is missing in some containers; only root can make it in /.
            external_fs_.mkdirSync(external_path_.dirname(this.rootDir), { recursive: true, mode: 0o755 });
            makeDir(this.rootDir, 0o755);
            const again = rootDirProblem(this.rootDir);
            if (again)
                throw new Error(again);
            return;
        }
        const problem = topProblem(this.dir);
        if (problem)
            throw new Error(problem);
        // Every runner user must be able to add its own directory.
        makeDir(this.dir, 0o1777);
        makeDir(this.own, 0o755);
        const why = userDirProblem(this.own, myUid(), external_fs_.lstatSync(this.dir));
        if (why)
            throw new Error(why);
    }
    /**
     * root takes over a shared top directory another user made first, so that its owner cannot hide other users'
     * records; by descriptor, so a symlink swapped in for it is never followed (it fails to open and stays as it is).
     */
    adoptTop() {
        let fd;
        try {
            fd = openDir(this.dir);
        }
        catch {
            return;
        }
        try {
            if (external_fs_.fstatSync(fd).uid !== 0) {
                external_fs_.fchownSync(fd, 0, 0);
                external_fs_.fchmodSync(fd, 0o1777);
            }
        }
        finally {
            external_fs_.closeSync(fd);
        }
    }
    file(job) {
        return external_path_.join(this.own, `${job.pid}-${job.start}.json`);
    }
    /** Adds `entries` to the job's record. Throws, naming the directory at fault, when it cannot be written safely. */
    add(job, entries) {
        this.ensureDirs();
        const mine = this.read(this.file(job));
        const all = [...new Set([...(mine?.entries ?? []), ...entries.map(e => this.key(e))])].sort();
        const record = { pid: job.pid, start: job.start, entries: all };
        // Written aside and renamed: a reader never sees half a record, and nothing at the final name is followed.
        const tmp = external_path_.join(this.own, `.${job.pid}-${(0,external_crypto_.randomBytes)(6).toString('hex')}`);
        const fd = external_fs_.openSync(tmp, external_fs_.constants.O_WRONLY | external_fs_.constants.O_CREAT | external_fs_.constants.O_EXCL | external_fs_.constants.O_NOFOLLOW, 0o644);
        try {
            // Readable by every user's uninstall whatever the umask: an unreadable record would hide this job.
            external_fs_.fchmodSync(fd, 0o644);
            external_fs_.writeSync(fd, JSON.stringify(record));
        }
        finally {
            external_fs_.closeSync(fd);
        }
        external_fs_.renameSync(tmp, this.file(job));
    }
    /** Forgets the job's record (its post step is done with it); only ever in this user's own directory, and only when it is safe. */
    remove(job) {
        const own = () => topProblem(this.dir) ?? userDirProblem(this.own, myUid(), external_fs_.lstatSync(this.dir));
        const unsafe = myUid() === 0 ? rootDirProblem(this.rootDir) : readOr(own, 'missing');
        if (!unsafe)
            external_fs_.rmSync(this.file(job), { force: true });
    }
    /** A record; undefined when it is gone or not one. Throws when it cannot be read (it could be a live job's). */
    read(file) {
        let text;
        try {
            const st = external_fs_.lstatSync(file);
            if (!st.isFile() || st.size > 65536)
                return undefined;
            text = external_fs_.readFileSync(file, 'utf8');
        }
        catch (e) {
            if (e.code === 'ENOENT')
                return undefined;
            throw new Error(`${file} cannot be read (${errnoMessage(e)})`);
        }
        try {
            const r = JSON.parse(text);
            if (typeof r.pid !== 'number' || typeof r.start !== 'string' || !Array.isArray(r.entries))
                return undefined;
            return { pid: r.pid, start: r.start, entries: r.entries.filter(e => typeof e === 'string') };
        }
        catch {
            return undefined;
        }
    }
    /** The records of one user's directory: live ones; this user's dead ones are dropped on the way. */
    readDir(dir, uid) {
        let names;
        try {
            names = external_fs_.readdirSync(dir)
                .filter(n => n.endsWith('.json'))
                .slice(0, 10000);
        }
        catch (e) {
            if (e.code === 'ENOENT')
                return [];
            throw new Error(`${dir} cannot be read (${errnoMessage(e)})`);
        }
        const out = [];
        for (const n of names) {
            const r = this.read(external_path_.join(dir, n));
            if (!r)
                continue;
            if (alive(r))
                out.push(r);
            else if (uid === myUid())
                external_fs_.rmSync(external_path_.join(dir, n), { force: true });
        }
        return out;
    }
    /**
     * The live jobs other than `self` that use `entry`. Dead jobs' records count
     * for nothing. Throws when any records could be missing: a directory that is
     * not safe, or that another user could have emptied; the throw names it.
     */
    users(entry, self) {
        const problem = this.problem();
        if (problem)
            throw new Error(problem);
        const records = this.readDir(this.rootDir, 0);
        let top;
        let uids = [];
        try {
            top = external_fs_.lstatSync(this.dir);
            uids = external_fs_.readdirSync(this.dir).filter(n => ENTRY_NAME.test(n));
        }
        catch (e) {
            if (e.code !== 'ENOENT')
                throw new Error(`${this.dir} cannot be read (${errnoMessage(e)})`);
        }
        const mappedHere = mappedUids();
        for (const uid of uids) {
            // A user this user namespace does not map runs outside it, where this namespace's binfmt_misc does not apply.
            if (!mappedHere(Number(uid)))
                continue;
            // A "0" here is an older version's root records (or another user's pretending to be).
            const dir = external_path_.join(this.dir, uid);
            const why = userDirProblem(dir, Number(uid), top);
            if (why)
                throw new Error(why);
            records.push(...this.readDir(dir, Number(uid)));
        }
        return records
            .filter(r => !(self && r.pid === self.pid && r.start === self.start) && r.entries.includes(this.key(entry)))
            .map(r => ({ pid: r.pid, start: r.start }));
    }
}

;// CONCATENATED MODULE: ./src/staging.ts


/** A process that started this soon after the entry still counts as its maker: boot time is known to the second. */
const SLACK_MS = 2000;
/**
 * Who staged `name`, when it is a staging name, and whether that run still
 * runs: a process with its pid lives and started before the entry was made (a
 * later process that got the same pid is not that run). When the entry's age
 * cannot be read (a table seen through a container), a live pid counts as the
 * run. A run in another pid namespace (a container job) cannot be seen from
 * here: its entries count as abandoned.
 */
function stagingOf(reader, name) {
    const pid = stagedBy(name);
    if (pid === undefined)
        return undefined;
    const started = startedAtMs(pid);
    if (started === undefined)
        return { pid, running: false };
    const made = reader.madeAtMs(name);
    return { pid, running: made === undefined || started <= made + SLACK_MS };
}
/** The staging entries in the table whose runs are gone. */
function abandonedStaging(reader) {
    if (!reader.mounted())
        return [];
    return reader.names().filter(n => stagingOf(reader, n)?.running === false);
}

;// CONCATENATED MODULE: ./src/buildx/plugin.ts
// `docker buildx ...` costs a run of docker and, before the plugin itself, a run of the plugin's
// metadata command (docker checks every candidate it finds): ~40 ms a command on a 2-core runner,
// on the builder's way twice (create, the read after the emulators). Where only one buildx plugin
// could be the one docker runs, the builder step runs it directly, as buildx runs standalone.




/** Where docker's CLI looks for plugins after its config directory's cli-plugins (Linux). */
const SYSTEM_PLUGIN_DIRS = [
    '/usr/local/lib/docker/cli-plugins',
    '/usr/local/libexec/docker/cli-plugins',
    '/usr/lib/docker/cli-plugins',
    '/usr/libexec/docker/cli-plugins',
];
/** Set by docker for a plugin it runs; a plugin that sees it expects docker's argv, not ours. */
const PLUGIN_REEXEC = 'DOCKER_CLI_PLUGIN_ORIGINAL_CLI_COMMAND';
/**
 * Docker client settings that decide how the daemon is reached. buildx run standalone before v0.23
 * ignored the TLS ones (docker reads them as its flags' defaults): with any of these set, or a daemon
 * that is not at a unix socket, buildx goes through docker.
 */
const CLIENT_SETTINGS = ['DOCKER_TLS', 'DOCKER_TLS_VERIFY', 'DOCKER_CERT_PATH', 'DOCKER_CONTEXT'];
/** docker's config.json is small; anything larger is not read. */
const MAX_CONFIG_BYTES = 1 << 20;
/**
 * The buildx plugin `docker buildx` would run, when that is beyond doubt: exactly one
 * docker-buildx in docker's plugin directories, an executable file; a daemon reached the default
 * way (no TLS or context settings, a unix socket); a docker config, if any, that nobody else could
 * change and that names no extra plugin directories (their order against the others has changed
 * between docker releases) or other current context; and nobody but this user or root able to swap
 * the program (the file, and every directory from where it is found to where its symlinks lead).
 * The path returned is the program's real path: what was checked is what runs. Otherwise `why`:
 * the builder step then runs `docker buildx` as usual.
 */
function findBuildxPlugin(env, uid, systemDirs = SYSTEM_PLUGIN_DIRS) {
    try {
        return lookup(env, uid, systemDirs);
    }
    catch (e) {
        // No home directory to be found, say: docker buildx works as well through docker.
        return { why: e.message };
    }
}
function lookup(env, uid, systemDirs) {
    if (env[PLUGIN_REEXEC])
        return { why: `${PLUGIN_REEXEC} is set` };
    const setting = CLIENT_SETTINGS.find(v => env[v]);
    if (setting)
        return { why: `${setting} is set` };
    if (env.DOCKER_HOST && !env.DOCKER_HOST.startsWith('unix://'))
        return { why: 'DOCKER_HOST is not a unix socket' };
    const configDir = external_path_.resolve(env.DOCKER_CONFIG || external_path_.join(env.HOME || external_os_.homedir(), '.docker'));
    const config = configDoubt(configDir, uid);
    if (config)
        return { why: config };
    // Anything of that name counts: docker takes the first it finds, whether it works or not.
    const found = [external_path_.join(configDir, 'cli-plugins'), ...systemDirs].map(d => external_path_.join(d, 'docker-buildx')).filter(present);
    if (found.length !== 1)
        return { why: found.length ? `more than one buildx plugin: ${found.join(', ')}` : 'no buildx plugin in the usual directories' };
    if (!executable(found[0]))
        return { why: `${found[0]} is not an executable file` };
    return checkedPath(found[0], uid);
}
/** Why docker's config directory makes the lookup uncertain, or undefined (a missing one is docker's default). */
function configDoubt(dir, uid) {
    if (!present(dir))
        return undefined;
    const others = (0,compile_cache/* othersMayChange */.RT)(dir, uid);
    if (others)
        return `docker's config directory: ${others}`;
    const file = external_path_.join(dir, 'config.json');
    let text;
    try {
        text = readSmallFile(file);
    }
    catch (e) {
        return e.code === 'ENOENT' ? undefined : `${file} cannot be read (${e.message})`;
    }
    let config;
    try {
        config = JSON.parse(text);
    }
    catch {
        return `${file} is not JSON`;
    }
    // Docker's JSON decoding matches keys whatever their case.
    const value = (key) => Object.entries(config ?? {}).find(([k]) => k.toLowerCase() === key.toLowerCase())?.[1];
    const extra = value('cliPluginsExtraDirs');
    if (Array.isArray(extra) && extra.length)
        return `${file} names cliPluginsExtraDirs`;
    const context = value('currentContext');
    if (typeof context === 'string' && context && context !== 'default')
        return `${file} makes ${context} the current context`;
    return undefined;
}
/** A regular file of at most MAX_CONFIG_BYTES, read without waiting on a FIFO or following a symlink. */
function readSmallFile(file) {
    const fd = external_fs_.openSync(file, external_fs_.constants.O_RDONLY | external_fs_.constants.O_NONBLOCK | external_fs_.constants.O_NOFOLLOW);
    try {
        const st = external_fs_.fstatSync(fd);
        if (!st.isFile())
            throw new Error('not a regular file');
        if (st.size > MAX_CONFIG_BYTES)
            throw new Error(`larger than ${MAX_CONFIG_BYTES} bytes`);
        const buf = Buffer.alloc(st.size);
        const n = external_fs_.readSync(fd, buf, 0, st.size, 0);
        return buf.subarray(0, n).toString('utf8');
    }
    finally {
        external_fs_.closeSync(fd);
    }
}
function present(file) {
    try {
        external_fs_.lstatSync(file);
        return true;
    }
    catch {
        return false;
    }
}
function executable(file) {
    try {
        const st = external_fs_.statSync(file);
        return st.isFile() && (st.mode & 0o111) !== 0;
    }
    catch {
        return false;
    }
}
/**
 * `file`'s real path, when nobody but `uid` or root could change what runs there: the directory it is
 * found in, every link on the way and the directory each lies in, and the program itself.
 */
function checkedPath(file, uid) {
    let at = file;
    for (let hops = 0;; hops++) {
        const why = (0,compile_cache/* othersMayChange */.RT)(external_path_.dirname(at), uid);
        if (why)
            return { why };
        const st = external_fs_.lstatSync(at);
        if (!st.isSymbolicLink()) {
            const program = (0,compile_cache/* othersMayChangeFile */.hO)(at, st, uid);
            return program ? { why: program } : { path: at };
        }
        if (st.uid !== uid && st.uid !== 0)
            return { why: `${at} is a symlink of uid ${st.uid}` };
        if (hops > 16)
            return { why: `${file}: too many symlinks` };
        at = external_path_.resolve(external_path_.dirname(at), external_fs_.readlinkSync(at));
    }
}

;// CONCATENATED MODULE: ./src/setup.ts
// The engine: inputs -> plan -> fetch emulators -> register -> verify -> builder -> outputs.
// Both faces call it: the action's main step (src/action) and the command's install and run
// (src/cli). It talks to neither: what it has to say goes through `io`, what it found is its
// return value, and what a later clean-up needs is handed over as soon as it is known.























/** The place of a runner, or of a user's own machine off a runner. */
function runnerPlace(env) {
    return { tempRoot: env.RUNNER_TEMP || external_os_.tmpdir(), toolCache: env.RUNNER_TOOL_CACHE || localToolCache(env), env };
}
/**
 * setup() as both faces run it: in a scratch directory of its own, stopped by SIGINT or SIGTERM.
 * A failure is one line to `fail` (a cancellation says so), with its stack at debug level when it is
 * not an error the user can fix; then the result is undefined. Should a cancelled run's clean-up
 * overrun its grace, `fail` says so and the process exits (with the scratch directory removed).
 */
async function runSetup(inputs, place, io, fail) {
    const cancel = new AbortController();
    // Every child of the run listens for it (dozens of probes at once with platforms: all).
    (0,external_events_.setMaxListeners)(0, cancel.signal);
    let temp;
    const removeTemp = () => {
        if (temp)
            external_fs_.rmSync(temp, { recursive: true, force: true });
    };
    const stopWatching = watchCancellation(cancel, io.log, signal => {
        removeTemp();
        fail(`cancelled (${signal}) and the clean-up did not finish in time`);
    });
    try {
        external_fs_.mkdirSync(place.tempRoot, { recursive: true });
        temp = external_fs_.mkdtempSync(external_path_.join(place.tempRoot, 'setup-qemu-binfmt-'));
        const result = await setup(inputs, { temp, toolCache: place.toolCache, env: place.env, cancel: cancel.signal }, io);
        io.log.debug(`timings ${JSON.stringify(result.timings)}`);
        return result;
    }
    catch (e) {
        fail(failureOf(e, cancel.signal));
        if (!(e instanceof errors_ActionError) && e instanceof Error && e.stack)
            io.log.debug(e.stack);
        return undefined;
    }
    finally {
        removeTemp();
        stopWatching();
    }
}
/** Where emulators are kept off a runner: the user's cache directory. */
function localToolCache(env) {
    return external_path_.join(env.XDG_CACHE_HOME || external_path_.join(external_os_.homedir(), '.cache'), 'setup-qemu-binfmt', 'tool-cache');
}
/** Each phase's time, measured where it runs. */
class Timings {
    ms = {};
    started = performance.now();
    async time(phase, step) {
        const t = performance.now();
        try {
            return await step();
        }
        finally {
            this.ms[phase] = performance.now() - t;
        }
    }
    done() {
        this.ms.total = performance.now() - this.started;
        return this.ms;
    }
}
/** The run. Bad inputs were refused before (readInputs); every failure here is one ActionError, with nothing of this run's left half-done. */
async function setup(inputs, at, io) {
    const { log } = io;
    const timings = new Timings();
    // Downloads, probes and the builder stop on cancellation; kernel writes are short and always finish, so that the rollback can run.
    const runs = new ChildProcessRunner(at.cancel);
    const writes = new ChildProcessRunner();
    const host = detectHost();
    // A template that names no emulator file is a bad input: refused before anything is touched.
    const source = resolveSource(inputs.qemuUrl, inputs.qemuVersion, host.arch);
    // Before anything names the source: a credential in qemu-url never reaches a log.
    if (!source.local)
        for (const s of httpTarget(source.locate('x')).secrets)
            log.secret(s);
    // The user's qemu-sha256, or the built-in digest of the default release's asset.
    const pins = pinning(inputs, host.arch);
    // Started now, so that the builder's image pull, container create and boot overlap the emulator steps.
    const builder = startBuilderStep(inputs, at, io);
    let outcome;
    try {
        if (inputs.builder.mode === 'true') {
            // No buildx plugin under buildx: true fails the step before anything is downloaded.
            const missing = await timings.time('preflight', () => builder.start.preflight);
            if (missing)
                throw missing;
        }
        outcome = await emulatorSteps(inputs, { host, source, pins }, at, io, timings, { runs, writes });
    }
    catch (e) {
        // The builder this step started goes with the emulators that failed: its start is stopped
        // (a pull or boot of minutes is not waited for), and what it made is removed.
        builder.stop();
        if (inputs.builder.mode !== 'false')
            await io.group('buildx builder', () => abandonBuilder(builder.start));
        if (inputs.builder.cleanup)
            io.handoff.builder(undefined);
        throw e;
    }
    const result = await timings.time('builder', () => io.group('buildx builder', () => finishBuilderStep(builder.start, inputs, outcome, io, timings)));
    const out = outputs(outcome, result);
    log.info(`Platforms available: ${out.platforms}`);
    return { outcome, builder: result, outputs: out, timings: timings.done() };
}
/** access -> native platforms and the plan -> fetch -> register and verify: the emulators, proven where they apply. */
async function emulatorSteps(inputs, { host, source, pins }, at, io, timings, { runs, writes }) {
    const { log } = io;
    const access = await timings.time('access', () => io.group('Access to binfmt_misc', () => chooseAccess({ mode: inputs.installMode, dockerImage: inputs.dockerImage, writes, runs, env: at.env, log })));
    if (!access.hidden)
        checkBinfmtEnabled(access.reader);
    const { plan, native } = await timings.time('native', () => io.group('Native platforms', () => planFor(inputs, host, access, at, runs, log)));
    const fetched = await fetchStep(inputs, source, host, pins, plan, at, io, timings);
    const targets = plan.foreignTargets([...fetched.emulators.keys()]);
    log.info(`Emulators to register: ${targets.map(x => x.name).join(', ') || 'none'}`);
    const wanted = targets.map(target => ({ target, spec: entrySpec(inputs, target, fetched, access.writer) }));
    const { registrations, probes } = await registerAndVerify(inputs, pins.list.size > 0, access, wanted, at, io, timings);
    return {
        nativePlatforms: native,
        registrations,
        emulators: fetched.emulators,
        probes,
        qemuVersion: fetched.version ?? inputs.qemuVersion,
        cacheHit: fetched.cacheHit,
        method: access.writer.method,
        scope: access.scope,
        files: fetched.files,
        pinning: pins,
    };
}
/** What runs natively (in a user namespace: there, where its engine's containers run), and the plan that leaves the rest to emulators. */
async function planFor(inputs, host, access, at, runs, log) {
    const { native, amd64Level, tried } = await probeNative(host, access.reader, at.temp, access.probes, log.info);
    await checkTempExecutable(host, at.temp, shellProbes(runs), tried, log);
    const plan = new Plan(host, inputs.platforms, native);
    const platforms = nativePlatforms(host, native, amd64Level);
    log.info(`This ${host.arch} runner runs natively: ${platforms.join(', ')}`);
    for (const t of plan.requestedNative())
        log.info(`${label(t)} runs natively on this runner; not registering an emulator`);
    return { plan, native: platforms };
}
/** The emulators the plan needs, checked against the pins; nothing to fetch when only native platforms are asked for. */
async function fetchStep(inputs, source, host, pins, plan, at, io, timings) {
    if (inputs.platforms.kind === 'list' && plan.foreignTargets([]).length === 0) {
        return { emulators: new Map(), cacheHit: false, from: 'local', timings: { download: 0, extract: 0 }, files: [] };
    }
    const { log } = io;
    const fetched = await timings.time('fetch', () => io.group('Emulators', () => fetchEmulators({
        source,
        version: inputs.qemuVersion,
        host: host.arch,
        sha256: pins.list,
        cache: inputs.cache,
        want: plan.emulatorWant(),
        selectionKey: plan.selectionKey(),
        tempDir: at.temp,
        toolCache: at.toolCache,
        network: at.network,
        signal: at.cancel,
        log,
    }).catch(e => {
        throw explainPinFailure(pins, e);
    })));
    Object.assign(timings.ms, fetched.timings);
    for (const r of checksumRows(fetched.files, pins))
        log.info(`qemu-sha256 line: ${r.line} (${r.pinned})`);
    // Saved after this step (the action's post step), so this step's time is what the job needs.
    if (fetched.pendingSave)
        io.handoff.cacheSave(fetched.pendingSave);
    return fetched;
}
/**
 * Under the host-wide lock: reads the table, registers the new entries beside
 * the old ones, verifies them, and only then puts them in place. A failure or a
 * cancellation before that removes what this run added; every entry that was
 * there before the run is untouched until the new one is proven.
 */
async function registerAndVerify(inputs, 
/** the emulators were checked against digests: entries are registered from them, never kept by path */
pinned, access, wanted, at, io, timings) {
    if (!wanted.length && !inputs.reset)
        return { registrations: [], probes: [] };
    const { log } = io;
    const { writer, reader } = access;
    const lock = await HostLock.acquire({ timeoutMs: inputs.lockTimeoutMs, cancel: at.cancel, log: log.info });
    const journal = new Journal();
    try {
        if (!access.hidden)
            await removeAbandonedStaging(writer, reader, log);
        const job = currentJob();
        const records = new UsageRecords(tableOf(reader.root));
        const inUse = (name) => {
            let users;
            try {
                users = records.users(name, job);
            }
            catch (e) {
                // Records that cannot be trusted could hide a live job: keep what it might use.
                log.info(`reset: keeping ${name}: which jobs use it cannot be told (${errors_errorMessage(e)})`);
                return true;
            }
            if (users.length)
                log.info(`reset: keeping ${name}: the running job of process ${users.map(u => u.pid).join(', ')} uses it`);
            return users.length > 0;
        };
        const changes = planChanges(reader.mounted() ? reader.list() : [], wanted, { reset: inputs.reset, pinned, inUse });
        const registrations = await timings.time('register', () => io.group(`Register ${writer.how}`, () => applyChanges(writer, reader, changes, journal, log)));
        const probes = await timings.time('verify', () => io.group('Verify', async () => {
            const results = await access.verify(registrations, at.temp);
            for (const p of results)
                log.info(`${p.target.name}: ${p.ok ? 'ok' : p.detail} (${p.ms.toFixed(1)} ms)`);
            return results;
        }));
        const failed = probes.filter(p => !p.ok);
        if (failed.length)
            throw verificationError(failed, registrations);
        if (at.cancel.aborted)
            throw new CancelledError();
        await commit(writer, reader, changes, registrations, journal, log);
        recordUsage(inputs, writer, registrations, job, records, io);
        return { registrations, probes };
    }
    catch (e) {
        if (!journal.empty)
            await io.group('Rollback', () => rollback(writer, reader, journal, log));
        throw e;
    }
    finally {
        await lock.release();
    }
}
/**
 * Staging entries whose run died (SIGKILL) before it could remove them; only their owner would, and it is gone.
 * One under our own pid is a dead run's too (pids repeat, in containers every time): this run has staged nothing yet.
 */
async function removeAbandonedStaging(writer, reader, log) {
    if (!reader.mounted())
        return;
    const abandoned = [...new Set([...abandonedStaging(reader), ...reader.names().filter(n => stagedBy(n) === process.pid)])].sort();
    if (!abandoned.length)
        return;
    log.info(`Removing entries left by runs that were killed before they finished: ${abandoned.join(', ')}`);
    await writer.apply(abandoned.map(name => ({ kind: 'remove', name })));
}
/** Tells other jobs' uninstall that this job uses these entries; and hands over what uninstall would undo. */
function recordUsage(inputs, writer, registrations, job, records, io) {
    const names = registrations.map(r => r.spec.name);
    if (job && names.length) {
        try {
            records.add(job, names);
        }
        catch (e) {
            // Fail safe only where other jobs see the same fault (they then keep every entry): say so loudly.
            io.log.warning(`could not record that this job uses ${names.join(', ')}, so another job's uninstall may remove them while this job runs: ${errors_errorMessage(e)}`);
        }
    }
    if (inputs.uninstall) {
        io.handoff.uninstall({
            method: writer.method,
            dockerImage: inputs.dockerImage,
            job,
            entries: registrations.filter(r => r.action !== 'kept').map(r => ({ spec: r.spec, previous: r.previous })),
        });
    }
}
/**
 * The probes and the emulators' checks run from the scratch directory: a noexec mount there would look like broken emulators.
 * A native-detection probe the kernel got to load (it ran, or its format was refused) already shows that programs
 * may run there; only when none was tried does the host's own probe run.
 */
async function checkTempExecutable(host, temp, probes, tried, log) {
    const refused = (p) => !p.ok && /EACCES|EPERM/.test(p.detail);
    if (tried.some(p => !refused(p)))
        return;
    const r = tried.find(refused) ?? (await runProbes([host.target], temp, probes))[0];
    if (r.ok)
        return;
    if (refused(r)) {
        throw new errors_ActionError(`RUNNER_TEMP (${external_path_.dirname(temp)}) does not allow running programs (${r.detail}; is it mounted noexec?); set RUNNER_TEMP to a directory on a file system that allows exec`);
    }
    log.debug(`the native test program did not run as expected in ${temp}: ${r.detail}`);
}
function checkBinfmtEnabled(reader) {
    if (reader.mounted() && !reader.enabled()) {
        throw new errors_ActionError(`binfmt_misc is disabled for the whole host (${reader.root}/status says disabled), so no emulator can run; ` +
            `enable it with 'echo 1 | sudo tee ${reader.root}/status' (this action does not change that switch)`);
    }
}
function entrySpec(inputs, target, fetched, writer) {
    const emulator = fetched.emulators.get(emulatorName(target));
    if (!emulator)
        throw new Error(`no emulator fetched for ${target.name}`);
    return {
        name: `qemu-${target.name}`,
        offset: 0,
        magic: target.magic,
        mask: target.mask,
        interpreter: writer.interpreterFor(emulator.path),
        flags: `${inputs.preserveArgv0 ? 'P' : ''}${inputs.credential ? 'C' : ''}F`,
    };
}
function verificationError(failed, registrations) {
    // Entries that were already exactly right before this step are not this run's to remove.
    const kept = failed.filter(p => registrations.some(r => r.target === p.target && r.action === 'kept')).map(p => `qemu-${p.target.name}`);
    const left = kept.length ? `; ${kept.join(', ')} ${kept.length > 1 ? 'were' : 'was'} registered before this step and left as it was` : '';
    return new errors_ActionError(`verification failed for ${failed.map(p => `${label(p.target)}: ${p.detail}`).join('; ')}; ` +
        `the entries this run made were removed${left} - try another qemu-version or drop the platform`);
}
function label(t) {
    const p = dockerPlatforms(t);
    return p.length ? `${p[0]} (qemu-${t.name})` : `qemu-${t.name}`;
}
/**
 * Starts getting the builder (buildx: true or auto); a builder it creates is handed over for removal
 * at once (cleanup: true), so that a step that dies before the finish still has it removed. The start
 * stops on the step's cancellation, and on `stop` (the emulator step failed: no builder is wanted).
 */
function startBuilderStep(inputs, at, io) {
    const { cleanup, ...opts } = inputs.builder;
    const onCreated = cleanup ? (state) => io.handoff.builder(state) : undefined;
    const stopped = new AbortController();
    const follow = () => stopped.abort(at.cancel.reason);
    if (at.cancel.aborted)
        follow();
    else
        at.cancel.addEventListener('abort', follow, { once: true });
    // A half-made builder is removed even when the start is stopped (as the rollback of entries is): the removal runner is never cancelled.
    const buildxPlugin = opts.mode === 'false' ? undefined : findBuildxPlugin(at.env, process.geteuid?.() ?? -1);
    const start = startBuilder({ ...opts, tempDir: at.temp, cancel: stopped.signal, onCreated, buildxPlugin }, new ChildProcessRunner(stopped.signal), io.log, new ChildProcessRunner());
    return { start, stop: () => stopped.abort('the emulator step failed') };
}
/**
 * Reads the started builder's platforms once the emulators are registered and verified (BuildKit
 * lists emulators registered after it booted), held against what runs here. Under buildx: auto a
 * builder that cannot be had is a warning and no result: the outputs then come from the emulators
 * alone. The emulators are verified and stay whatever happens here.
 */
async function finishBuilderStep(builder, inputs, outcome, io, timings) {
    const platforms = availablePlatforms(outcome);
    const emulated = platforms.filter(p => !outcome.nativePlatforms.includes(p));
    // Without a state the start's builder, if it made one, is gone again: the finish removed it on a
    // failure, a cancellation, or a builder that could not be had under buildx: auto.
    let state;
    try {
        const finished = await finishBuilder(builder, platforms, emulated);
        Object.assign(timings.ms, finished.timings);
        state = finished.state;
        if (finished.result)
            io.log.info(`Builder ${finished.result.name} (${finished.result.driver}): ${finished.result.platforms.join(', ')}`);
        return finished.result;
    }
    catch (e) {
        if (e instanceof CancelledError)
            throw e;
        throw new errors_ActionError(`${errors_errorMessage(e)} (the emulators were registered and verified, and stay: ${outcome.registrations.map(r => r.spec.name).join(', ') || 'none'})`);
    }
    finally {
        if (inputs.builder.cleanup)
            io.handoff.builder(state);
    }
}

;// CONCATENATED MODULE: ./src/action/core.ts
// @actions/core, loaded once the run is under way rather than with the action: loading it takes
// ~45 ms on a 2-core runner (it brings @actions/http-client, undici, tls and http2, for OIDC tokens
// this action never asks for), half of what stood between Node starting and the builder's first
// command. What the action says before it is loaded waits, in order; inputs and step state are read
// from the environment, where the runner puts them and where @actions/core reads them.
let loaded;
let loading;
const waiting = [];
/** Loads @actions/core (once); what waited for it is done first, in the order it was asked for. */
function loadCore() {
    loading ??= Promise.all(/* import() */[__webpack_require__.e(942), __webpack_require__.e(838)]).then(__webpack_require__.bind(__webpack_require__, 3838)).then(core => {
        loaded = core;
        for (const f of waiting.splice(0)) {
            // One that fails (a file command the runner's disk refused) does not take the rest with it.
            try {
                f(core);
            }
            catch (e) {
                core.setFailed(`writing to the runner failed: ${e instanceof Error ? e.message : String(e)}`);
            }
        }
        return core;
    });
    return loading;
}
/** Does `f` with @actions/core now if it is loaded, else when loadCore has loaded it. */
function withCore(f) {
    if (loaded)
        f(loaded);
    else
        waiting.push(f);
}
/** An input as core.getInput reads it: INPUT_<NAME> (spaces as _, upper case), trimmed; '' when unset. */
function input(name) {
    return (process.env[`INPUT_${name.replace(/ /g, '_').toUpperCase()}`] ?? '').trim();
}
/** A value the main step saved, as core.getState reads it: STATE_<name>; '' when unset. */
function savedState(name) {
    return process.env[`STATE_${name}`] ?? '';
}

;// CONCATENATED MODULE: ./src/log.ts
/** Bytes as MB with one decimal, as progress is shown. */
const mb = (n) => (n / 1048576).toFixed(1);
/** `Downloading <url>: 12.3 of 88.0 MB` (`?` when the server did not say the size). */
function progressLine(p) {
    return `Downloading ${p.shown}: ${mb(p.bytes)} of ${Number.isFinite(p.declared) ? mb(p.declared) : '?'} MB`;
}
/** A log that says nothing: for steps whose words a caller does not want (the command's own access checks). */
const silentLog = {
    info: () => undefined,
    debug: () => undefined,
    warning: () => undefined,
    notice: () => undefined,
    progress: () => undefined,
    secret: () => undefined,
};

;// CONCATENATED MODULE: ./src/action/state.ts




// The runner's step state is the only channel from main to post; these are its names, used nowhere else.
const IS_POST = 'isPost';
const BUILDER = 'builder';
const CACHE = 'emulator-cache';
const UNINSTALL = 'uninstall';
/** Saved for the post step (written once @actions/core is loaded: before the main step ends). */
function state_save(name, value) {
    withCore(core => core.saveState(name, value));
}
/** JSON saved by this action's own main step; undefined when nothing was saved, an error when it cannot be read. */
function readJson(name) {
    const raw = savedState(name);
    if (!raw)
        return undefined;
    try {
        return JSON.parse(raw);
    }
    catch {
        throw new Error(`the state '${name}' the main step saved is not JSON`);
    }
}
/** What the main step hands the post step, typed: the one place that reads or writes the step state. */
const stepState = {
    /** action.yml runs the same file for both phases: true in the post phase (main marked it). */
    isPost: () => savedState(IS_POST) === 'true',
    /**
     * Written at once, not when @actions/core is loaded: a main step stopped in its first milliseconds (a
     * cancelled job's SIGINT) must still leave its post step knowing it is the post step, not run main again.
     * `name=value` is the runner's one-line file-command format; without the file, core's command is queued.
     */
    markMainRan: () => {
        const file = process.env.GITHUB_STATE;
        if (file)
            external_fs_.appendFileSync(file, `${IS_POST}=true${external_os_.EOL}`);
        else
            state_save(IS_POST, 'true');
    },
    /** the engine's handoff, saved as the step state */
    handoff: {
        cacheSave: (pending) => state_save(CACHE, JSON.stringify(pending)),
        builder: (state) => state_save(BUILDER, state ? JSON.stringify(state) : ''),
        uninstall: (state) => state_save(UNINSTALL, JSON.stringify(state)),
    },
    cacheSave: () => parsePending(savedState(CACHE)),
    /** throws when the saved state cannot be read */
    builder: () => readJson(BUILDER),
    /** throws when the saved state cannot be read */
    uninstall: () => readJson(UNINSTALL),
};

;// CONCATENATED MODULE: ./src/action/log.ts




/**
 * The action's log (through @actions/core once it is loaded: what comes before waits, in order). Messages carry
 * names, URLs, server messages and program output the action did not write: each passes untrustedLines on its
 * way to the runner, so none can be read as a workflow command.
 */
const actionLog = {
    info: m => withCore(core => core.info(untrustedLines(m))),
    debug: m => withCore(core => core.debug(untrustedLines(m))),
    warning: m => withCore(core => core.warning(untrustedLines(m))),
    notice: m => withCore(core => core.notice(untrustedLines(m))),
    progress: p => withCore(core => core.info(untrustedLines(progressLine(p)))),
    secret: value => withCore(core => core.setSecret(value)),
};
/** The engine's io in the action: log groups fold (as core.group folds them), the handoff is the step state. */
const actionIO = {
    log: actionLog,
    group: async (title, step) => {
        withCore(core => core.startGroup(title));
        try {
            return await step();
        }
        finally {
            withCore(core => core.endGroup());
        }
    },
    handoff: stepState.handoff,
};
/** The step's one error; the step fails. */
function log_fail(m) {
    withCore(core => core.setFailed(untrustedLines(m)));
}
/** An output, as safe as a log line: workflows print outputs. */
function setOutput(name, value) {
    withCore(core => core.setOutput(name, untrustedLines(value)));
}

;// CONCATENATED MODULE: ./src/action/summary.ts




function escapeHtml(s) {
    return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}
/**
 * A summary cell: node names, endpoints, BuildKit versions, QEMU versions and probe details come from programs
 * and servers, so as text (escaped), and never '' (core.summary leaves an empty cell unclosed).
 */
const cell = (s) => escapeHtml(untrusted(s)) || '-';
/** The job summary: the builder's nodes, the emulators, and the files they came from as paste-ready qemu-sha256 lines. */
async function writeSummary(o, builder) {
    if (!process.env.GITHUB_STEP_SUMMARY)
        return;
    const core = await loadCore();
    const rows = reportRows(o, emulatorName);
    if (builder) {
        core.summary.addHeading(`buildx builder ${escapeHtml(untrusted(builder.name))}`, 3).addTable([
            [
                { data: 'node', header: true },
                { data: 'endpoint', header: true },
                { data: 'status', header: true },
                { data: 'BuildKit', header: true },
                { data: 'platforms', header: true },
                { data: 'platforms are', header: true },
            ],
            ...builder.nodes.map(n => [
                n.name,
                n.endpoint,
                n.status,
                n.buildkit,
                n.platforms.join(', '),
                n.remote
                    ? 'as the remote node declares them'
                    : `checked on this runner${n.notRunning?.length ? ` (listed but not running here: ${n.notRunning.join(', ')})` : ''}`,
            ].map(cell)),
        ]);
    }
    core.summary
        .addHeading('QEMU emulators', 3)
        .addTable([
        [
            { data: 'platform', header: true },
            { data: 'emulator', header: true },
            { data: 'QEMU version', header: true },
            { data: 'flags', header: true },
            { data: 'source', header: true },
            { data: 'verified', header: true },
            { data: 'time', header: true },
        ],
        ...rows.map(r => [r.platforms.join(', '), r.emulator, r.qemuVersion, r.flags, r.source, r.verified, r.ms === undefined ? '' : `${r.ms.toFixed(1)} ms`].map(cell)),
    ])
        .addRaw(`\nmethod: ${o.method}${o.scope ? ` (${escapeHtml(untrusted(o.scope))})` : ''}, cache hit: ${o.cacheHit}\n`);
    const sums = checksumRows(o.files, o.pinning);
    if (sums.length) {
        // Paste-ready: each line as the qemu-sha256 input takes it.
        core.summary.addHeading('Files the emulators came from', 3).addTable([
            [
                { data: 'qemu-sha256 line', header: true },
                { data: 'checked', header: true },
            ],
            // The file name comes from qemu-url: escaped, so it shows as text.
            ...sums.map(r => [`<code>${cell(r.line)}</code>`, cell(r.pinned)]),
        ]);
    }
    await core.summary.write();
}

;// CONCATENATED MODULE: ./src/action/main.ts







/** The action's main step: inputs from the runner, the engine's result to outputs and the job summary. */
async function runMain() {
    try {
        await mainStep();
    }
    finally {
        // What the step said before @actions/core was loaded is written by now at the latest.
        await loadCore();
    }
}
async function mainStep() {
    let inputs;
    try {
        // Before any program is looked up: as root, none from a directory another user could write.
        securePathForRoot(actionLog.warning);
        // Every bad input fails here, before anything is touched.
        inputs = readInputs(input);
    }
    catch (e) {
        return log_fail(errors_errorMessage(e));
    }
    const running = runSetup(inputs, runnerPlace(process.env), actionIO, log_fail);
    // The run started the builder's first commands before it first waited: @actions/core loads while they run.
    await loadCore();
    const result = await running;
    if (!result)
        return;
    for (const [name, value] of Object.entries(result.outputs))
        setOutput(name, value);
    try {
        await writeSummary(result.outcome, result.builder);
    }
    catch (e) {
        log_fail(errors_errorMessage(e));
    }
}

;// CONCATENATED MODULE: ./src/teardown.ts
// The engine's clean-up after a run (the action's post step): saves downloaded emulators to the
// Actions cache, removes the builder the run created and, when asked, the entries it registered.
// Nothing here fails: problems are warnings, since the job's own work is done by now.










async function teardown(handed, env, log) {
    if (handed.cacheSave)
        await saveEntry(handed.cacheSave, log);
    try {
        if (handed.builder)
            await cleanupBuilder(handed.builder, new ChildProcessRunner(), log);
        else
            log.debug('post: no builder to clean up');
    }
    catch (e) {
        log.warning(`post: builder cleanup failed: ${errors_errorMessage(e)}`);
    }
    if (!handed.uninstall)
        return;
    try {
        await uninstallEntries(handed.uninstall, env, log);
    }
    catch (e) {
        log.warning(`uninstall: ${errors_errorMessage(e)}; the entries stay registered`);
    }
}
/**
 * Removes the entries the run added and puts back the ones it replaced,
 * except those another live job on this host still uses, and those someone
 * changed since. A replaced entry that cannot be put back (its interpreter is
 * gone) is left as the run made it: a working entry beats none.
 */
async function uninstallEntries(state, env, log) {
    const access = await accessAgain(state.method, state.dockerImage, new ChildProcessRunner(), env, log);
    const records = new UsageRecords(tableOf(access.reader.root));
    const lock = await HostLock.acquire({ timeoutMs: LOCK_WAIT_MS, log: log.info });
    try {
        for (const entry of state.entries) {
            if (keep(entry, access, records, state.job, log))
                continue;
            if (entry.previous)
                await putBack(entry.spec, entry.previous, access.writer, log);
            else {
                await access.writer.apply([{ kind: 'remove', name: entry.spec.name }]);
                log.info(`uninstall: removed ${entry.spec.name}`);
            }
        }
        if (state.job && !records.problem())
            records.remove(state.job);
    }
    finally {
        await lock.release();
    }
}
/** Whether an entry stays as it is, and why (logged): not ours to touch, used by a live job, gone, or changed since. */
function keep({ spec, previous }, access, records, job, log) {
    // Only ever qemu-* entries, and an entry is only ever put back under its own name.
    if (!isQemuEntry(spec.name) || (previous && previous.name !== spec.name)) {
        log.warning(`uninstall: ignoring a saved entry that is not a qemu-* entry of its own name (${spec.name})`);
        return true;
    }
    let users;
    try {
        users = records.users(spec.name, job);
    }
    catch (e) {
        // Records that cannot be trusted could hide a live job (or one that could not write its record): keep.
        log.warning(`uninstall: ${spec.name} kept: which jobs use it cannot be told (${errors_errorMessage(e)})`);
        return true;
    }
    if (users.length) {
        log.info(`uninstall: ${spec.name} kept: still used by the running job of process ${users.map(u => u.pid).join(', ')}`);
        return true;
    }
    const now = access.reader.read(spec.name);
    if (!now) {
        log.info(`uninstall: ${spec.name} is already gone`);
        return true;
    }
    if (now.interpreter !== spec.interpreter) {
        log.info(`uninstall: ${spec.name} kept: it was changed since this step (interpreter ${now.interpreter})`);
        return true;
    }
    return false;
}
/** The replaced entry comes back beside ours first: if the kernel refuses it, ours stays. */
async function putBack(spec, previous, writer, log) {
    const staged = stagingName(previous.name);
    const old = specOf(previous);
    try {
        await writer.apply([{ kind: 'register', spec: { ...old, name: staged } }]);
    }
    catch (e) {
        log.warning(`uninstall: ${spec.name} kept: the entry it replaced cannot be put back (${errors_errorMessage(e)})`);
        return;
    }
    const ops = [
        { kind: 'remove', name: spec.name },
        { kind: 'register', spec: old },
        ...(previous.enabled ? [] : [{ kind: 'disable', name: previous.name }]),
        { kind: 'remove', name: staged },
    ];
    await writer.apply(ops);
    log.info(`uninstall: put back ${previous.name} (interpreter ${previous.interpreter}, flags ${previous.flags || 'none'}${previous.enabled ? '' : ', disabled'})`);
}

;// CONCATENATED MODULE: ./src/action/post.ts






/**
 * The action's post step: what the main step handed over (the step state), cleaned up by the
 * engine. The saved state alone never makes this step change the kernel: the step's own input must ask.
 */
async function runPost() {
    await loadCore();
    const cacheSave = stepState.cacheSave();
    let builder;
    try {
        builder = stepState.builder();
    }
    catch (e) {
        actionLog.warning(`post: builder cleanup failed: ${errors_errorMessage(e)}`);
    }
    let uninstall;
    if (wantsUninstall()) {
        try {
            uninstall = stepState.uninstall();
        }
        catch (e) {
            actionLog.warning(`uninstall: ${errors_errorMessage(e)}; the entries stay registered`);
        }
    }
    await teardown({ cacheSave, builder, uninstall }, process.env, actionLog);
}
/** The step's `uninstall` input, read as main read it; inputs main refused (it then changed nothing) ask for nothing. */
function wantsUninstall() {
    try {
        return readInputs(input).uninstall;
    }
    catch (e) {
        actionLog.debug(`post: not uninstalling: ${errors_errorMessage(e)}`);
        return false;
    }
}

;// CONCATENATED MODULE: ./src/action/index.ts



/** action.yml runs the same file for both phases; the main phase leaves a state flag for the post phase. */
function start() {
    if (stepState.isPost()) {
        void runPost();
    }
    else {
        stepState.markMainRan();
        void runMain();
    }
}


/***/ })

};
;