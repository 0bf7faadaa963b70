#!/usr/bin/env node
// See bin/run.js for both settings.
process.env.UV_THREADPOOL_SIZE ??= '16'
if (!process.stderr.isTTY) process.env.OCLIF_COLUMNS ??= '1000'

const {execute} = await import('@oclif/core')
await execute({development: true, dir: import.meta.url, loadOptions: {ignoreManifest: true}})
