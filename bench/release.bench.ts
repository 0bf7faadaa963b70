import {execFile, spawnSync} from 'node:child_process'
import {mkdir, rm} from 'node:fs/promises'
import {join} from 'node:path'
import {promisify} from 'node:util'

import {buildRelease} from '../scripts/release/release.js'
import type {BenchResult} from './run.js'

const execFileAsync = promisify(execFile)
const ROOT = new URL('..', import.meta.url).pathname
const OUT = join(ROOT, 'bench/.out/release')
const ROUNDS = 15

type Way = {args: string[]; label: string; program: string}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.floor(sorted.length / 2)]!
}

function mib(bytes: number): string {
  return `${(bytes / 2 ** 20).toFixed(1)} MiB`
}

/**
 * Issue 16: how big each artifact is, and how long `ckan-migrate --version` and `--help` take to
 * start from each, against `node bin/run.js` in this checkout, interleaved round by round.
 */
export default async function releaseBench(): Promise<BenchResult> {
  await rm(OUT, {force: true, recursive: true})
  const started = performance.now()
  // BENCH_RELEASE_ARCHES=x64 builds one architecture (the arm64 artifacts are within 3 % of x64's size).
  const arches = (process.env.BENCH_RELEASE_ARCHES ?? 'x64,arm64').split(',') as Array<'arm64' | 'x64'>
  const manifest = await buildRelease({arches, debCompression: 'xz', out: join(OUT, 'artifacts')})
  const buildSeconds = (performance.now() - started) / 1000
  const file = (kind: string, arch?: string) =>
    join(OUT, 'artifacts', manifest.artifacts.find((a) => a.kind === kind && (!arch || a.arch === arch))!.file)

  const debRoot = join(OUT, 'deb-root')
  await mkdir(debRoot, {recursive: true})
  await execFileAsync('dpkg', ['-x', file('deb', 'x64'), debRoot])
  const prefix = join(OUT, 'npm-prefix')
  await execFileAsync('npm', [
    'install',
    '-g',
    '--prefix',
    prefix,
    '--prefer-offline',
    '--no-audit',
    '--no-fund',
    file('npm'),
  ])
  const home = join(OUT, 'home')
  await mkdir(home, {recursive: true})
  const env = {HOME: home, PATH: `${join(process.execPath, '..')}:/usr/bin:/bin`}

  const ways: Way[] = [
    {
      args: [join(ROOT, 'bin/run.js')],
      label: '`node bin/run.js` (this checkout, reference)',
      program: process.execPath,
    },
    {args: [], label: 'single executable', program: file('sea', 'x64')},
    {args: [], label: '.deb (`dpkg -x`, /usr/bin/ckan-migrate)', program: join(debRoot, 'usr/bin/ckan-migrate')},
    {args: [], label: 'npm tarball (`npm install -g`)', program: join(prefix, 'bin/ckan-migrate')},
  ]
  const times = new Map<string, number[]>()
  for (const flag of ['--version', '--help']) {
    // One untimed run each: the executable unpacks its assets on first use.
    for (const way of ways) spawnSync(way.program, [...way.args, flag], {env})
    for (let round = 0; round < ROUNDS; round++) {
      for (const way of ways) {
        const begin = performance.now()
        const result = spawnSync(way.program, [...way.args, flag], {env, stdio: 'ignore'})
        if (result.status !== 0) throw new Error(`${way.label} ${flag} exited ${result.status}`)
        const key = `${way.label} ${flag}`
        times.set(key, [...(times.get(key) ?? []), performance.now() - begin])
      }
    }
  }
  const startRows = ways.map((way) => {
    const cells = ['--version', '--help'].map((flag) => {
      const ms = median(times.get(`${way.label} ${flag}`)!)
      const reference = median(times.get(`${ways[0]!.label} ${flag}`)!)
      return `${ms.toFixed(0)} ms (×${(ms / reference).toFixed(2)})`
    })
    return `| ${way.label} | ${cells.join(' | ')} |`
  })
  const sizeRows = manifest.artifacts.map(
    (artifact) =>
      `| \`${artifact.file}\` | ${mib(artifact.size)} | ${artifact.kind}${artifact.arch ? ` (${artifact.arch})` : ''} |`,
  )
  return {
    markdown: `Command: \`${process.env.BENCH_RELEASE_ARCHES ? `BENCH_RELEASE_ARCHES=${process.env.BENCH_RELEASE_ARCHES} ` : ''}npm run bench -- release\` (builds the release as \`npm run release\` does, for ${arches.join(' and ')},
.deb xz-compressed, in ${buildSeconds.toFixed(0)} s; then starts each way of installing it
${ROUNDS} times per flag, interleaved, and takes the median wall time; ×: against \`node bin/run.js\`
in the same round).

| artifact | size | what |
| --- | --- | --- |
${sizeRows.join('\n')}

The executables carry Node.js ${manifest.nodeVersion} (about 120 MiB of each), the bundled code and
PGlite's WASM and data files (about 18 MiB); the npm tarball carries only our code: \`npm install\`
fetches the dependencies and Node.js must already be there.

| start-up | \`--version\` | \`--help\` |
| --- | --- | --- |
${startRows.join('\n')}

\`--version\` is answered before oclif loads; \`--help\` loads oclif and every command's manifest entry
(from the bundled manifests in the executable, from oclif.manifest.json otherwise).`,
    title: 'Release artifacts: sizes and start-up (`--version`, `--help`)',
  }
}
