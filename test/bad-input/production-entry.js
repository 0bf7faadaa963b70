// The production entry (bin/run.js) without a build: oclif's execute() in production mode (no
// development flag, so errors print as users see them: no stack), loading src/ through tsx. Run as
// `NODE_ENV=development node --import tsx test/bad-input/production-entry.js ARGS`: NODE_ENV only
// lets oclif map dist/commands to src/commands; oclif's error printing depends on the flag alone.
import {execute} from '@oclif/core'
import {fileURLToPath} from 'node:url'

process.env.UV_THREADPOOL_SIZE ??= '16'

await execute({dir: import.meta.url, loadOptions: {ignoreManifest: true, root: fileURLToPath(new URL('../..', import.meta.url))}})
