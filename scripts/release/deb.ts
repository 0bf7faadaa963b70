/**
 * The Debian package, in the layout of oclif's `pack deb`: the program under
 * /usr/lib/ckan-migrate (here the single executable, which carries its own Node.js), and
 * /usr/bin/ckan-migrate a link to it. Built with dpkg-deb, owned by root, xz-compressed (which
 * every dpkg since Debian 9 and Ubuntu 18.04 reads; zstd is not read by Ubuntu 20.04's dpkg).
 */
import {execFile} from 'node:child_process'
import {chmod, copyFile, mkdir, rm, stat, symlink, writeFile} from 'node:fs/promises'
import {join} from 'node:path'
import {promisify} from 'node:util'

import type {SeaArch} from './node-binary.js'

const execFileAsync = promisify(execFile)

const DEBIAN_ARCH: Record<SeaArch, string> = {arm64: 'arm64', x64: 'amd64'}

/** dpkg-deb's -Z: xz for a release; tests pass none (xz of 150 MB takes a minute of CPU). */
export type DebCompression = 'gzip' | 'none' | 'xz'

export function debFileName(version: string, arch: SeaArch): string {
  return `ckan-migrate_${version}_${DEBIAN_ARCH[arch]}.deb`
}

/**
 * The control file. Depends: what Node.js's own linux binaries link against (glibc 2.28, as
 * nodejs.org states for Node 24; libstdc++ and libgcc). Recommends: postgresql-client, whose
 * pg_dump `backup` runs. Suggests: gnupg, for `backup --key-id` (a key from the local keyring).
 */
export function debControl(options: {
  arch: SeaArch
  description: string
  installedKiB: number
  version: string
}): string {
  return `${[
    'Package: ckan-migrate',
    `Version: ${options.version}`,
    'Section: admin',
    'Priority: optional',
    `Architecture: ${DEBIAN_ARCH[options.arch]}`,
    'Maintainer: ckan-migrate maintainers <ckan-migrate@localhost>',
    `Installed-Size: ${options.installedKiB}`,
    'Depends: libc6 (>= 2.28), libstdc++6 (>= 5.2), libgcc-s1 | libgcc1',
    'Recommends: postgresql-client',
    'Suggests: gnupg',
    `Description: ${options.description}`,
    ' A single executable (Node.js included) that audits a CKAN 2.9 site, issues API tokens',
    ' for its users and services, and clears the legacy API keys around the upgrade to',
    ' CKAN 2.10 or 2.11. Run `ckan-migrate --help`; the runbook is in the project README.',
  ].join('\n')}\n`
}

export async function buildDeb(options: {
  arch: SeaArch
  compression?: DebCompression
  description: string
  executable: string
  license: string
  nodeVersion: string
  outFile: string
  version: string
  work: string
}): Promise<string> {
  const root = join(options.work, `deb-${options.arch}`)
  await rm(root, {force: true, recursive: true})
  const program = join(root, 'usr/lib/ckan-migrate/bin/ckan-migrate')
  await mkdir(join(root, 'usr/lib/ckan-migrate/bin'), {recursive: true})
  await mkdir(join(root, 'usr/bin'), {recursive: true})
  await mkdir(join(root, 'usr/share/doc/ckan-migrate'), {recursive: true})
  await mkdir(join(root, 'DEBIAN'), {recursive: true})
  await copyFile(options.executable, program)
  await chmod(program, 0o755)
  await symlink('../lib/ckan-migrate/bin/ckan-migrate', join(root, 'usr/bin/ckan-migrate'))
  await writeFile(
    join(root, 'usr/share/doc/ckan-migrate/copyright'),
    `ckan-migrate ${options.version}\nLicense: ${options.license}\n\nThe executable includes Node.js ${options.nodeVersion} (MIT) and the npm packages ckan-migrate depends on, each under its own license.\n`,
  )
  const installedKiB = Math.ceil((await stat(program)).size / 1024) + 8
  await writeFile(join(root, 'DEBIAN/control'), debControl({...options, installedKiB}))
  for (const folder of ['DEBIAN', 'usr', 'usr/bin', 'usr/lib', 'usr/lib/ckan-migrate', 'usr/lib/ckan-migrate/bin'])
    await chmod(join(root, folder), 0o755)
  await execFileAsync(
    'dpkg-deb',
    ['--root-owner-group', `-Z${options.compression ?? 'xz'}`, '--build', root, options.outFile],
    {
      maxBuffer: 16 * 1024 * 1024,
    },
  )
  await rm(root, {force: true, recursive: true})
  return options.outFile
}
