// Unit tests are fast and need nothing; integration tests touch the kernel,
// run dist/index.js as a process and need root plus the packages .ci/run installs.
// Tests run as CommonJS; the ESM-only @actions/* packages are resolved by their `import` entry
// (support/jest-resolver.js) and compiled to CommonJS by ts-jest like the sources.
const base = {
  testEnvironment: 'node',
  resolver: '<rootDir>/__tests__/support/jest-resolver.js',
  transform: {
    '^.+\\.ts$': 'ts-jest',
    '/node_modules/@actions/.+\\.js$': ['ts-jest', { tsconfig: { allowJs: true } }],
  },
  transformIgnorePatterns: ['/node_modules/(?!@actions/)'],
}
module.exports = {
  projects: [
    { ...base, displayName: 'unit', testMatch: ['<rootDir>/__tests__/unit/**/*.test.ts'] },
    {
      ...base,
      displayName: 'integration',
      testMatch: ['<rootDir>/__tests__/integration/**/*.test.ts'],
      // What other users run (dist/, action.yml), staged where they can read it: support/bundle.js.
      globalSetup: '<rootDir>/__tests__/support/bundle-setup.js',
      globalTeardown: '<rootDir>/__tests__/support/bundle-teardown.js',
    },
  ],
  testTimeout: 120000,
}
