import {execFile} from 'node:child_process'
import {lstat, mkdir, readdir, readFile, symlink, writeFile} from 'node:fs/promises'
import {createServer} from 'node:net'
import {promisify} from 'node:util'
import {join} from 'node:path'
import pg from 'pg'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {createCkanSchema} from '../../src/sandbox/ckan-schema.js'
import {seedCkanSite} from '../../src/sandbox/ckan-site-seeder.js'
import {makeThrowawayKey} from '../lib/backup/throwaway-key.js'
import {createTestDatabase, REAL_POSTGRES_URL, type TestDatabase} from '../helpers/test-database.js'
import {runCli} from '../helpers/run-cli.js'
import {exists, expectRefused, removeFolder, snapshotFolder, temporaryFolder} from './support.js'
import {skipWithoutRealPostgres} from '../helpers/requirements.js'

/** A port nobody listens on (bound, then released). */
async function closedPort(): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const {port} = server.address() as {port: number}
  await new Promise((resolve) => server.close(resolve))
  return port
}

const execFileAsync = promisify(execFile)

const ADMIN_KEY = '5d0b0c1e-9a4f-4b7e-8c3d-2f6a1b9e7c44'

describe('bad input: ckan.ini (audit)', () => {
  let dir: string
  beforeAll(async () => {
    dir = await temporaryFolder('ckan-migrate-bad-', {autoRemove: false})
  })
  afterAll(() => removeFolder(dir))

  const ini = async (name: string, text: string) => {
    const path = join(dir, name)
    await writeFile(path, text)
    return path
  }

  it('a garbage line', async () => {
    const path = await ini('garbage.ini', 'this is not ini\n[app:main]\nckan.site_id = default\n')
    await expectRefused(['audit', '--ckan-ini', path], {
      code: 'badInput',
      message: /garbage\.ini line 1 is not a setting, a section or a comment$/,
      suggestion: /Fix that line/,
    })
  })

  it('no [app:main] section', async () => {
    const path = await ini('nomain.ini', '[DEFAULT]\ndebug = false\n[server:main]\nport = 5000\n')
    await expectRefused(['audit', '--ckan-ini', path], {
      code: 'badInput',
      message: /nomain\.ini has no \[app:main\] section/,
    })
  })

  it('a broken %(...)s interpolation', async () => {
    const path = await ini(
      'interp.ini',
      '[app:main]\nsqlalchemy.url = postgresql://ckan:%(db_password)s@localhost/ckan\n',
    )
    await expectRefused(['audit', '--ckan-ini', path], {
      code: 'badInput',
      message: /sqlalchemy\.url cannot be interpolated: it refers to %\(db_password\)s, which is not set/,
    })
  })

  it('a use = config: chain to a missing file', async () => {
    const path = await ini('chain.ini', '[app:main]\nuse = config:base-missing.ini\nckan.site_id = default\n')
    await expectRefused(['audit', '--ckan-ini', path], {
      code: 'badInput',
      message: /base-missing\.ini does not exist \(named by use = config: in .*chain\.ini\)/,
    })
  })

  it('an unreadable ckan.ini (a folder)', async () => {
    // Tests run as root, who reads any file: a folder is what root cannot read as a file.
    await expectRefused(['audit', '--ckan-ini', dir], {code: 'badInput', message: /is a folder, not a file/})
  })

  it('a ckan.ini that does not exist', async () => {
    await expectRefused(['audit', '--ckan-ini', join(dir, 'nope.ini')], {
      code: 'badInput',
      message: /nope\.ini does not exist$/,
    })
  })
})

