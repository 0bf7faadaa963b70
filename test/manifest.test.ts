import {execFile} from 'node:child_process'
import {copyFile, mkdtemp, readFile, rm, symlink} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {promisify} from 'node:util'
import {describe, expect, it} from 'vitest'

import {PROJECT_ROOT} from './helpers/run-cli.js'

const run = promisify(execFile)

describe('oclif.manifest.json', () => {
  it('is what `npm run build` generates from the current commands (regenerate it when this fails)', async () => {
    const scratch = await mkdtemp(join(tmpdir(), 'manifest-'))
    try {
      await copyFile(join(PROJECT_ROOT, 'package.json'), join(scratch, 'package.json'))
      await symlink(join(PROJECT_ROOT, 'node_modules'), join(scratch, 'node_modules'))
      await run(process.execPath, [
        join(PROJECT_ROOT, 'node_modules/typescript/bin/tsc'),
        '-p',
        join(PROJECT_ROOT, 'tsconfig.json'),
        '--outDir',
        join(scratch, 'dist'),
      ])
      await run(process.execPath, [join(PROJECT_ROOT, 'node_modules/oclif/bin/run.js'), 'manifest', scratch], {
        cwd: scratch,
      })
      const fresh = JSON.parse(await readFile(join(scratch, 'oclif.manifest.json'), 'utf8'))
      const committed = JSON.parse(await readFile(join(PROJECT_ROOT, 'oclif.manifest.json'), 'utf8'))
      expect(committed).toEqual(fresh)
    } finally {
      await rm(scratch, {force: true, recursive: true})
    }
  })
})
