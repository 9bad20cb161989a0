// drizzle over embedded PGlite (real Postgres compiled to WASM) with pgvector: embedded mode keeps its
// data directory on disk, tests run it in memory. Node only.
//
// PGlite is single-process: two processes opening one data directory corrupt it. A lock file next to the
// directory (`<dataDir>.lock`, holding the owner's pid) makes the second opener fail with a clear message
// instead; a lock left by a process that no longer exists is taken over.
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { PGlite } from '@electric-sql/pglite';
// PGlite 0.5 no longer ships pgvector as `@electric-sql/pglite/vector`; it is its own package now.
import { vector } from '@electric-sql/pglite-pgvector';
import { drizzle } from 'drizzle-orm/pglite';
import * as schema from './schema.ts';
import type { DbHandle } from './types.ts';

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Takes `<dataDir>.lock` for this process or throws naming the holder. */
function lockDataDir(dataDir: string): () => void {
  const path = `${dataDir.replace(/\/+$/, '')}.lock`;
  mkdirSync(dirname(path), { recursive: true });
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      writeFileSync(path, String(process.pid), { flag: 'wx' });
      return () => rmSync(path, { force: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const holder = Number.parseInt(readFileSync(path, 'utf8'), 10);
      if (Number.isInteger(holder) && alive(holder)) {
        throw new Error(
          `embedded database ${dataDir} is in use by process ${holder}` +
            (holder === process.pid ? ' (this one)' : '') +
            `; stop it first, or delete ${path} if that process is not kvrag`,
        );
      }
      rmSync(path, { force: true }); // stale: its owner is gone
    }
  }
  throw new Error(`could not lock ${dataDir}`);
}

/** `dataDir` null or undefined: in memory. The directory is created when missing. */
export async function createPgliteDb(dataDir?: string | null): Promise<DbHandle> {
  let unlock = () => {};
  if (dataDir) {
    unlock = lockDataDir(dataDir);
    mkdirSync(dataDir, { recursive: true });
  }
  try {
    const client = await PGlite.create(dataDir ?? undefined, { extensions: { vector } });
    const db = drizzle(client, { schema });
    const close = async () => {
      try {
        await client.close();
      } finally {
        unlock();
      }
    };
    return { kind: 'pglite', db, dataDir: dataDir ?? null, client, close };
  } catch (err) {
    unlock();
    throw err;
  }
}
