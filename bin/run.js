#!/usr/bin/env node
import {execute} from '@oclif/core'

// PBKDF2 (bundles), fsync and DNS share libuv's thread pool; 4 threads starve under load.
process.env.UV_THREADPOOL_SIZE ??= '16'

await execute({dir: import.meta.url})
