import {ESLint} from 'eslint'
import {describe, expect, it} from 'vitest'

import {PROJECT_ROOT} from '../helpers/run-cli.js'

/**
 * The layer order of docs/architecture.md is enforced by eslint.config.js: these run the
 * project's own lint configuration on a file that breaks each rule, as if it were in the tree.
 */
async function restrictedImports(filePath: string, code: string): Promise<string[]> {
  const eslint = new ESLint({cwd: PROJECT_ROOT})
  const [result] = await eslint.lintText(code, {filePath})
  return result!.messages.filter((message) => message.ruleId === 'no-restricted-imports').map((m) => m.message)
}

describe('the layer rule (eslint.config.js)', () => {
  it('refuses an import of the sandbox from production code, and of PGlite', async () => {
    const fromDomain = await restrictedImports(
      'src/lib/audit/uses-sandbox.ts',
      "import {startSandbox} from '../../sandbox/start-sandbox.js'\nexport const x = startSandbox\n",
    )
    expect(fromDomain.join('\n')).toMatch(/never imports the sandbox/)
    const fromWorkflow = await restrictedImports(
      'src/lib/workflows/uses-pglite.ts',
      "import {PGlite} from '@electric-sql/pglite'\nexport const x = PGlite\n",
    )
    expect(fromWorkflow.join('\n')).toMatch(/never imports the sandbox/)
    const fromCommand = await restrictedImports(
      'src/commands/uses-emulator.ts',
      "import {CkanEmulator} from '../sandbox/ckan-emulator.js'\nexport const x = CkanEmulator\n",
    )
    expect(fromCommand.join('\n')).toMatch(/never imports the sandbox/)
  })

  it('lets the sandbox command and the sandbox itself use the sandbox', async () => {
    expect(
      await restrictedImports(
        'src/commands/sandbox.ts',
        "import {startSandbox} from '../sandbox/start-sandbox.js'\nexport const x = startSandbox\n",
      ),
    ).toEqual([])
    expect(
      await restrictedImports(
        'src/sandbox/new-part.ts',
        "import {readCkanIni} from '../lib/site/ckan-ini.js'\nexport const x = readCkanIni\n",
      ),
    ).toEqual([])
  })

  it('keeps oclif in the CLI layer, workflows above the domain, and fs below it', async () => {
    expect(
      (
        await restrictedImports(
          'src/lib/site/uses-oclif.ts',
          "import {Flags} from '@oclif/core'\nexport const x = Flags\n",
        )
      ).join(''),
    ).toMatch(/oclif/)
    expect(
      (
        await restrictedImports(
          'src/lib/run/uses-workflow.ts',
          "import {issueTokens} from '../workflows/issue-tokens.js'\nexport const x = issueTokens\n",
        )
      ).join(''),
    ).toMatch(/workflows call the domain/)
    expect(
      (
        await restrictedImports(
          'src/lib/fs/uses-site.ts',
          "import {readCkanIni} from '../site/ckan-ini.js'\nexport const x = readCkanIni\n",
        )
      ).join(''),
    ).toMatch(/below the domain/)
    expect(
      await restrictedImports(
        'src/lib/workflows/fine.ts',
        "import {readCkanIni} from '../site/ckan-ini.js'\nexport const x = readCkanIni\n",
      ),
    ).toEqual([])
  })
})
