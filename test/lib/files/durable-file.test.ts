import {mkdtemp, readdir, readFile, stat, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {pipeline} from 'node:stream/promises'
import {Readable} from 'node:stream'
import {describe, expect, it} from 'vitest'

import {writeDurably} from '../../../src/lib/fs/durable-file.js'

describe('writeDurably (the one atomic, durable write)', () => {
  it('replaces a file with text or a stream, in the mode asked for, and leaves no temporary file', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'durable-'))
    const path = join(dir, 'report.csv')
    await writeFile(path, 'old', {mode: 0o644})
    await writeDurably(path, 'new text', {mode: 0o600})
    expect(await readFile(path, 'utf8')).toBe('new text')
    expect((await stat(path)).mode & 0o777).toBe(0o600)

    const rows = await writeDurably(
      path,
      async (out) => {
        await pipeline(Readable.from(['a\n', 'b\n', 'c\n']), out)
        return 3
      },
      {mode: 0o640},
    )
    expect(rows).toBe(3)
    expect(await readFile(path, 'utf8')).toBe('a\nb\nc\n')
    expect((await stat(path)).mode & 0o777).toBe(0o640)
    expect(await readdir(dir)).toEqual(['report.csv'])
  })

  it('keeps the old file and removes the temporary one when the writer or the last check fails', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'durable-'))
    const path = join(dir, 'ckan.ini')
    await writeFile(path, 'old')
    const failingWriter = writeDurably(
      path,
      async (out) => {
        out.write('half of the new')
        throw new Error('disk full')
      },
      {mode: 0o600},
    )
    await expect(failingWriter).rejects.toThrow('disk full')
    const failingCheck = writeDurably(path, 'new', {
      async beforeRename() {
        throw new Error('changed on disk')
      },
      mode: 0o600,
    })
    await expect(failingCheck).rejects.toThrow('changed on disk')
    expect(await readFile(path, 'utf8')).toBe('old')
    expect(await readdir(dir)).toEqual(['ckan.ini'])
  })
})
