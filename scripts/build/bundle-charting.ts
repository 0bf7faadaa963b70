/**
 * Part of `npm run build`, after tsc: replaces DIST/lib/report/charting-library.js (re-exports)
 * with one minified ESM bundle of the parts of Observable Plot the charts use, their d3 modules,
 * and linkedom, so the report pages load their charting library from one file instead of about a
 * thousand. The licence comments of the bundled packages are kept at the end of the file. The
 * benchmarks' CLI copies (bench/support/cli-child.ts) are built the same way.
 */
import {build, type Plugin} from 'esbuild'
import {resolve} from 'node:path'
import {fileURLToPath} from 'node:url'

const ROOT = fileURLToPath(new URL('../..', import.meta.url))

/**
 * Two of linkedom's dependencies that the charts never use, left out of the bundle: its HTML
 * parser (htmlparser2: the charts' documents are made empty and filled by Plot's createElement
 * calls, never parsed), and the CSS object model it builds when a <style> element's `sheet` is
 * read (cssomnom). Evaluating the two is most of linkedom's load time (docs/benchmarks.md). Each
 * is replaced by a stand-in that refuses when called, so a future use fails loudly (the report
 * tests draw every chart) instead of returning nothing.
 */
const LEFT_OUT = {
  cssomnom: 'export function parse() { refuse() }',
  htmlparser2: 'export class Parser { constructor() { refuse() } }',
} as const

const leftOut: Plugin = {
  name: 'charting-left-out',
  setup(builder) {
    builder.onResolve({filter: /^(?:cssomnom|htmlparser2)(?:\/|$)/}, (args) => ({
      namespace: 'left-out',
      path: args.path,
    }))
    builder.onLoad({filter: /.*/, namespace: 'left-out'}, (args) => ({
      contents: `function refuse() {
  throw new Error(${JSON.stringify(`the report pages are built without ${args.path}: scripts/build/bundle-charting.ts`)})
}
${LEFT_OUT[args.path.split('/')[0] as keyof typeof LEFT_OUT]}`,
      loader: 'js',
    }))
  },
}

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
    plugins: [leftOut],
    target: 'node22',
  })
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url))
  await bundleCharting(process.argv[2])
