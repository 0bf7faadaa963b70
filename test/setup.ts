import {afterEach} from 'vitest'

// oclif's catch() sets process.exitCode; without this, one test's failure leaks into the next.
afterEach(() => {
  process.exitCode = undefined
})
