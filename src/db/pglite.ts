// drizzle over embedded PGlite (real Postgres compiled to WASM) with pgvector: embedded mode keeps its
// data directory on disk, tests run it in memory. Node only.
import { mkdirSync } from 'node:fs';
import { PGlite } from '@electric-sql/pglite';
// PGlite 0.5 no longer ships pgvector as `@electric-sql/pglite/vector`; it is its own package now.
import { vector } from '@electric-sql/pglite-pgvector';
import { drizzle } from 'drizzle-orm/pglite';
import * as schema from './schema.ts';
import type { DbHandle } from './types.ts';

/** `dataDir` null or undefined: in memory. The directory is created when missing. */
export async function createPgliteDb(dataDir?: string | null): Promise<DbHandle> {
  if (dataDir) mkdirSync(dataDir, { recursive: true });
  const client = await PGlite.create(dataDir ?? undefined, { extensions: { vector } });
  const db = drizzle(client, { schema });
  return { kind: 'pglite', db, dataDir: dataDir ?? null, client, close: () => client.close() };
}
