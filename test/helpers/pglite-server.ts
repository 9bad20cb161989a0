// A real Postgres + pgvector for integration tests: in-memory PGlite, migrated, served over the Postgres
// wire protocol on a free loopback port with @electric-sql/pglite-socket, so tests reach it through
// postgres.js exactly like production reaches Postgres.
//
// How pglite-socket shares one PGlite between connections (read from its source, v0.2.17):
// - PGlite is ONE backend session. Every connection's messages go through one global FIFO queue and run
//   one at a time, so session state (SET, prepared statement names, temp tables) is shared by all clients.
// - While an explicit transaction (BEGIN … COMMIT) is open, only messages of the connection that opened
//   it are run; other connections wait. So a transaction must never wait on a query of another connection
//   (it would deadlock), and `SET` leaks across connections (use `SET LOCAL` inside a transaction).
// - Messages are queued one by one, not per Sync. Outside a transaction, two connections that send
//   extended-protocol batches (Parse/Bind/Execute/Sync) at the same moment can interleave inside the one
//   session and clobber each other's unnamed portal. Hence: give each postgres.js client `max: 1`
//   (TEST_POOL), and prefer one client per test process.
// - `maxConnections` is a hard cap (extra sockets are refused); we allow several so an app, a worker and
//   the test itself can each hold a connection.
import { PGlite } from '@electric-sql/pglite';
import { vector } from '@electric-sql/pglite-pgvector';
import { PGLiteSocketServer } from '@electric-sql/pglite-socket';
import { type DbHandle, createPgliteDb } from '../../src/db/client.ts';
import { migrateDatabase } from '../../src/db/migrate.ts';

/** postgres.js options for clients of this server: one connection each (see above). */
export const TEST_POOL = { max: 1 } as const;

export interface PgliteServer {
  /** postgres://… URL of the served database. */
  url: string;
  /** The PGlite behind the socket, for assertions that bypass the wire (rarely needed). */
  pglite: PGlite;
  stop(): Promise<void>;
}

/** Starts an in-memory, migrated PGlite with pgvector on 127.0.0.1:<free port>. */
export async function startPgliteServer(options: { migrate?: boolean } = {}): Promise<PgliteServer> {
  const handle: DbHandle = await createPgliteDb(null);
  if (handle.kind !== 'pglite') throw new Error('unreachable');
  if (options.migrate ?? true) await migrateDatabase(handle);
  const server = new PGLiteSocketServer({
    db: handle.client,
    host: '127.0.0.1',
    port: 0,
    maxConnections: 32,
  });
  await server.start();
  // getServerConn() is "host:port" once listening (port 0 → the port the OS chose).
  const url = `postgres://postgres:postgres@${server.getServerConn()}/postgres`;
  return {
    url,
    pglite: handle.client,
    async stop() {
      await server.stop();
      await handle.close();
    },
  };
}

// Re-exported so helpers can build an unmigrated PGlite with the same extensions if they need one.
export { PGlite, vector };
