// dist/cli.js: the command's stable path (package.json "bin"), in front of the ncc bundle in dist/cli/.
const fs = require('fs')
const path = require('path')
const file = path.join(__dirname, '..', 'dist', 'cli.js')
fs.writeFileSync(file, "#!/usr/bin/env node\n'use strict'\nrequire('./cli/index.js')\n", { mode: 0o755 })
fs.chmodSync(file, 0o755)
