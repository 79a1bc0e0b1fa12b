#!/usr/bin/env node
// The command's entry point (dist/cli.js); everything else is in cli.ts.
import { main } from './cli'

void main(process.argv.slice(2)).then(code => {
  process.exitCode = code
})
