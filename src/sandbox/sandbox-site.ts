import type {PGlite} from '@electric-sql/pglite'
import {randomBytes} from 'node:crypto'
import {join, resolve} from 'node:path'

import pg from 'pg'

import {signJwt} from '../lib/site/jwt.js'
import {EXIT_CODES, MigrateError} from '../lib/errors.js'
import {redactUrls} from '../lib/fs/redaction.js'
import {ensurePrivateFolder, writeFileAtomically, writeSecretFile} from '../lib/fs/secret-file.js'
import {Secret} from '../lib/secret.js'
import {type CkanEmulator, EMULATOR_INDEXES_SQL, startCkanEmulator} from './ckan-emulator.js'
import {createCkanSchema} from './ckan-schema.js'
import {ALEMBIC_HEADS, type CkanVersion} from '../lib/site/ckan-version.js'
import {describeSeededSite, seedCkanSite} from './ckan-site-seeder.js'
import {startEmbeddedPostgres} from './embedded-postgres.js'
import {utcNowTimestamp} from './emulator-json.js'
import type {FaultSettings} from './faults.js'
import {renderSandboxIni, type SandboxIniOptions} from './sandbox-ini.js'

export type SandboxSiteOptions = {
  /** Write the api_token.* lines (default true); false = a site upgraded from 2.8. */
  apiTokenLines?: boolean
  /** ckan.auth.create_default_api_keys (default false). */
  createDefaultApiKeys?: boolean
  /** Enable DataPusher (default true). */
  datapusher?: boolean
  /** Folder for ckan.ini and the credential file; created (0700) if missing. */
  dir: string
  /** Environment the emulator runs with (env overrides, envvars). Default process.env. */
  env?: NodeJS.ProcessEnv
  /** Add ckanext-envvars as the last plugin. */
  envvars?: boolean
  /** Enable expire_api_token. */
  expireApiToken?: boolean
  faults?: FaultSettings
  /** Create ckanext-harvest's table and sources (default true). */
  harvest?: boolean
  /** `api_token.nbytes` (default 60 on 2.9, 32 on 2.10+). */
  nbytes?: number
  /** Emulator port on 127.0.0.1 (default 0: any free port). */
  port?: number
  /** Seeder seed (default 'sandbox'): the same seed gives the same users. */
  seed?: string
  /**
   * A real PostgreSQL server's maintenance-database URL: a new database is created on it (and
   * dropped by stop()). Without it, PGlite runs in this process.
   */
  serverUrl?: string
  /** ckan.ini [app:main] overrides (`null` removes a key); see renderSandboxIni. */
  settings?: Record<string, null | string>
  /** Users to seed, including the site user and `admin` (default 50). */
  users?: number
  /** CKAN version (default '2.9'). */
  version?: CkanVersion
  /** Enable ckanext-xloader (default true). */
  xloader?: boolean
}

export type SandboxSite = {
  adminName: string
  /** 0600 file holding the admin's credential: its legacy key on 2.9, an API token on 2.10+. */
  apiKeyFile: string
  /** The admin's credential itself, for tests (never print it). */
  adminCredential: Secret
  ckanIni: string
  /** http://127.0.0.1:<port> */
  ckanUrl: string
  databaseUrl: string
  dir: string
  emulator: CkanEmulator
  engine: 'pglite' | 'postgres'
  /** Which site the seed models (describeSeededSite): its CKAN history and who holds keys. */
  model: string
  /** The PGlite instance itself when engine is 'pglite' (for pglite-tools' dump). */
  pglite?: PGlite
  siteUserName: string
  /** Stops the emulator and drops the database (or stops PGlite). Safe to call twice. */
  stop(): Promise<void>
  version: CkanVersion
}

const SITE_ID = 'default'

/** A secret as `ckan generate config` makes one: secrets.token_urlsafe(20)[:25]. */
function generatedSecret(): string {
  return randomBytes(20).toString('base64url').slice(0, 25)
}

type Database = {drop(): Promise<void>; engine: 'pglite' | 'postgres'; pglite?: PGlite; url: string}

