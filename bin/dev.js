#!/usr/bin/env node
// See bin/run.js for both settings.
process.env.UV_THREADPOOL_SIZE ??= '16'
if (!process.stderr.isTTY) process.env.OCLIF_COLUMNS ??= '1000'
// Development mode (commands loaded from src/ through TypeScript) without oclif's debug output:
// `execute({development: true})` would also print a stack trace under every warning and error,
// which this project promises never to show (docs/bad-input.md). DEBUG=* brings them back.
process.env.NODE_ENV ??= 'development'

const {execute} = await import('@oclif/core')
await execute({dir: import.meta.url, loadOptions: {ignoreManifest: true}})
