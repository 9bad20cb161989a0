// A real Postgres + pgvector for integration tests: in-memory PGlite, migrated, served over the Postgres
// wire protocol on a free loopback port, so tests reach it through postgres.js exactly like production
// reaches Postgres.
//
// Several clients may connect at once: ./pglite-wire.ts serialises them on the one PGlite session per
// batch and holds the session across transactions (read its header for why @electric-sql/pglite-socket's
// PGLiteSocketServer is not used and what sharing one session means: no plain SET, and a transaction
// must not wait on another connection). A postgres.js pool of any size works; TEST_POOL keeps tests lean.
import type { PGlite } from '@electric-sql/pglite';
import { createPgliteDb } from '../../src/db/client.ts';
import { migrateDatabase } from '../../src/db/migrate.ts';
import { serveWire } from './pglite-wire.ts';

/** postgres.js options for test clients: a small pool; any size is correct (see above). */
export const TEST_POOL = { max: 2 } as const;

export interface PgliteServer {
  /** postgres://… URL of the served database. */
  url: string;
  /** The PGlite behind the socket, for assertions that bypass the wire (rarely needed). */
  pglite: PGlite;
  stop(): Promise<void>;
}

/** Starts an in-memory PGlite with pgvector, migrated unless `migrate: false`, on 127.0.0.1:<free port>. */
export async function startPgliteServer(options: { migrate?: boolean } = {}): Promise<PgliteServer> {
  const handle = await createPgliteDb(null);
  if (handle.kind !== 'pglite') throw new Error('unreachable: createPgliteDb returned a postgres handle');
  if (options.migrate ?? true) await migrateDatabase(handle);
  const server = await serveWire(handle.client, '127.0.0.1', 0);
  return {
    url: `postgres://postgres:postgres@127.0.0.1:${server.port}/postgres`,
    pglite: handle.client,
    async stop() {
      await server.close();
      await handle.close();
    },
  };
}
