#!/usr/bin/env node
// The command's entry point (dist/cli.js); everything else is in this folder.
import { main } from '.'

void main(process.argv.slice(2)).then(code => {
  process.exitCode = code
})
