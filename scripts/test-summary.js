// Prints jest's totals as one plain line ("N passed, N failed, N skipped") that CI logs can be read by.
const fs = require('fs')
const file = process.argv[2]
try {
  const r = JSON.parse(fs.readFileSync(file, 'utf8'))
  const skipped = r.numPendingTests + r.numTodoTests
  console.log(`tests: ${r.numPassedTests} passed, ${r.numFailedTests} failed, ${skipped} skipped`)
} catch (e) {
  console.log(`tests: no results (${file}: ${e.message})`)
}
