import {execFile} from 'node:child_process'
import {existsSync} from 'node:fs'
import {copyFile, mkdir, rm, symlink} from 'node:fs/promises'
import {fileURLToPath} from 'node:url'
import {promisify} from 'node:util'

import {bundleCharting} from '../../scripts/build/bundle-charting.js'

const run = promisify(execFile)
const ROOT = fileURLToPath(new URL('../..', import.meta.url))

/** Wall time, user + system CPU time and peak RSS of one command, and what it printed. */
export type Measure = {cpuSeconds: number; maxRssMb: number; seconds: number; stdout: string}

/** Compiles src/ into `build` (a folder ending in /), laid out like an installed package; `command` must compile. */
export async function buildCli(build: string, command: string): Promise<void> {
  await rm(build, {force: true, recursive: true})
  await mkdir(`${build}bin`, {recursive: true})
  // Other commands may be mid-edit and fail to type-check; tsc still emits, and `command` is all we run.
  await run(process.execPath, [
    `${ROOT}node_modules/typescript/bin/tsc`,
    '-p',
    `${ROOT}tsconfig.json`,
    '--outDir',
    `${build}dist`,
  ]).catch((error: unknown) => {
    if (!existsSync(`${build}dist/commands/${command}.js`)) throw error
  })
  await bundleCharting(`${build}dist`)
  await copyFile(`${ROOT}package.json`, `${build}package.json`)
  await copyFile(`${ROOT}bin/run.js`, `${build}bin/run.js`)
  await copyFile(`${ROOT}bin/with-node.cjs`, `${build}bin/with-node.cjs`)
  await symlink(`${ROOT}node_modules`, `${build}node_modules`)
  await symlink(`${ROOT}schema`, `${build}schema`)
  await symlink(`${ROOT}assets`, `${build}assets`)
  // As installed: oclif reads the manifest and imports only the command being run.
  await run(process.execPath, [`${ROOT}node_modules/oclif/bin/run.js`, 'manifest', build], {cwd: build})
}

/** Runs a command under /usr/bin/time -v (expectedExit null: any exit code; env: its whole environment, else this one's); returns wall time, peak RSS (MB) and its stdout. */
export async function measure(
  command: string,
  args: string[],
  expectedExit: null | number,
  env?: NodeJS.ProcessEnv,
): Promise<Measure> {
  const started = performance.now()
  const result = await run('/usr/bin/time', ['-v', command, ...args], {env, maxBuffer: 64 * 1024 * 1024}).then(
    (output) => ({...output, code: 0}),
    (error: {code?: number; stderr: string; stdout: string}) => ({
      code: error.code ?? -1,
      stderr: error.stderr,
      stdout: error.stdout,
    }),
  )
  const seconds = (performance.now() - started) / 1000
  if (expectedExit !== null && result.code !== expectedExit)
    throw new Error(`${command} exited ${result.code}, expected ${expectedExit}:\n${result.stderr.slice(0, 2000)}`)
  const rss = /Maximum resident set size \(kbytes\): (\d+)/.exec(result.stderr)
  const cpu = (label: string) =>
    Number(new RegExp(`${label} time \\(seconds\\): ([\\d.]+)`).exec(result.stderr)?.[1] ?? Number.NaN)
  return {
    cpuSeconds: cpu('User') + cpu('System'),
    maxRssMb: rss ? Math.round(Number(rss[1]) / 1024) : Number.NaN,
    seconds,
    stdout: result.stdout,
  }
}
