import {appendFile, mkdtemp, readFile, rm} from 'node:fs/promises'
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

  it('a torn tail that happens to parse (the newline never made it) is not a record, and is cut on the next open', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'ckan-migrate-jsonl-'))
    onTestFinished(() => rm(dir, {force: true, recursive: true}))
    const path = join(dir, 'tokens.jsonl')
    await new JsonlFile<{n: number}>(path).append({n: 1})
    // A crash after the bytes of {"n":2} but before its newline: never acknowledged to anyone.
    await appendFile(path, '{"n":2}')
    const file = new JsonlFile<{n: number}>(path)
    expect(await file.readAll()).toEqual([{n: 1}])
    const streamed: Array<{n: number}> = []
    for await (const record of file.stream()) streamed.push(record)
    expect(streamed).toEqual([{n: 1}])
    await file.append({n: 3})
    await file.close()
    expect(await readFile(path, 'utf8')).toBe('{"n":1}\n{"n":3}\n')
  })
})
