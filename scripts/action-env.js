// What the local scripts and the tests' support share about running dist/index.js as a GitHub runner does.
const { spawnSync } = require('child_process')
const fs = require('fs')
const path = require('path')

const ROOT = path.resolve(__dirname, '..')
const SCRIPT = path.join(ROOT, 'dist', 'index.js')

/** INPUT_<NAME> as the runner spells it: upper case, spaces to '_', hyphens kept. */
function inputEnvName(name) {
  return `INPUT_${name.replace(/ /g, '_').toUpperCase()}`
}

/** `name<<DELIM\nvalue\nDELIM` blocks as @actions/core writes them, plus plain `name=value` lines. */
function parseKeyValueFile(text) {
  const out = {}
  const lines = text.split(/\r?\n/)
  for (let i = 0; i < lines.length; i++) {
    const heredoc = /^([^=]+?)<<(.+)$/.exec(lines[i])
    if (heredoc) {
      const [, name, delim] = heredoc
      const value = []
      i++
      while (i < lines.length && lines[i] !== delim) value.push(lines[i++])
      if (i >= lines.length) throw new Error(`unterminated value for '${name}' (delimiter ${delim})`)
      out[name] = value.join('\n')
    } else if (lines[i].includes('=')) {
      const eq = lines[i].indexOf('=')
      out[lines[i].slice(0, eq)] = lines[i].slice(eq + 1)
    }
  }
  return out
}

/** Builds dist/ when it is missing (a fresh clone that skipped the build); false when the build fails. */
function ensureDist(log) {
  if (fs.existsSync(SCRIPT)) return true
  log(`${SCRIPT} is missing; running npm run build`)
  const r = spawnSync('npm', ['run', 'build'], { cwd: ROOT, stdio: ['ignore', 'inherit', 'inherit'] })
  return r.status === 0 && fs.existsSync(SCRIPT)
}

module.exports = { ROOT, SCRIPT, inputEnvName, parseKeyValueFile, ensureDist }
