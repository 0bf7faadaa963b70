import {mkdtemp, readdir, readFile, stat} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {describe, expect, it} from 'vitest'

import {writeSecretFile} from '../../../src/lib/fs/secret-file.js'

describe('writeSecretFile', () => {
  it('creates the file 0600 in a 0700 folder and leaves no temporary file', async () => {
    const root = await mkdtemp(join(tmpdir(), 'secret-file-'))
    const path = join(root, 'deep', 'er', 'tokens.txt')
    await writeSecretFile(path, 'one')
    await writeSecretFile(path, 'two')
    expect(await readFile(path, 'utf8')).toBe('two')
    expect((await stat(path)).mode & 0o777).toBe(0o600)
    expect((await stat(join(root, 'deep', 'er'))).mode & 0o777).toBe(0o700)
    expect(await readdir(join(root, 'deep', 'er'))).toEqual(['tokens.txt'])
  })
})

describe('folders for secrets', () => {
  it('refuses to write a secret into an existing folder others can enter, and never changes its mode', async () => {
    const {chmod, mkdir} = await import('node:fs/promises')
    const {EXIT_CODES, MigrateError} = await import('../../../src/lib/errors.js')
    const root = await mkdtemp(join(tmpdir(), 'secret-file-'))
    const shared = join(root, 'shared')
    await mkdir(shared)
    await chmod(shared, 0o755)
    const error = await writeSecretFile(join(shared, 'token.txt'), 'x').then(
      () => undefined,
      (error_: unknown) => error_,
    )
    expect(error).toBeInstanceOf(MigrateError)
    expect((error as InstanceType<typeof MigrateError>).exitCode).toBe(EXIT_CODES.writeFailed)
    expect((await stat(shared)).mode & 0o777).toBe(0o755)
    expect(await readdir(shared)).toEqual([])
  })
})
