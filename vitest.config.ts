import {defineConfig} from 'vitest/config'

export default defineConfig({
  test: {
    disableConsoleIntercept: true, // @oclif/test captures process.stdout itself
    fileParallelism: true,
    hookTimeout: 120_000,
    include: ['test/**/*.test.ts'],
    maxWorkers: 2,
    reporters: ['default', './test/reporters/summary-line.ts'],
    restoreMocks: true,
    setupFiles: ['test/setup.ts'],
    testTimeout: 120_000,
  },
})
