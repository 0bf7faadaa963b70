/**
 * Part of `npm run build`, after tsc: replaces DIST/lib/report/charting-library.js (two
 * re-exports) with one minified ESM bundle of Observable Plot, d3 and linkedom, so the report
 * pages load their charting library from one file instead of about a thousand. The licence
 * comments of the bundled packages are kept at the end of the file. The benchmarks' CLI copies
 * (bench/support/cli-child.ts) are built the same way.
 */
import {build} from 'esbuild'
import {resolve} from 'node:path'
import {fileURLToPath} from 'node:url'

const ROOT = fileURLToPath(new URL('../..', import.meta.url))

export async function bundleCharting(dist = `${ROOT}dist`): Promise<void> {
  await build({
    allowOverwrite: true,
    bundle: true,
    entryPoints: [`${ROOT}src/lib/report/charting-library.ts`],
    // linkedom asks for the optional native `canvas` package inside a try; it is never installed.
    external: ['canvas'],
    format: 'esm',
    legalComments: 'eof',
    logLevel: 'warning',
    minify: true,
    outfile: resolve(dist, 'lib/report/charting-library.js'),
    platform: 'node',
    target: 'node22',
  })
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url))
  await bundleCharting(process.argv[2])