async function createDatabase(serverUrl: string | undefined): Promise<Database> {
  if (!serverUrl) {
    const embedded = await startEmbeddedPostgres()
    return {drop: () => embedded.stop(), engine: 'pglite', pglite: embedded.db, url: embedded.url}
  }
  const name = `ckan_sandbox_${randomBytes(6).toString('hex')}`
  const admin = new pg.Client({connectionString: serverUrl})
  try {
    await admin.connect()
    await admin.query(`CREATE DATABASE ${name}`)
  } catch (error) {
    throw new MigrateError(
      `Cannot create a database on ${redactUrls(serverUrl)}: ${redactUrls((error as Error).message.split('\n')[0]!)}`,
      {
        cause: error,
        exitCode: EXIT_CODES.databaseUnreachable,
        suggestion:
          'Check the server is running and the user may CREATE DATABASE, or leave --database-url out to use PGlite.',
      },
    )
  } finally {
    await admin.end().catch(() => {})
  }
  const url = new URL(serverUrl)
  url.pathname = `/${name}`
  return {
    async drop() {
      const client = new pg.Client({connectionString: serverUrl})
      await client.connect()
      await client.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)
      await client.end()
    },
    engine: 'postgres',
    url: url.href,
  }
}

/** Inserts an api_token row for a user and returns the JWT CKAN would have issued for it. */
async function mintToken(
  client: pg.Client,
  userName: string,
  tokenName: string,
  secret: Secret,
  version: CkanVersion,
  nbytes: number,
): Promise<Secret> {
  const jti = randomBytes(nbytes).toString('base64url')
  const now = utcNowTimestamp()
  await client.query(
    `INSERT INTO api_token (id, name, user_id, created_at) SELECT $1, $2, id, $3::timestamp FROM "user" WHERE name = $4`,
    [jti, tokenName, now.text, userName],
  )
  return new Secret(signJwt({jti, iat: now.seconds}, secret, version === '2.9' ? '2.9' : '2.10+'))
}

/**
 * A CKAN-shaped site to test and rehearse against: a database with the schema of `version`
 * (plus ckanext-harvest), seeded users, a ckan.ini in CKAN's own format in `dir`, the action-API
 * emulator serving it, and a 0600 file with the `admin` sysadmin's credential.
 */
