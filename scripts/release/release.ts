/**
 * `npm run release [-- --out DIR] [-- --arch x64,arm64]`: builds what a CKAN admin installs,
 * into one folder (default release/):
 *
 *   ckan-migrate-<version>-linux-<arch>   single executable (Node.js included), per architecture
 *   ckan-migrate_<version>_<debarch>.deb  Debian package of that executable
 *   ckan-migrate-<version>.tgz            npm tarball (npm install -g, needs Node >= 22.12)
 *   SHA256SUMS                            `sha256sum -c SHA256SUMS` checks all of them
 *   release.json                          what was built: files, sizes, sums, Node.js version
 *
 * It packs the compiled dist/ and oclif.manifest.json as they are: `npm run release` runs
 * `npm run build` first; calling this script directly (as test/packaging does) skips that.
 */
import {createHash} from 'node:crypto'
import {execFile} from 'node:child_process'
import {createReadStream} from 'node:fs'
import {access, mkdir, readFile, rm, stat, writeFile} from 'node:fs/promises'
import {basename, join, resolve} from 'node:path'
import {parseArgs, promisify} from 'node:util'

import {bundle} from './bundle.js'
import {buildDeb, type DebCompression, debFileName} from './deb.js'
import type {SeaArch} from './node-binary.js'
import {PROJECT_ROOT} from './paths.js'
import {buildSea} from './sea.js'

const execFileAsync = promisify(execFile)

export type ReleaseArtifact = {
  arch?: SeaArch
  file: string
  kind: 'deb' | 'npm' | 'sea'
  sha256: string
  size: number
}
export type ReleaseManifest = {artifacts: ReleaseArtifact[]; nodeVersion: string; version: string}

async function sha256(file: string): Promise<string> {
  const hash = createHash('sha256')
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer)
  return hash.digest('hex')
}

async function artifact(kind: ReleaseArtifact['kind'], path: string, arch?: SeaArch): Promise<ReleaseArtifact> {
  return {arch, file: basename(path), kind, sha256: await sha256(path), size: (await stat(path)).size}
}

export async function buildRelease(options: {
  arches: SeaArch[]
  debCompression?: DebCompression
  out: string
}): Promise<ReleaseManifest> {
  const pjson = JSON.parse(await readFile(join(PROJECT_ROOT, 'package.json'), 'utf8')) as {
    description: string
    license: string
    version: string
  }
  const {version} = pjson
  for (const needed of ['dist/commands', 'dist/lib/cli/version.js', 'oclif.manifest.json']) {
    await access(join(PROJECT_ROOT, needed)).catch(() => {
      throw new Error(`${needed} is missing: run npm run build first (npm run release does)`)
    })
  }
  const out = resolve(options.out)
  const work = join(out, '.work')
  await rm(out, {force: true, recursive: true})
  await mkdir(work, {recursive: true})
  const artifacts: ReleaseArtifact[] = []
  let nodeVersion = ''
  const main = join(work, 'main.cjs')
  const {assets, warnings} = await bundle(main, version)
  for (const warning of warnings) process.stderr.write(`release: esbuild: ${warning}\n`)
  for (const arch of options.arches) {
    process.stderr.write(`release: single executable for linux-${arch}\n`)
    const sea = await buildSea({arch, assets, main, outFile: join(out, `ckan-migrate-${version}-linux-${arch}`), work})
    nodeVersion = sea.nodeVersion
    artifacts.push(await artifact('sea', sea.file, arch))
    process.stderr.write(`release: Debian package for ${arch}\n`)
    const deb = await buildDeb({
      arch,
      compression: options.debCompression,
      description: pjson.description,
      executable: sea.file,
      license: pjson.license,
      nodeVersion,
      outFile: join(out, debFileName(version, arch)),
      version,
      work,
    })
    artifacts.push(await artifact('deb', deb, arch))
  }
  process.stderr.write('release: npm tarball\n')
  // --ignore-scripts: dist/ is already built (a prepack/prepare build would rewrite it under
  // whatever else is running, e.g. the test suite).
  const {stdout} = await execFileAsync('npm', ['pack', '--json', '--ignore-scripts', '--pack-destination', out], {
    cwd: PROJECT_ROOT,
    maxBuffer: 64 * 1024 * 1024,
  })
  const [packed] = JSON.parse(stdout) as Array<{filename: string}>
  if (!packed) throw new Error('npm pack wrote no tarball')
  artifacts.push(await artifact('npm', join(out, packed.filename)))
  await rm(work, {force: true, recursive: true})
  const sums = artifacts.map(({file, sha256: sum}) => `${sum}  ${file}`).join('\n')
  await writeFile(join(out, 'SHA256SUMS'), `${sums}\n`)
  const manifest: ReleaseManifest = {artifacts, nodeVersion, version}
  await writeFile(join(out, 'release.json'), `${JSON.stringify(manifest, null, 2)}\n`)
  return manifest
}

const isMain = process.argv[1] && resolve(process.argv[1]) === resolve(PROJECT_ROOT, 'scripts/release/release.ts')
if (isMain) {
  const {values} = parseArgs({
    options: {
      arch: {default: 'x64,arm64', type: 'string'},
      'deb-compression': {default: 'xz', type: 'string'},
      out: {default: join(PROJECT_ROOT, 'release'), type: 'string'},
    },
  })
  const debCompression = values['deb-compression']
  if (!['gzip', 'none', 'xz'].includes(debCompression))
    throw new Error(`--deb-compression: ${debCompression} is not xz, gzip or none`)
  const arches = values.arch.split(',').map((arch) => arch.trim())
  for (const arch of arches)
    if (arch !== 'x64' && arch !== 'arm64') throw new Error(`--arch: ${arch} is not x64 or arm64`)
  const manifest = await buildRelease({
    arches: arches as SeaArch[],
    debCompression: debCompression as DebCompression,
    out: values.out,
  })
  for (const {file, size} of manifest.artifacts)
    process.stdout.write(`${join(values.out, file)}  ${(size / 2 ** 20).toFixed(1)} MiB\n`)
  process.stdout.write(`${join(values.out, 'SHA256SUMS')}\n`)
}
