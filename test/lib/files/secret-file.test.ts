import {mkdtemp, readdir, readFile, stat} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {describe, expect, it} from 'vitest'

import {writeSecretFile} from '../../../src/lib/files/secret-file.js'

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
