import {PGlite} from '@electric-sql/pglite'

import {PGliteWireServer} from './pglite-wire-server.js'

export type EmbeddedPostgres = {
  /** The PGlite instance itself (for pglite-tools' dump). */
  db: PGlite
  stop(): Promise<void>
  /** postgresql:// URL of the socket server on 127.0.0.1. */
  url: string
}

export type EmbeddedPostgresOptions = {
  /** Folder for PGlite's data; in memory when absent. */
  dataDir?: string
  /** Port on 127.0.0.1; 0 (default) picks a free one. */
  port?: number
}

/**
 * PostgreSQL as WASM (PGlite) behind a wire-protocol server (pglite-wire-server.ts), so the same
 * `pg` code runs against it and against a real server. PGlite is one session: the server queues
 * queries and keeps an open transaction's queries together, so several clients can connect
 * (the emulator's pool and the CLI's single connection) as long as each keeps transactions short.
 */
export async function startEmbeddedPostgres(options: EmbeddedPostgresOptions = {}): Promise<EmbeddedPostgres> {
  const db = options.dataDir ? new PGlite(options.dataDir) : new PGlite()
  await db.waitReady
  const server = new PGliteWireServer(db)
  let port: number
  try {
    port = await server.start(options.port ?? 0)
  } catch (error) {
    await db.close()
    throw error
  }
  return {
    db,
    async stop() {
      await server.stop()
      await db.close()
    },
    url: `postgresql://postgres@127.0.0.1:${port}/postgres`,
  }
}
