// Unit tests are fast and need nothing; integration tests touch the kernel,
// run dist/index.js as a process and need root plus the packages .ci/run installs.
const base = {
  preset: 'ts-jest',
  testEnvironment: 'node',
  transform: { '^.+\\.ts$': 'ts-jest' },
}
module.exports = {
  projects: [
    { ...base, displayName: 'unit', testMatch: ['<rootDir>/__tests__/unit/**/*.test.ts'] },
    { ...base, displayName: 'integration', testMatch: ['<rootDir>/__tests__/integration/**/*.test.ts'] },
  ],
  testTimeout: 120000,
}
