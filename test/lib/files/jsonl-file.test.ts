import {readFileSync} from 'node:fs'
import {mkdtemp, readFile, rm, stat, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {describe, expect, it, onTestFinished} from 'vitest'

import {JsonlFile} from '../../../src/lib/run/jsonl-file.js'

async function tempFile(name: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'ckan-migrate-jsonl-'))
  onTestFinished(() => rm(dir, {force: true, recursive: true}))
  return join(dir, name)
}

async function collect<T>(records: AsyncIterable<T>): Promise<T[]> {
  const all: T[] = []
  for await (const record of records) all.push(record)
  return all
}

describe('JsonlFile', () => {
  it('has every record on disk when append() resolves, grouped appends included, and keeps working after close()', async () => {
    const path = await tempFile('journal.jsonl')
    const file = new JsonlFile<{n: number}>(path)
    await Promise.all(Array.from({length: 50}, (_, n) => file.append({n})))
    expect(readFileSync(path, 'utf8').trim().split('\n')).toHaveLength(50)
    expect((await stat(path)).mode & 0o777).toBe(0o600)
    await file.close()
    await file.append({n: 50})
    await file.close()
    expect((await file.readAll()).map((record) => record.n)).toEqual(Array.from({length: 51}, (_, n) => n))
  })

  it('writes deferred records only with the next append, flush() or close(), in order', async () => {
    const path = await tempFile('journal.jsonl')
    const file = new JsonlFile<{n: number}>(path)
    await file.append({n: 1})
    file.appendDeferred({n: 2})
    expect(await file.readAll()).toEqual([{n: 1}])
    await file.append({n: 3})
    expect(await file.readAll()).toEqual([{n: 1}, {n: 2}, {n: 3}])
    file.appendDeferred({n: 4})
    await file.flush()
    expect(await file.readAll()).toEqual([{n: 1}, {n: 2}, {n: 3}, {n: 4}])
    file.appendDeferred({n: 5})
    await file.close()
    expect((await file.readAll()).at(-1)).toEqual({n: 5})
  })

  it('streams records one at a time, skipping a torn line and an empty or missing file', async () => {
    const path = await tempFile('tokens.jsonl')
    expect(await collect(new JsonlFile(path).stream())).toEqual([])
    const lines = Array.from({length: 5000}, (_, n) => JSON.stringify({n, pad: 'x'.repeat(n % 300)}))
    await writeFile(path, `${lines.join('\n')}\n{"n":5000,"to`)
    const streamed = await collect(new JsonlFile<{n: number}>(path).stream())
    expect(streamed.map((record) => record.n)).toEqual(Array.from({length: 5000}, (_, n) => n))
    // The next append ends the torn line first, so it cannot swallow the new record.
    const file = new JsonlFile<{n: number}>(path)
    await file.append({n: 5001})
    await file.close()
    expect((await collect(file.stream())).at(-1)).toEqual({n: 5001})
    expect((await readFile(path, 'utf8')).endsWith('{"n":5001}\n')).toBe(true)
  })
})
