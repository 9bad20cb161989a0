// The database of a configuration (Node entries: `kvrag serve`, `kvrag migrate`, workers): postgres.js for
// config.databaseUrl, else embedded PGlite with pgvector under `${config.dataDir}/pg`. Both use the same
// schema, so code above sees one Database type. The Workers entry imports ./postgres.ts directly instead,
// to keep PGlite out of its bundle.
import type { Config } from '../config.ts';
import { createPgliteDb } from './pglite.ts';
import { createPostgresDb } from './postgres.ts';
import type { DbHandle } from './types.ts';

export { createPgliteDb } from './pglite.ts';
export { createPostgresDb, type PostgresOptions } from './postgres.ts';
export { type Database, type DbHandle, queryRows, type Schema } from './types.ts';

export async function openDatabase(config: Config): Promise<DbHandle> {
  if (config.databaseUrl)
    return createPostgresDb(config.databaseUrl, { statementTimeoutMs: config.dbStatementTimeoutMs });
  return createPgliteDb(`${config.dataDir.replace(/\/+$/, '')}/pg`);
}
