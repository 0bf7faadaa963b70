/**
 * Bundles the compiled CLI (dist/, after `npm run build`) with its dependencies into one
 * CommonJS file for the single executable (Node 24's SEA main script must be CommonJS).
 *
 * Two things a bundle loses are put back here:
 * - oclif's command discovery (a glob over dist/commands): sea-entry.ts imports the virtual
 *   module `ckan-migrate-sea:plugins`, generated below from each plugin's oclif.manifest.json.
 * - `import.meta.url`, which CommonJS has not: every module's `import.meta.url` is rewritten to
 *   the URL the module would have inside the unpacked asset folder (same layout as the package),
 *   so relative file look-ups (schema SQL, PGlite's WASM) resolve as they do from node_modules.
 */
import {createHash} from 'node:crypto'
import {readFile, writeFile} from 'node:fs/promises'
import {dirname, join, relative, sep} from 'node:path'

import {build, type Plugin} from 'esbuild'

import {PROJECT_ROOT} from './paths.js'

/** Files read at run time relative to a module, carried as SEA assets (paths from the package root). */
export const SEA_ASSETS = [
  'schema/ckan-2.9.sql',
  'schema/ckan-2.10.sql',
  'schema/ckan-2.11.sql',
  'schema/ckanext-harvest.sql',
  'assets/sandbox-server.cert',
  'node_modules/@electric-sql/pglite/dist/pglite.wasm',
  'node_modules/@electric-sql/pglite/dist/pglite.data',
  'node_modules/@electric-sql/pglite/dist/initdb.wasm',
  'node_modules/@electric-sql/pglite-tools/dist/pg_dump.wasm',
]

/** The plugins the executable carries: ours first, then plugin-help (`ckan-migrate help …`). */
const PLUGIN_ROOTS = ['.', 'node_modules/@oclif/plugin-help']

/**
 * The code that runs on threads of its own: the sandbox's site (dist/sandbox/site-worker.js) and
 * the readiness page's chart drawer (dist/lib/report/figure-worker.js). A Worker loads its code
 * from a file, which a single executable has not, so each is bundled apart (CommonJS, with its
 * dependencies) and travels as an asset under the name its starter looks for; the package.json
 * beside it makes Node read it as CommonJS whatever lies above the unpacked folder.
 */
const WORKERS = [
  {asset: 'site-worker.cjs', entry: 'dist/sandbox/site-worker.js', packageAsset: 'sandbox-package.json'},
  {asset: 'figure-worker.cjs', entry: 'dist/lib/report/figure-worker.js', packageAsset: 'report-package.json'},
] as const

/** Every asset of the executable: its name in the unpacked folder, and the file it is read from. */
export type SeaAssets = Record<string, string>

export type BundleResult = {assets: SeaAssets; assetsHash: string; file: string; warnings: string[]}

async function pluginsModule(): Promise<string> {
  const lines: string[] = []
  const entries: string[] = []
  for (const [index, root] of PLUGIN_ROOTS.entries()) {
    const folder = join(PROJECT_ROOT, root)
    const manifest = JSON.parse(await readFile(join(folder, 'oclif.manifest.json'), 'utf8')) as {
      commands: Record<string, {relativePath: string[]}>
    }
    lines.push(`import pjson${index} from ${JSON.stringify(join(folder, 'package.json'))}`)
    lines.push(`import manifest${index} from ${JSON.stringify(join(folder, 'oclif.manifest.json'))}`)
    // import() keeps each command's module (and PGlite, openpgp, …) unevaluated until it runs.
    const modules = Object.entries(manifest.commands).map(
      ([id, command]) =>
        `${JSON.stringify(id)}: () => import(${JSON.stringify(join(folder, ...command.relativePath))})`,
    )
    entries.push(`{pjson: pjson${index}, manifest: manifest${index}, modules: {${modules.join(', ')}}}`)
  }
  lines.push(`export default [${entries.join(', ')}]`)
  return lines.join('\n')
}

const seaPlugin: Plugin = {
  name: 'ckan-migrate-sea',
  setup(builder) {
    builder.onResolve({filter: /^ckan-migrate-sea:/}, (args) => ({namespace: 'ckan-migrate-sea', path: args.path}))
    builder.onLoad({filter: /.*/, namespace: 'ckan-migrate-sea'}, async (args) => ({
      contents:
        args.path === 'ckan-migrate-sea:plugins'
          ? await pluginsModule()
          : args.path === 'ckan-migrate-sea:figures'
            ? `export {preloadFigureDrawer} from ${JSON.stringify(join(PROJECT_ROOT, 'dist/lib/report/figure-drawer.js'))}`
            : `export {versionText} from ${JSON.stringify(join(PROJECT_ROOT, 'dist/lib/cli/version.js'))}`,
      loader: 'js',
      resolveDir: PROJECT_ROOT,
    }))
    builder.onLoad({filter: /\.(?:[cm]?js|ts)$/}, async (args) => {
      const source = await readFile(args.path, 'utf8')
      if (!source.includes('import.meta.url')) return undefined
      const fromRoot = relative(PROJECT_ROOT, args.path).split(sep).join('/')
      return {
        contents: source.replaceAll('import.meta.url', `__ckanMigrateModuleUrl(${JSON.stringify(fromRoot)})`),
        loader: args.path.endsWith('.ts') ? 'ts' : 'js',
      }
    })
  },
}

