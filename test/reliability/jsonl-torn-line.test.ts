import {appendFile, mkdtemp, rm} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {describe, expect, it, onTestFinished} from 'vitest'

import {JsonlFile} from '../../src/lib/run/jsonl-file.js'

describe('JsonlFile after a crash mid-write', () => {
  it('drops only the torn line and keeps every record appended after it', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'ckan-migrate-jsonl-'))
    onTestFinished(() => rm(dir, {force: true, recursive: true}))
    const path = join(dir, 'tokens.jsonl')
    await new JsonlFile<{n: number}>(path).append({n: 1})
    // What kill -9 in the middle of a write leaves: half a line, no newline.
    await appendFile(path, '{"n":2,"tok')
    const resumed = new JsonlFile<{n: number}>(path)
    await resumed.append({n: 3})
    await resumed.append({n: 4})
    expect(await resumed.readAll()).toEqual([{n: 1}, {n: 3}, {n: 4}])
  })
})