export async function startSandboxSite(options: SandboxSiteOptions): Promise<SandboxSite> {
  const version = options.version ?? '2.9'
  const dir = resolve(options.dir)
  const harvest = options.harvest ?? true
  const nbytes = options.nbytes ?? (version === '2.9' ? 60 : 32)
  try {
    await ensurePrivateFolder(dir)
  } catch (error) {
    throw new MigrateError(`Cannot create the folder ${dir}: ${(error as NodeJS.ErrnoException).code ?? 'error'}`, {
      cause: error,
      exitCode: EXIT_CODES.writeFailed,
      suggestion: 'Choose a --dir you can write to.',
    })
  }
  const database = await createDatabase(options.serverUrl)
  const cleanups: Array<() => Promise<void>> = [() => database.drop()]
  const cleanup = async () => {
    for (const step of cleanups.reverse()) await step().catch(() => {})
  }
  try {
    const client = new pg.Client({connectionString: database.url})
    await client.connect()
    const beakerSecret = generatedSecret()
    const secretKey = generatedSecret()
    const tokenSecret = new Secret(version === '2.11' ? secretKey : beakerSecret)
    let adminCredential: Secret
    let model = ''
    const tokens: Partial<Pick<SandboxIniOptions, 'datapusherApiToken' | 'xloaderApiToken'>> = {}
    try {
      await createCkanSchema(client, version, {harvest})
      const seeded = await seedCkanSite(client, {
        createDefaultApiKeys: options.createDefaultApiKeys,
        harvestSources: harvest,
        seed: options.seed ?? 'sandbox',
        siteId: SITE_ID,
        users: options.users ?? 50,
        version,
      })
      model = describeSeededSite(version, seeded, options.createDefaultApiKeys)
      for (const statement of EMULATOR_INDEXES_SQL) await client.query(statement)
      if (version === '2.9') {
        const row = await client.query<{apikey: string}>('SELECT apikey FROM "user" WHERE name = $1', [
          seeded.adminName,
        ])
        adminCredential = new Secret(row.rows[0]!.apikey)
      } else {
        adminCredential = await mintToken(client, seeded.adminName, 'sandbox', tokenSecret, version, nbytes)
        if (options.datapusher !== false)
          tokens.datapusherApiToken = (
            await mintToken(client, SITE_ID, 'datapusher', tokenSecret, version, nbytes)
          ).reveal()
        if (options.xloader !== false)
          tokens.xloaderApiToken = (await mintToken(client, SITE_ID, 'xloader', tokenSecret, version, nbytes)).reveal()
      }
    } finally {
      await client.end()
    }

    const emulator = await startCkanEmulator({
      databaseUrl: database.url,
      env: options.env,
      faults: options.faults,
      // PGlite is one session: named prepared statements of two pool connections would collide
      // ("prepared statement already exists"), and it runs one query at a time anyway.
      poolSize: database.engine === 'pglite' ? 1 : 16,
      port: options.port,
      version,
    })
    cleanups.push(() => emulator.stop())
    const ckanIni = join(dir, 'ckan.ini')
    const iniText = renderSandboxIni({
      apiTokenLines: options.apiTokenLines,
      beakerSecret,
      createDefaultApiKeys: options.createDefaultApiKeys,
      databaseUrl: database.url,
      datapusher: options.datapusher,
      envvars: options.envvars,
      expireApiToken: options.expireApiToken,
      nbytes,
      secretKey,
      settings: options.settings,
      siteId: SITE_ID,
      siteUrl: emulator.url,
      version,
      xloader: options.xloader,
      ...tokens,
    })
    const apiKeyFile = join(dir, 'admin-api-key')
    try {
      // The ini holds secrets (session secret, JWT secrets, tokens): 0600 like the key file.
      await writeFileAtomically(ckanIni, iniText, 0o600)
      await writeSecretFile(apiKeyFile, `${adminCredential.reveal()}\n`)
    } catch (error) {
      throw new MigrateError(`Cannot write into ${dir}: ${(error as NodeJS.ErrnoException).code ?? 'error'}`, {
        cause: error,
        exitCode: EXIT_CODES.writeFailed,
        suggestion: 'Choose a --dir you can write to.',
      })
    }
    await emulator.loadConfig(ckanIni)
    let stopped: Promise<void> | undefined
    return {
      adminCredential,
      adminName: 'admin',
      apiKeyFile,
      ckanIni,
      ckanUrl: emulator.url,
      databaseUrl: database.url,
      dir,
      emulator,
      engine: database.engine,
      model,
      ...(database.pglite ? {pglite: database.pglite} : {}),
      siteUserName: SITE_ID,
      stop() {
        stopped ??= cleanup()
        return stopped
      },
      version,
    }
  } catch (error) {
    await cleanup()
    throw error
  }
}

/**
 * Applies the schema changes of CKAN's migrations to `to` that matter to a migration tool, to a
 * sandbox database of an older version: 2.10's `user.last_active` (101), the unique index on
 * active users' emails (102, which fails on duplicate active emails exactly as CKAN's does),
 * `package.plugin_data` (103), the resource_view index (104); 2.11 drops the rating table (105).
 */
export async function upgradeSandboxDatabase(sql: Pick<pg.ClientBase, 'query'>, to: '2.10' | '2.11'): Promise<void> {
  // Alembic runs CKAN's pending migrations in one transaction: a failure leaves the database as it was.
  await sql.query('BEGIN')
  try {
    const current = (await sql.query<{version_num: string}>('SELECT version_num FROM alembic_version')).rows[0]
      ?.version_num
    if (current === ALEMBIC_HEADS['2.9']) {
      await sql.query('ALTER TABLE "user" ADD COLUMN last_active timestamp without time zone')
      await sql.query(
        `CREATE UNIQUE INDEX idx_only_one_active_email ON "user" USING btree (email, state) WHERE (state = 'active'::text)`,
      )
      await sql.query('ALTER TABLE package ADD COLUMN plugin_data jsonb')
      await sql.query('CREATE INDEX idx_view_resource_id ON resource_view USING btree (resource_id)')
      await sql.query('UPDATE alembic_version SET version_num = $1', [ALEMBIC_HEADS['2.10']])
    }
    if (to === '2.11' && (current === ALEMBIC_HEADS['2.9'] || current === ALEMBIC_HEADS['2.10'])) {
      await sql.query('DROP TABLE IF EXISTS rating')
      await sql.query('UPDATE alembic_version SET version_num = $1', [ALEMBIC_HEADS['2.11']])
    }
    await sql.query('COMMIT')
  } catch (error) {
    await sql.query('ROLLBACK')
    throw error
  }
}
