// The production entry (bin/run.js) without a build: oclif's execute() in production mode (no
// development flag, so errors print as users see them: no stack), loading src/ through tsx. Run as
// `NODE_ENV=development node --import tsx test/bad-input/production-entry.js ARGS`: NODE_ENV only
// lets oclif map dist/commands to src/commands; oclif's error printing depends on the flag alone.
import {fileURLToPath} from 'node:url'

// As bin/run.js: set before @oclif/core loads (it reads OCLIF_COLUMNS once).
process.env.UV_THREADPOOL_SIZE ??= '16'
if (!process.stderr.isTTY) process.env.OCLIF_COLUMNS ??= '1000'
const {execute} = await import('@oclif/core')

await execute({
  dir: import.meta.url,
  loadOptions: {ignoreManifest: true, root: fileURLToPath(new URL('../..', import.meta.url))},
})
