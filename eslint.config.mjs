// As in actions/typescript-action: eslint's and typescript-eslint's recommended rules, jest's for
// the tests. Layout is prettier's job (.prettierrc.yml); none of these sets has layout rules.
import js from '@eslint/js'
import { defineConfig, globalIgnores } from 'eslint/config'
import jest from 'eslint-plugin-jest'
import globals from 'globals'
import tseslint from 'typescript-eslint'

export default defineConfig([
  globalIgnores(['dist/', 'coverage/', '.tmp/']),
  js.configs.recommended,
  tseslint.configs.recommended,
  {
    languageOptions: { globals: globals.node },
    rules: {
      // Control characters in patterns are the point: inputs and names are checked for them, terminal escapes stripped.
      'no-control-regex': 'off',
      // Errors are re-worded into one line that carries the cause's text; a `cause` would be printed nowhere.
      'preserve-caught-error': 'off',
    },
  },
  // scripts/ and the jest configuration are plain CommonJS run by Node.
  { files: ['**/*.js'], languageOptions: { sourceType: 'commonjs' }, rules: { '@typescript-eslint/no-require-imports': 'off' } },
  {
    files: ['__tests__/**/*.ts'],
    ...jest.configs['flat/recommended'],
    rules: {
      ...jest.configs['flat/recommended'].rules,
      // Tests assert through helpers: expect*(), failing(), extractAndCompare().
      'jest/expect-expect': ['error', { assertFunctionNames: ['expect', 'expect*', 'failing', 'extractAndCompare'] }],
      // Fakes check the command they are given and beforeAll checks its fixtures: a wrong one fails the tests using it.
      'jest/no-standalone-expect': 'off',
    },
  },
  // Support modules are shared helpers, not test files; one of them declares the skipped tests a host cannot run.
  { files: ['__tests__/support/**/*.ts'], rules: { 'jest/no-export': 'off' } },
])
