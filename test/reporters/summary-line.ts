import type {Reporter, TestModule} from 'vitest/node'

/**
 * Ends the test output with the plain line CI reads: `N passed, M failed` (and skipped, when any),
 * after one line per reason tests were skipped (the note each gave `context.skip`).
 */
export default class SummaryLineReporter implements Reporter {
  onTestRunEnd(testModules: ReadonlyArray<TestModule>): void {
    let passed = 0
    let failed = 0
    let skipped = 0
    const skipNotes = new Map<string, number>()
    for (const module of testModules) {
      for (const test of module.children.allTests()) {
        const result = test.result()
        if (result.state === 'passed') passed += 1
        else if (result.state === 'failed') failed += 1
        else {
          skipped += 1
          const note =
            (result.state === 'skipped' && result.note) || 'skipped without a note (mark it with context.skip(note))'
          skipNotes.set(note, (skipNotes.get(note) ?? 0) + 1)
        }
      }
      // A file that failed to load has no tests but must count as a failure.
      if (module.state() === 'failed' && [...module.children.allTests()].length === 0) failed += 1
    }
    // Why tests were skipped and how to run them, above the closing line CI reads.
    for (const [note, count] of skipNotes) process.stdout.write(`\n${count} skipped: ${note}`)
    const tail = skipped > 0 ? `, ${skipped} skipped` : ''
    process.stdout.write(`\n${passed} passed, ${failed} failed${tail}\n`)
  }
}
