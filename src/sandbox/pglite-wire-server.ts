import type {PGlite} from '@electric-sql/pglite'
import {createServer, type Server, type Socket} from 'node:net'

/**
 * PostgreSQL's wire protocol on 127.0.0.1 in front of one PGlite instance, so that `pg` clients
 * (the emulator's pool, the CLI's own connections) reach it as they reach a real server.
 *
 * It does what @electric-sql/pglite-socket's server does (the same rules for SSLRequest and
 * CancelRequest, one session shared by every connection, a connection in a transaction keeps
 * the session until it ends), but hands PGlite every complete message that arrived together in
 * one call, and writes the answer in one socket write. pglite-socket runs each message on its
 * own (Parse, Bind, Describe, Execute and Sync: five WASM calls and five writes for one `pg`
 * query), which cost as much as the queries themselves (docs/emulator.md, "Performance").
 *
 * The session also stays with a connection whose last batch ended inside an extended-protocol
 * exchange (no Sync yet), so another connection's messages never land between its Parse and
 * its Sync (which pglite-socket does not prevent: its unnamed statement could be replaced).
 */
export class PGliteWireServer {
  readonly #db: PGlite
  /** The connection that holds the session (in a transaction or in mid-exchange), if any. */
  #owner: Connection | undefined
  #processing = false
  readonly #queue: Batch[] = []
  #server: Server | undefined
  readonly #connections = new Set<Connection>()

  constructor(db: PGlite) {
    this.#db = db
  }

  /** Listens on 127.0.0.1:`port` (0: any free port) and returns the port. */
  async start(port = 0): Promise<number> {
    const server = createServer((socket) => this.#accept(socket))
    server.maxConnections = 64
    this.#server = server
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(port, '127.0.0.1', () => {
        server.off('error', reject)
        resolve()
      })
    })
    const address = server.address()
    return typeof address === 'object' && address ? address.port : port
  }

  async stop(): Promise<void> {
    for (const connection of this.#connections) connection.socket.destroy()
    this.#connections.clear()
    const server = this.#server
    this.#server = undefined
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()))
  }

  #accept(socket: Socket): void {
    socket.setNoDelay(true)
    const connection: Connection = {buffer: Buffer.alloc(0), closed: false, socket, started: false}
    this.#connections.add(connection)
    socket.on('data', (data: Buffer) => this.#receive(connection, data))
    socket.on('error', () => socket.destroy())
    socket.on('close', () => {
      connection.closed = true
      this.#connections.delete(connection)
      this.#drop(connection)
    })
  }

  /** Splits what arrived into complete messages; what is complete goes to PGlite as one batch. */
  #receive(connection: Connection, data: Buffer): void {
    const buffer = connection.buffer.length === 0 ? data : Buffer.concat([connection.buffer, data])
    let offset = 0
    let start = 0
    let last = 0
    const flush = (endsExchange: boolean) => {
      if (offset > start) this.#enqueue(connection, Buffer.from(buffer.subarray(start, offset)), endsExchange)
      start = offset
    }
    while (!connection.started && buffer.length - offset >= 8) {
      // The untyped messages of the start-up: SSLRequest, CancelRequest, then StartupMessage.
      const length = buffer.readInt32BE(offset)
      const code = buffer.readInt32BE(offset + 4)
      if (buffer.length - offset < length) break
      if (length === 8 && code === SSL_REQUEST_CODE) {
        // No TLS: 'N', and the client goes on in plain text (as pglite-socket answers).
        connection.socket.write('N')
      } else if (length !== 16 || code !== CANCEL_REQUEST_CODE) {
        // (A CancelRequest is dropped: PGlite has no backend to signal, and no answer is expected.)
        offset += length
        connection.started = true
        flush(true)
        break
      }
      offset += length
      start = offset
    }
    while (connection.started && buffer.length - offset >= 5) {
      const length = 1 + buffer.readInt32BE(offset + 1)
      if (buffer.length - offset < length) break
      last = buffer[offset]!
      offset += length
    }
    // Sync, a simple Query or Terminate ends an exchange; anything else leaves it open.
    flush(last === 0x53 || last === 0x51 || last === 0x58)
    connection.buffer = offset < buffer.length ? Buffer.from(buffer.subarray(offset)) : Buffer.alloc(0)
  }

  #enqueue(connection: Connection, batch: Buffer, endsExchange: boolean): void {
    this.#queue.push({batch, connection, endsExchange})
    if (!this.#processing) void this.#process()
  }

  async #process(): Promise<void> {
    this.#processing = true
    try {
      while (this.#queue.length > 0) {
        // The session's holder goes first; the others wait until it lets go.
        const index = this.#owner ? this.#queue.findIndex((entry) => entry.connection === this.#owner) : 0
        if (index === -1) break
        const {batch, connection, endsExchange} = this.#queue.splice(index, 1)[0]!
        if (connection.closed) continue
        const chunks: Buffer[] = []
        try {
          await this.#db.runExclusive(() =>
            this.#db.execProtocolRawStream(new Uint8Array(batch.buffer, batch.byteOffset, batch.length), {
              onRawData: (data) => {
                if (data.length > 0) chunks.push(Buffer.from(data))
              },
            }),
          )
        } catch {
          // PGlite itself failed (not an SQL error, which is an ErrorResponse): the connection ends.
          connection.socket.destroy()
          this.#owner = this.#db.isInTransaction() ? connection : undefined
          continue
        }
        this.#owner = this.#db.isInTransaction() || !endsExchange ? connection : undefined
        if (chunks.length > 0 && !connection.closed)
          connection.socket.write(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks))
      }
    } finally {
      this.#processing = false
    }
  }

  /** A connection gone: its queued messages are dropped and a transaction it left open is rolled back. */
  #drop(connection: Connection): void {
    for (let index = this.#queue.length - 1; index >= 0; index--)
      if (this.#queue[index]!.connection === connection) this.#queue.splice(index, 1)
    if (this.#owner !== connection) return
    this.#owner = undefined
    const rollback = this.#db.isInTransaction() ? this.#db.exec('ROLLBACK').catch(() => {}) : Promise.resolve()
    void rollback.then(() => {
      if (!this.#processing) void this.#process()
    })
  }
}

type Connection = {buffer: Buffer; closed: boolean; socket: Socket; started: boolean}
type Batch = {batch: Buffer; connection: Connection; endsExchange: boolean}

const SSL_REQUEST_CODE = 80_877_103
const CANCEL_REQUEST_CODE = 80_877_102
