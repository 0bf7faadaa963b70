/**
 * Builds the single executable for one architecture (Node 24's SEA: `node
 * --experimental-sea-config` writes the preparation blob, postject injects it into a copy of
 * the node binary from node-linux-<arch>).
 */
import {execFile} from 'node:child_process'
import {chmod, copyFile, mkdir, readFile, writeFile} from 'node:fs/promises'
import {createRequire} from 'node:module'
import {join} from 'node:path'
import {promisify} from 'node:util'

import type {SeaAssets} from './bundle.js'
import {nodeBinary, type SeaArch} from './node-binary.js'

const execFileAsync = promisify(execFile)

type Postject = {
  inject(
    file: string,
    name: string,
    data: Buffer,
    options: {machoSegmentName?: string; sentinelFuse: string},
  ): Promise<void>
}
const {inject} = createRequire(import.meta.url)('postject') as Postject

/** The fuse every Node binary carries; postject flips it so node starts the injected blob. */
const SEA_FUSE = 'NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2'

export type SeaBuild = {arch: SeaArch; file: string; nodeVersion: string}

/**
 * `main` is the bundle (bundle.ts), `work` a scratch folder (blob, config); the executable is written to `outFile`.
 * The blob is always made by the x64 binary (this machine's); the code cache is platform
 * specific, so it is only used for x64.
 */
export async function buildSea(options: {
  arch: SeaArch
  /** Every asset: its name in the unpacked folder, the file it is read from (bundle()'s). */
  assets: SeaAssets
  main: string
  outFile: string
  work: string
}): Promise<SeaBuild> {
  const {arch, assets, main, outFile, work} = options
  await mkdir(work, {recursive: true})
  const hostNode = await nodeBinary('x64')
  const targetNode = arch === 'x64' ? hostNode : await nodeBinary(arch)
  const blob = join(work, `sea-${arch}.blob`)
  const config = {
    assets,
    disableExperimentalSEAWarning: true,
    main,
    output: blob,
    useCodeCache: arch === 'x64',
    useSnapshot: false,
  }
  const configFile = join(work, `sea-config-${arch}.json`)
  await writeFile(configFile, JSON.stringify(config, null, 2))
  await execFileAsync(hostNode, ['--experimental-sea-config', configFile], {cwd: work})
  await copyFile(targetNode, outFile)
  await chmod(outFile, 0o755)
  await inject(outFile, 'NODE_SEA_BLOB', await readFile(blob), {sentinelFuse: SEA_FUSE})
  const {stdout} = await execFileAsync(hostNode, ['--version'])
  return {arch, file: outFile, nodeVersion: stdout.trim()}
}
