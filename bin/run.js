#!/usr/bin/env node
import {createRequire} from 'node:module'
import {fileURLToPath} from 'node:url'

// From a clone on an older Node (`npx ckan-migrate …`), run again under a current one (bin/with-node.cjs).
const launcher = createRequire(import.meta.url)('./with-node.cjs')
if (launcher.newEnough(process.version)) await start()
else launcher.runUnderCurrentNode(['node', fileURLToPath(import.meta.url), ...process.argv.slice(2)])

async function start() {
  // PBKDF2 (bundles), fsync and DNS share libuv's thread pool; 4 threads starve under load.
  process.env.UV_THREADPOOL_SIZE ??= '16'
  // oclif wraps messages at 80 columns when stderr is not a terminal; in a log file or a runbook's
  // captured output an error should stay one line. (Read once when @oclif/core loads.)
  if (!process.stderr.isTTY) process.env.OCLIF_COLUMNS ??= '1000'

  // `--version` is answered before oclif loads (src/lib/cli/version.ts): version, CKAN versions, runtime.
  if (process.argv[2] === '--version') {
    const {readFileSync} = await import('node:fs')
    const {versionText} = await import('../dist/lib/cli/version.js')
    const {version} = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'))
    process.stdout.write(`${versionText(version)}\n`)
    return
  }
  // The readiness page's chart drawer starts its thread while oclif loads, when an HTML page is
  // asked for (src/lib/report/figure-drawer.ts).
  const {preloadFigureDrawer} = await import('../dist/lib/report/figure-drawer.js')
  preloadFigureDrawer(process.argv.slice(2))
  const {execute} = await import('@oclif/core')
  await execute({dir: import.meta.url})
}
