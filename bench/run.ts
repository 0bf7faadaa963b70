/**
 * `npm run bench [-- name…]`: runs the benchmarks in bench/*.bench.ts (all, or the named ones)
 * and rewrites their sections of docs/benchmarks.md. Each benchmark default-exports a function
 * returning a markdown section; every figure in it names the command that produced it.
 *
 * A section lives between `<!-- bench:NAME -->` and `<!-- /bench:NAME -->`, so running one
 * benchmark leaves the others' figures in place.
 */
import {readdir, readFile, writeFile} from 'node:fs/promises'
import {arch, cpus, totalmem} from 'node:os'

export type BenchResult = {markdown: string; title: string}
export type Bench = () => Promise<BenchResult>

const PAGE = new URL('../docs/benchmarks.md', import.meta.url)
const HEADER = `# Benchmarks

Figures measured on this project's build machine (2 cores, 24 GiB) by \`npm run bench\`; each
section names the command that produced it and the date. Speed is compared as a ratio against a
reference run side by side in the same command, because absolute times on a shared machine are
noisy. Tests never assert timings; these pages are where speed and memory are tracked.

Run one benchmark with \`npm run bench -- NAME\` (NAME = a file in bench/ without .bench.ts).
With \`CKAN_MIGRATE_TEST_POSTGRES_URL\` set, benchmarks use that PostgreSQL server (as recorded
below); otherwise they start PGlite.
`

const names = process.argv.slice(2)
const available = (await readdir(new URL('.', import.meta.url)))
  .filter((file) => file.endsWith('.bench.ts'))
  .map((file) => file.replace(/\.bench\.ts$/, ''))
const chosen = names.length > 0 ? names : available
let page: string
try {
  page = await readFile(PAGE, 'utf8')
} catch {
  page = HEADER
}
for (const name of chosen) {
  if (!available.includes(name)) throw new Error(`no benchmark bench/${name}.bench.ts (have: ${available.join(', ')})`)
  console.error(`bench: running ${name}`)
  const bench = (await import(`./${name}.bench.ts`)) as {default: Bench}
  const {markdown, title} = await bench.default()
  const machine = `${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, ${Math.round(totalmem() / 2 ** 30)} GiB, ${arch()}, Node ${process.version}`
  const section = `<!-- bench:${name} -->\n## ${title}\n\n_Measured ${new Date().toISOString().slice(0, 10)} on ${machine}._\n\n${markdown.trim()}\n<!-- /bench:${name} -->`
  const pattern = new RegExp(`<!-- bench:${name} -->[\\s\\S]*?<!-- /bench:${name} -->`)
  page = pattern.test(page) ? page.replace(pattern, section) : `${page.trimEnd()}\n\n${section}\n`
  await writeFile(PAGE, page)
  console.error(`bench: ${name} written to docs/benchmarks.md`)
}
