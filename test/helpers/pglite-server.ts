// A real Postgres + pgvector for integration tests: in-memory PGlite, migrated, served over the Postgres
// wire protocol on a free loopback port, so tests reach it through postgres.js exactly like production
// reaches Postgres.
//
// Several clients may connect at once: ./pglite-wire.ts serialises them on the one PGlite session per
// batch and holds the session across transactions (read its header for why @electric-sql/pglite-socket's
// PGLiteSocketServer is not used and what sharing one session means: no plain SET, and a transaction
// must not wait on another connection). A postgres.js pool of any size works; TEST_POOL keeps tests lean.
//
// Start-up: a fresh PGlite runs initdb in WASM (3–8 s on a busy 2-core machine); loading a dump of an
// already migrated database takes ~1 s. The first migrated server writes such a dump to the OS temp dir,
// keyed by the PGlite and pgvector versions and the bytes of migrations/, and later ones load it.
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { PGlite } from '@electric-sql/pglite';
import { vector } from '@electric-sql/pglite-pgvector';
import { createPgliteDb } from '../../src/db/client.ts';
import { MIGRATIONS_DIR, migrateDatabase } from '../../src/db/migrate.ts';
import { serveWire } from './pglite-wire.ts';

/** postgres.js options for test clients: a small pool; any size is correct (see above). */
export const TEST_POOL = { max: 2 } as const;

export interface PgliteServer {
  /** postgres://… URL of the served database. */
  url: string;
  /**
   * The PGlite behind the socket, for assertions that bypass the wire (rarely needed). Direct use does not
   * take the wire server's session lock: only use it while no wire client is inside a transaction.
   */
  pglite: PGlite;
  stop(): Promise<void>;
}

function packageVersion(name: string): string {
  const entry = createRequire(import.meta.url).resolve(name); // …/<name>/dist/index.cjs
  return (JSON.parse(readFileSync(join(dirname(entry), '..', 'package.json'), 'utf8')) as { version: string })
    .version;
}

/** Where the dump of a freshly migrated database lives; changes whenever a migration or PGlite does. */
function snapshotPath(): string {
  const h = createHash('sha256');
  h.update(`${packageVersion('@electric-sql/pglite')} ${packageVersion('@electric-sql/pglite-pgvector')}\n`);
  for (const dir of [MIGRATIONS_DIR, join(MIGRATIONS_DIR, 'meta')]) {
    for (const f of readdirSync(dir, { withFileTypes: true }).filter((e) => e.isFile())) {
      h.update(f.name).update(readFileSync(join(dir, f.name)));
    }
  }
  return join(tmpdir(), `kvrag-pglite-migrated-${h.digest('hex').slice(0, 16)}.tar.gz`);
}

/** A migrated in-memory PGlite: from the cached dump when there is one, else fresh (and cache it). */
async function migratedPglite(): Promise<PGlite> {
  const path = snapshotPath();
  if (existsSync(path)) {
    return PGlite.create({ loadDataDir: new Blob([readFileSync(path)]), extensions: { vector } });
  }
  const handle = await createPgliteDb(null);
  if (handle.kind !== 'pglite') throw new Error('unreachable: createPgliteDb returned a postgres handle');
  await migrateDatabase(handle);
  const dump = await handle.client.dumpDataDir('gzip');
  // Write then rename, so a concurrent test process never reads half a file.
  const partial = `${path}.${process.pid}.partial`;
  writeFileSync(partial, new Uint8Array(await dump.arrayBuffer()));
  renameSync(partial, path);
  return handle.client;
}

/** Starts an in-memory PGlite with pgvector, migrated unless `migrate: false`, on 127.0.0.1:<free port>. */
export async function startPgliteServer(options: { migrate?: boolean } = {}): Promise<PgliteServer> {
  const pglite =
    (options.migrate ?? true) ? await migratedPglite() : await PGlite.create({ extensions: { vector } });
  const server = await serveWire(pglite, '127.0.0.1', 0);
  return {
    url: `postgres://postgres:postgres@127.0.0.1:${server.port}/postgres`,
    pglite,
    async stop() {
      await server.close();
      await pglite.close();
    },
  };
}