describe('bad input: the database URL (audit)', () => {
  it('an unreachable port', async () => {
    const port = await closedPort()
    await expectRefused(['audit', '--database-url', `postgresql://ckan:s3cret-pw@127.0.0.1:${port}/ckan_default`], {
      code: 'databaseUnreachable',
      message:
        /Cannot reach the CKAN database at postgresql:\/\/ckan:\*\*\*@127\.0\.0\.1:\d+\/ckan_default: connection refused/,
      secrets: ['s3cret-pw'],
    })
  })

  it('a socket folder (?host=) without PostgreSQL in it', async () => {
    await expectRefused(
      ['audit', '--database-url', 'postgresql://ckan:s3cret-pw@/ckan_default?host=/tmp/no-such-socket-dir'],
      {
        code: 'databaseUnreachable',
        message: /: no PostgreSQL socket at \/tmp\/no-such-socket-dir\/\.s\.PGSQL\.5432$/,
        secrets: ['s3cret-pw'],
      },
    )
  })

  it('a password given as ?password= (libpq reads it; it is masked like one in the user info)', async () => {
    const port = await closedPort()
    await expectRefused(
      ['audit', '--database-url', `postgresql://ckan@127.0.0.1:${port}/ckan_default?password=s3cret-pw`],
      {
        code: 'databaseUnreachable',
        message: /at postgresql:\/\/ckan@127\.0\.0\.1:\d+\/ckan_default\?password=\*\*\*: connection refused/,
        secrets: ['s3cret-pw'],
      },
    )
  })

  it('a password holding "/", "#" or "?", as SQLAlchemy allows: read, never shown', async () => {
    const port = await closedPort()
    for (const password of ['5432/s3cret-pw', '1#s3cret-pw', '1?s3cret-pw']) {
      await expectRefused(['audit', '--database-url', `postgresql://ckan:${password}@127.0.0.1:${port}/ckan_default`], {
        code: 'databaseUnreachable',
        message: /at postgresql:\/\/ckan:\*\*\*@127\.0\.0\.1:\d+\/ckan_default: connection refused/,
        secrets: ['s3cret-pw'],
      })
    }
  })

  it('an unknown role with a password (PostgreSQL refuses the login)', async (context) => {
    skipWithoutRealPostgres(context)
    const url = new URL(REAL_POSTGRES_URL!)
    url.username = 'no_such_role'
    url.password = 's3cret-pw'
    await expectRefused(['audit', '--database-url', url.href], {
      code: 'databaseUnreachable',
      message: /refused the login \(wrong user or password\)/,
      secrets: ['s3cret-pw'],
    })
  })

  it('a bad libpq ?options= (PostgreSQL refuses the session)', async (context) => {
    skipWithoutRealPostgres(context)
    const url = new URL(REAL_POSTGRES_URL!)
    url.search = '?options=-c%20statement_timeout%3Dsoon'
    await expectRefused(['audit', '--database-url', url.href], {
      code: 'databaseUnreachable',
      message: /PostgreSQL refused the session \(22023: invalid value for parameter "statement_timeout"/,
    })
  })

  it('a database that does not exist', async (context) => {
    skipWithoutRealPostgres(context)
    const url = new URL(REAL_POSTGRES_URL!)
    url.pathname = '/no_such_ckan_database'
    await expectRefused(['audit', '--database-url', url.href], {
      code: 'databaseUnreachable',
      message: /the database does not exist/,
    })
  })

  it('a database that is not CKAN’s (no "user" table)', async () => {
    const database = await createTestDatabase()
    await expectRefused(['audit', '--database-url', database.url], {
      code: 'notCkanDatabase',
      message: /is not a CKAN database: it has no "user" table/,
    })
  })

  it('a non-PostgreSQL URL scheme', async () => {
    await expectRefused(['audit', '--database-url', 'mysql://ckan:s3cret-pw@127.0.0.1/ckan'], {
      code: 'badInput',
      message: /scheme mysql:\/\/ is not PostgreSQL/,
      secrets: ['s3cret-pw'],
    })
  })

  it('a database URL that is not a URL', async () => {
    // (runCli splits arguments on spaces, so no spaces here.)
    await expectRefused(['audit', '--database-url', 'postgresql://ckan:s3cret-pw@[db-host/ckan'], {
      code: 'badInput',
      message: /is not a valid URL/,
      secrets: ['s3cret-pw'],
    })
  })

  it('no database at all (no --database-url, no --ckan-ini)', async () => {
    const previous = process.env.CKAN_INI
    delete process.env.CKAN_INI
    try {
      await expectRefused(['audit'], {code: 'badInput', message: /^No database given/})
    } finally {
      if (previous !== undefined) process.env.CKAN_INI = previous
    }
  })
})

describe('bad input: output files and backups (audit --csv, backup)', () => {
  let database: TestDatabase
  beforeAll(async () => {
    database = await createTestDatabase({autoRelease: false})
    const client = new pg.Client({connectionString: database.url})
    client.on('error', () => {})
    await client.connect()
    await createCkanSchema(client, '2.9')
    await seedCkanSite(client, {
      adminApiKey: ADMIN_KEY,
      seed: 'bad-input',
      siteId: 'default',
      users: 20,
      version: '2.9',
    })
    await client.end()
  })
  afterAll(() => database?.release())

  it('audit --csv under a regular file (a file in the way): no report, no stray file', async () => {
    const dir = await temporaryFolder()
    await writeFile(join(dir, 'plain-file'), 'x')
    await expectRefused(['audit', '--database-url', database.url, '--csv', join(dir, 'plain-file', 'users.csv')], {
      code: 'badInput',
      message: /A file is in the way where a folder is needed: .*plain-file$/,
      secrets: [ADMIN_KEY],
    })
    expect(await snapshotFolder(dir)).toEqual({'plain-file': expect.any(String)})
    expect(await readFile(join(dir, 'plain-file'), 'utf8')).toBe('x')
  })

  it('audit --csv onto a folder, a device, a pipe or a broken link: refused, nothing replaced', async () => {
    const dir = await temporaryFolder()
    await mkdir(join(dir, 'folder'))
    await execFileAsync('mkfifo', [join(dir, 'pipe')])
    await symlink(join(dir, 'nowhere.csv'), join(dir, 'broken-link'))
    for (const target of [join(dir, 'folder'), '/dev/null', join(dir, 'pipe'), join(dir, 'broken-link')]) {
      await expectRefused(['audit', '--database-url', database.url, '--csv', target], {
        code: 'badInput',
        message: /is not a regular file \(a folder, a device, a pipe or a broken link\)$/,
        secrets: [ADMIN_KEY],
      })
    }
    expect((await lstat('/dev/null')).isCharacterDevice()).toBe(true)
    expect((await lstat(join(dir, 'pipe'))).isFIFO()).toBe(true)
    expect((await lstat(join(dir, 'broken-link'))).isSymbolicLink()).toBe(true)
    expect((await readdir(dir)).sort()).toEqual(['broken-link', 'folder', 'pipe'])
  })

  it('audit --csv through a symbolic link writes the file it points to and keeps the link', async () => {
    const dir = await temporaryFolder()
    await writeFile(join(dir, 'real.csv'), 'old')
    await symlink(join(dir, 'real.csv'), join(dir, 'link.csv'))
    const run = await runCli(['audit', '--database-url', database.url, '--csv', join(dir, 'link.csv')])
    expect(run.exitCode).toBe(10)
    expect((await lstat(join(dir, 'link.csv'))).isSymbolicLink()).toBe(true)
    expect(await readFile(join(dir, 'real.csv'), 'utf8')).toMatch(/^\uFEFFid,name,state/)
  })

  it('backup with a recipient key file that does not exist: nothing written', async () => {
    const dir = join(await temporaryFolder(), 'backups')
    await expectRefused(
      ['backup', '--database-url', database.url, '--dir', dir, '--recipient-key', join(dir, '..', 'no-key.asc')],
      {
        code: 'badInput',
        message: /Cannot read the recipient key .*no-key\.asc: it does not exist/,
      },
    )
    expect(await exists(dir)).toBe(false)
  })

  it('backup with a recipient key that is not an OpenPGP public key: nothing written', async () => {
    const tmp = await temporaryFolder()
    const notAKey = join(tmp, 'key.asc')
    await writeFile(notAKey, '-----BEGIN PGP PUBLIC KEY BLOCK-----\n\ngarbage\n-----END PGP PUBLIC KEY BLOCK-----\n')
    await expectRefused(
      ['backup', '--database-url', database.url, '--dir', join(tmp, 'backups'), '--recipient-key', notAKey],
      {
        code: 'badInput',
        message: /key\.asc is not an OpenPGP public key/,
      },
    )
    expect(await exists(join(tmp, 'backups'))).toBe(false)
  })

  it('backup with no pg_dump on the PATH: exit 12, nothing written', async () => {
    const key = await makeThrowawayKey()
    const tmp = await temporaryFolder()
    const emptyBin = join(tmp, 'bin')
    await mkdir(emptyBin)
    const previous = process.env.PATH
    const previousPgBin = process.env.CKAN_MIGRATE_PG_BIN
    process.env.PATH = emptyBin
    // --pg-bin's environment variable would point past the PATH.
    delete process.env.CKAN_MIGRATE_PG_BIN
    try {
      await expectRefused(
        ['backup', '--database-url', database.url, '--dir', join(tmp, 'backups'), '--recipient-key', key.publicKeyFile],
        {
          code: 'toolMissing',
          message: /pg_dump/,
        },
      )
    } finally {
      process.env.PATH = previous
      if (previousPgBin !== undefined) process.env.CKAN_MIGRATE_PG_BIN = previousPgBin
    }
    expect(await exists(join(tmp, 'backups'))).toBe(false)
  })
})

describe('bad input: sandbox', () => {
  it('an unknown --ckan-version is a usage error', async () => {
    await expectRefused(['sandbox', '--ckan-version', '2.8'], {
      code: 'usage',
      message: /Expected --ckan-version=2\.8 to be one of: 2\.9, 2\.10, 2\.11/,
    })
  })

  it('an occupied --port: refused before anything starts, --dir not created', async () => {
    const server = createServer()
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    const {port} = server.address() as {port: number}
    const dir = join(await temporaryFolder(), 'sandbox')
    try {
      await expectRefused(['sandbox', '--port', String(port), '--dir', dir, '--users', '11'], {
        code: 'badInput',
        message: new RegExp(`^Port ${port} on 127\\.0\\.0\\.1 is already in use`),
      })
    } finally {
      await new Promise((resolve) => server.close(resolve))
    }
    expect(await exists(join(dir, 'ckan.ini'))).toBe(false)
  })
})
