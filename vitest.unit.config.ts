import {defineConfig} from 'vitest/config'

/**
 * `npm run test:unit`: the pure modules only (parsers, editors, redaction, JWT, bundles, the run
 * folder's files, the retry policy, the layer rule), no database, emulator or child process; well
 * under 30 s. The full suite (`npm test`) runs these too.
 */
export default defineConfig({
  test: {
    disableConsoleIntercept: true,
    reporters: ['default', './test/reporters/summary-line.ts'],
    setupFiles: ['test/setup.ts'],
    include: [
      'test/architecture/**/*.test.ts',
      'test/docs.test.ts',
      'test/lib/{ckan-ini,config-redaction,env-file-editor,ini-editor,jwt,secret}.test.ts',
      'test/lib/audit/{audit-summary,config-findings}.test.ts',
      'test/lib/bundle/*.test.ts',
      'test/lib/db/database-url.test.ts',
      'test/lib/files/*.test.ts',
      'test/lib/tokens/announced-feed.test.ts',
      'test/reliability/jsonl-torn-line.test.ts',
    ],
  },
})
