import {readFileSync} from 'node:fs'
import {mkdtemp, rm, stat} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {describe, expect, it, onTestFinished} from 'vitest'

import type {CkanUserRow} from '../../../src/lib/site/user-selection.js'
import {openRunFolder} from '../../../src/lib/run/run-folder.js'
import {readScratch, ScratchWriter} from '../../../src/lib/run/scratch-file.js'
import {AnnouncedFeed} from '../../../src/lib/run/token-issuer.js'

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'ckan-migrate-feed-'))
  onTestFinished(() => rm(dir, {force: true, recursive: true}))
  return dir
}

function user(index: number): CkanUserRow {
  return {
    email: `u${index}@example.org`,
    hasLegacyKey: true,
    id: `id-${index}`,
    name: `user-${String(index).padStart(4, '0')}`,
    state: 'active',
    sysadmin: false,
  }
}

/** userIds with a create-sent entry in the journal file as it is on disk right now. */
function announcedOnDisk(path: string): Set<string> {
  const ids = new Set<string>()
  for (const line of readFileSync(path, 'utf8').split('\n')) {
    if (!line) continue
    const entry = JSON.parse(line) as {kind: string; userId: string}
    if (entry.kind === 'create-sent') ids.add(entry.userId)
  }
  return ids
}

describe('the issuing queue', () => {
  it('hands out users in order, each with its create-sent entry already on disk, and after a stop gives the rest', async () => {
    const dir = await tempDir()
    const run = await openRunFolder(join(dir, 'run'), {create: true, site: {ckanUrl: 'http://127.0.0.1:5000'}})
    onTestFinished(() => run.close())
    const queue = await ScratchWriter.create<CkanUserRow>(run.file('queue.jsonl'))
    for (let index = 0; index < 300; index += 1) await queue.write(user(index))
    await queue.end()
    expect((await stat(queue.path)).mode & 0o777).toBe(0o600)

    const feed = new AnnouncedFeed(run, readScratch<CkanUserRow>(queue.path), 64, (row) => `token for ${row.name}`)
    const taken: string[] = []
    // Four concurrent takers, like the worker pool; stop after 150 users.
    await Promise.all(
      Array.from({length: 4}, async () => {
        while (taken.length < 150) {
          const next = await feed.next()
          if (!next) return
          expect(announcedOnDisk(run.file('journal.jsonl')).has(next.user.id)).toBe(true)
          expect(next.tokenName).toBe(`token for ${next.user.name}`)
          taken.push(next.user.id)
        }
      }),
    )
    expect(taken).toEqual(Array.from({length: taken.length}, (_, index) => `id-${index}`))
    const rest: Array<{announced: boolean; user: CkanUserRow}> = []
    for await (const item of feed.rest()) rest.push(item)
    // Every user exactly once: taken, or left (announced ones first), in order.
    expect([...taken, ...rest.map((item) => item.user.id)]).toEqual(
      Array.from({length: 300}, (_, index) => `id-${index}`),
    )
    const onDisk = announcedOnDisk(run.file('journal.jsonl'))
    for (const item of rest) expect(onDisk.has(item.user.id)).toBe(item.announced)
    // Announced a window ahead, never the whole queue.
    expect(rest.some((item) => !item.announced)).toBe(true)
  })
})
