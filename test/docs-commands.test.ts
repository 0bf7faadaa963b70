import {Config} from '@oclif/core'
import {existsSync} from 'node:fs'
import {readFile} from 'node:fs/promises'
import {describe, expect, it} from 'vitest'

import {PROJECT_ROOT} from './helpers/run-cli.js'

describe('docs/commands', () => {
  it('has a page for every command that mentions every flag and shows an example', async () => {
    const config = await Config.load({ignoreManifest: true, root: PROJECT_ROOT})
    const commands = config.commands.filter((command) => !command.hidden && command.pluginName === config.name)
    for (const command of commands) {
      const page = new URL(`../docs/commands/${command.id.replaceAll(':', '-')}.md`, import.meta.url)
      expect(existsSync(page), `docs/commands/${command.id}.md is missing`).toBe(true)
      const text = await readFile(page, 'utf8')
      for (const flag of Object.keys(command.flags)) {
        expect(text, `docs/commands/${command.id}.md does not mention --${flag}`).toContain(`--${flag}`)
      }
      expect(text).toMatch(/ckan-migrate [a-z-]+ --/)
      expect(command.examples?.length ?? 0, `${command.id} has no --help examples`).toBeGreaterThan(0)
    }
  })
})