/** Hash of the assets' contents: names the folder they are unpacked into, so builds never mix. */
export async function assetsHash(assets: SeaAssets): Promise<string> {
  const hash = createHash('sha256')
  for (const [name, file] of Object.entries(assets)) {
    hash.update(`${name}\0`)
    hash.update(await readFile(file))
  }
  return hash.digest('hex').slice(0, 16)
}

/** The workers' own bundles: their import.meta.url resolve inside the folder they are unpacked into. */
async function bundleWorkers(folder: string): Promise<{assets: SeaAssets; warnings: string[]}> {
  const assets: SeaAssets = {}
  const warnings: string[] = []
  for (const worker of WORKERS) {
    const depth = worker.entry.split('/').length - 1
    const packageJson = join(dirname(worker.entry), 'package.json')
    assets[worker.entry] = join(folder, worker.asset)
    assets[packageJson] = join(folder, worker.packageAsset)
    await writeFile(assets[packageJson], `${JSON.stringify({type: 'commonjs'})}\n`)
    const result = await build({
      // The worker file is <root>/<entry> wherever the executable unpacked it.
      banner: {
        js: `"use strict";
var __ckanMigrateModuleUrl = (file) => require('node:url').pathToFileURL(require('node:path').join(__dirname, ${JSON.stringify(Array.from({length: depth}, () => '..').join('/'))}, file)).href;`,
      },
      bundle: true,
      entryPoints: [join(PROJECT_ROOT, worker.entry)],
      format: 'cjs',
      legalComments: 'none',
      logLevel: 'silent',
      outfile: assets[worker.entry],
      platform: 'node',
      plugins: [seaPlugin],
      target: 'node24',
    })
    warnings.push(...result.warnings.map((warning) => warning.text))
  }
  return {assets, warnings}
}

export async function bundle(outFile: string, version: string): Promise<BundleResult> {
  const workers = await bundleWorkers(dirname(outFile))
  const assets: SeaAssets = {
    ...Object.fromEntries(SEA_ASSETS.map((name) => [name, join(PROJECT_ROOT, name)])),
    ...workers.assets,
  }
  const hash = await assetsHash(assets)
  // Where the assets live: for the executable a private cache folder (oclif's cacheDir
  // convention: CKAN_MIGRATE_CACHE_DIR, else $XDG_CACHE_HOME/ckan-migrate, else ~/.cache/ckan-migrate);
  // the bundle run by plain node (a debugging aid) reads them from this checkout.
  // The banner runs before any bundled module: bin/run.js's two settings go here, since oclif
  // reads OCLIF_COLUMNS when it loads (imports are evaluated before sea-entry.ts's own code).
  const banner = `"use strict";
process.env.UV_THREADPOOL_SIZE ??= '16';
if (!process.stderr.isTTY) process.env.OCLIF_COLUMNS ??= '1000';
var __ckanMigrateSea = (() => {
  const path = require('node:path'), os = require('node:os'), url = require('node:url')
  const cache = process.env.CKAN_MIGRATE_CACHE_DIR || path.join(process.env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache'), 'ckan-migrate')
  const root = require('node:sea').isSea() ? path.join(cache, ${JSON.stringify(`sea-${version}-${hash}`)}) : ${JSON.stringify(PROJECT_ROOT)}
  return {assets: ${JSON.stringify(Object.keys(assets))}, root, url: (file) => url.pathToFileURL(path.join(root, file)).href}
})();
var __ckanMigrateModuleUrl = __ckanMigrateSea.url;`
  const result = await build({
    banner: {js: banner},
    bundle: true,
    // oclif only loads TypeScript to read a tsconfig in development, inside a try.
    external: ['typescript'],
    entryPoints: [join(PROJECT_ROOT, 'scripts/release/sea-entry.ts')],
    format: 'cjs',
    legalComments: 'none',
    logLevel: 'silent',
    minify: false,
    outfile: outFile,
    platform: 'node',
    plugins: [seaPlugin],
    target: 'node24',
  })
  return {
    assets,
    assetsHash: hash,
    file: outFile,
    warnings: [...workers.warnings, ...result.warnings.map((warning) => warning.text)],
  }
}
