import js from '@eslint/js'
import tseslint from 'typescript-eslint'

const OCLIF = {group: ['@oclif/*'], message: 'Only src/commands and src/lib/cli talk to oclif.'}
const CLI_LAYER = {group: ['**/cli/*', '**/commands/*'], message: 'lib does not reach up into the CLI layer.'}
const SANDBOX = {
  group: ['**/sandbox/*', '@electric-sql/*'],
  message: 'Production code never imports the sandbox (emulator, seeder, PGlite): it belongs to the rehearsal.',
}
const WORKFLOWS = {group: ['**/workflows/*'], message: 'The domain does not call workflows: workflows call the domain.'}
const DOMAIN = {
  group: [
    '**/site/*',
    '**/run/*',
    '**/audit/*',
    '**/services/*',
    '**/bundle/*',
    '**/backup/*',
    '**/deliver/*',
    '**/report/*',
    '**/workflows/*',
  ],
  message: 'fs, secret and errors sit below the domain and import none of it.',
}

// A smaller stack than eslint-config-oclif (design.md §6 q3): typescript-eslint's recommended
// rules plus the rules that protect our architecture and our secrets. Formatting is Prettier's job.
export default tseslint.config(
  {ignores: ['dist/**', 'node_modules/**', 'tmp/**', 'coverage/**', 'docs/**', 'bench/.out/**']},
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: {
      globals: {
        console: 'readonly',
        process: 'readonly',
        URL: 'readonly',
        Buffer: 'readonly',
        setTimeout: 'readonly',
        clearTimeout: 'readonly',
        setInterval: 'readonly',
        clearInterval: 'readonly',
        AbortController: 'readonly',
        AbortSignal: 'readonly',
        fetch: 'readonly',
        TextEncoder: 'readonly',
        TextDecoder: 'readonly',
        setImmediate: 'readonly',
        structuredClone: 'readonly',
        performance: 'readonly',
        Response: 'readonly',
        Request: 'readonly',
        Headers: 'readonly',
        NodeJS: 'readonly',
      },
    },
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', {argsIgnorePattern: '^_', varsIgnorePattern: '^_'}],
      'no-empty': ['error', {allowEmptyCatch: true}],
    },
  },
  // The layer order (docs/architecture.md), enforced here and proven by test/architecture.test.ts:
  // commands → lib/cli + lib/workflows → domain (site, run, audit, services, bundle, backup)
  // → fs, secret, errors, progress. Nothing in production imports the sandbox (src/sandbox);
  // only src/commands and src/lib/cli import oclif.
  {
    files: ['src/lib/**/*.ts'],
    ignores: ['src/lib/cli/**'],
    rules: {
      'no-console': 'error',
      'no-restricted-imports': ['error', {patterns: [OCLIF, CLI_LAYER, SANDBOX]}],
    },
  },
  {
    files: ['src/lib/{site,run,audit,services,bundle,backup,deliver,report}/**/*.ts'],
    rules: {'no-restricted-imports': ['error', {patterns: [OCLIF, CLI_LAYER, SANDBOX, WORKFLOWS]}]},
  },
  {
    files: ['src/lib/fs/**/*.ts', 'src/lib/*.ts'],
    rules: {'no-restricted-imports': ['error', {patterns: [OCLIF, CLI_LAYER, SANDBOX, WORKFLOWS, DOMAIN]}]},
  },
  {
    files: ['src/commands/**/*.ts'],
    ignores: ['src/commands/sandbox.ts'],
    rules: {'no-restricted-imports': ['error', {patterns: [SANDBOX]}]},
  },
  {
    // The Node launcher runs on whatever node a machine has, so it stays CommonJS (bin/with-node.cjs).
    files: ['**/*.cjs'],
    languageOptions: {globals: {module: 'writable', require: 'readonly'}, sourceType: 'commonjs'},
    rules: {'@typescript-eslint/no-require-imports': 'off', 'no-var': 'off'},
  },
  {
    files: ['test/**/*.ts', 'bench/**/*.ts'],
    rules: {'@typescript-eslint/no-non-null-assertion': 'off', 'no-console': 'off'},
  },
)
