import {readFile} from 'node:fs/promises'
import {describe, expect, it} from 'vitest'

import {EXIT_CODES} from '../src/lib/errors.js'

describe('docs/exit-codes.md', () => {
  it('documents every exit code with its name, and no code that does not exist', async () => {
    const page = await readFile(new URL('../docs/exit-codes.md', import.meta.url), 'utf8')
    for (const [name, code] of Object.entries(EXIT_CODES)) {
      expect(page, `docs/exit-codes.md is missing ${name}`).toMatch(new RegExp(`^\\| ${code} \\| ${name} \\|`, 'm'))
    }
    const documented = [...page.matchAll(/^\| (\d+) \| (\w+) \|/gm)].map((match) => Number(match[1]))
    expect(documented.sort((a, b) => a - b)).toEqual(Object.values(EXIT_CODES).sort((a, b) => a - b))
  })
})
