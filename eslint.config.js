import js from '@eslint/js'
import tseslint from 'typescript-eslint'

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
  {
    // The import rule (docs/architecture.md): lib stays framework-free.
    files: ['src/lib/**/*.ts'],
    ignores: ['src/lib/cli/**'],
    rules: {
      'no-console': 'error',
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              group: ['@oclif/*', '**/cli/*', '**/commands/*'],
              message: 'lib stays framework-free; only src/commands and src/lib/cli talk to oclif.',
            },
          ],
        },
      ],
    },
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
