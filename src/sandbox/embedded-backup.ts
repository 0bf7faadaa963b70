import type {PGlite} from '@electric-sql/pglite'
import {Readable} from 'node:stream'
import type {ReadableStream} from 'node:stream/web'

import {
  type BackupResult,
  type BackupWriteOptions,
  openRecipient,
  planBackup,
  readDatabaseFacts,
  writeEncryptedBackup,
} from '../lib/backup/backup-writer.js'
import {PlainSqlInspector} from '../lib/backup/plain-sql-inspector.js'
import {EXIT_CODES, MigrateError} from '../lib/errors.js'
import type {Queryable} from '../lib/site/ckan-database.js'

export type EmbeddedBackupOptions = BackupWriteOptions & {
  /** The sandbox's PGlite instance. pglite-tools runs DEALLOCATE ALL on it afterwards. */
  db: PGlite
}

/**
 * Backs up the embedded sandbox (PGlite) with pglite-tools' pg_dump build, whose only output
 * is plain SQL (`ckan-db_<site>_<time>_<key>.sql.gpg`): the machine's pg_dump is older than
 * PGlite's PostgreSQL and refuses to dump it. The encryption, sidecar and durable write are the
 * `backup` command's own (src/lib/backup/backup-writer.ts); only the dump's source differs.
 */
export async function backupEmbeddedDatabase(options: EmbeddedBackupOptions): Promise<BackupResult> {
  const encryption = await openRecipient(options.recipient)
  const facts = await readDatabaseFacts({query: async (text: string) => options.db.query(text)} as unknown as Queryable)
  const plan = await planBackup({
    database: 'embedded PGlite',
    dir: options.dir,
    dryRun: options.dryRun,
    dumpedWith: 'pglite-tools pgDump',
    dumpFormat: 'plain-sql',
    encryption,
    facts,
    now: options.now,
    site: options.site,
  })
  if (options.dryRun) return plan.result
  const {pgDump} = await import('@electric-sql/pglite-tools/pg_dump')
  // The WASM pg_dump builds the dump in memory (its virtual file system); it never touches the disk.
  const searchPath =
    (await options.db.query<{search_path: string}>('SHOW search_path')).rows[0]?.search_path ?? 'public'
  const dumped = await pgDump({pg: options.db})
  // The WASM pg_dump opens its snapshot transaction on PGlite's one shared session and exits
  // without ending it (a real server ends it when the connection closes). Left open, the socket
  // server would serve only its last client and every other (the emulator) would wait forever.
  // It also empties search_path for the session, which every other client shares.
  if (options.db.isInTransaction()) await options.db.exec('ROLLBACK')
  await options.db.query(`SELECT pg_catalog.set_config('search_path', $1, false)`, [searchPath])
  const inspector = new PlainSqlInspector()
  return writeEncryptedBackup(
    plan,
    {
      async finish() {
        const report = inspector.finish()
        if (!report.looksLikeDump || !report.complete) {
          throw new MigrateError('pglite-tools produced an incomplete dump', {
            exitCode: EXIT_CODES.unexpected,
            suggestion: 'Run the backup again; report it if it repeats.',
          })
        }
        return report.tables
      },
      inspect: async (chunk) => inspector.feed(chunk),
      inspected() {},
      output: Readable.fromWeb(dumped.stream() as ReadableStream<Uint8Array>),
      stop() {},
    },
    {onProgress: options.onProgress, signal: options.signal},
  )
}
