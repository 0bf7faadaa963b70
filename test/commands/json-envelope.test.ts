import {describe, expect, it} from 'vitest'

import {runCliJson} from '../helpers/run-cli.js'

describe('--json envelope', () => {
  it('names oclif usage errors "usage" with exit 2, in one JSON document', async () => {
    const {exitCode, json} = await runCliJson(['verify', '--concurrency', 'many'])
    expect(exitCode).toBe(2)
    expect(json).toMatchObject({error: {code: 'usage'}, status: 2})
  })

  it('reports a domain error with its documented code, message and suggestion, and nothing else', async () => {
    const {exitCode, json} = await runCliJson(['verify', '--out', '/nonexistent/run-folder'])
    expect(exitCode).toBe(7)
    expect(Object.keys(json).sort()).toEqual(['error', 'status', 'warnings'])
    expect(Object.keys(json.error!).sort()).toEqual(['code', 'message', 'suggestion'])
    expect(json.error).toMatchObject({code: 'badInput'})
    expect(json.error!.message).not.toContain('\n')
  })
})
