// Postgres statement_timeout (issue 19 §5): every connection postgres.js opens for kvrag asks the server
// for KVRAG_DB_STATEMENT_TIMEOUT_MS in its startup message, which Postgres applies to the session before
// the first statement. PGlite (the test database) runs in one thread and enforces no timeouts, so what is
// checked here is the startup message itself, read by a TCP listener that speaks just enough of the
// protocol to record it.
import { createServer, type Server } from 'node:net';
import { sql } from 'drizzle-orm';
import type postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.ts';
import { createPostgresDb } from '../../src/db/postgres.ts';
import { waitFor } from '../helpers/job-queue-suite.ts';

let server: Server;
let port: number;
const startups: Record<string, string>[] = [];
const SSL_REQUEST = 80877103;

beforeAll(async () => {
  server = createServer((socket) => {
    let buf = Buffer.alloc(0);
    socket.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      while (buf.length >= 8 && buf.length >= buf.readInt32BE(0)) {
        const len = buf.readInt32BE(0);
        const code = buf.readInt32BE(4);
        const body = buf.subarray(8, len);
        buf = buf.subarray(len);
        if (code === SSL_REQUEST) {
          socket.write('N');
          continue;
        }
        const parts = body.toString('utf8').split('\0');
        const params: Record<string, string> = {};
        for (let i = 0; i + 1 < parts.length; i += 2) if (parts[i]) params[parts[i]] = parts[i + 1];
        startups.push(params);
        socket.destroy();
      }
    });
    socket.on('error', () => {});
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  port = (server.address() as { port: number }).port;
});
afterAll(async () => {
  await new Promise((r) => server.close(r));
});

let n = 0;
/** The startup parameters of a pool's first connection (each pool names its own database, so a late
 *  reconnect of an earlier pool is never taken for it). */
async function startupOf(statementTimeoutMs?: number): Promise<Record<string, string>> {
  const database = `kvrag${n++}`;
  const db = createPostgresDb(`postgres://kvrag@127.0.0.1:${port}/${database}`, {
    max: 1,
    statementTimeoutMs,
  });
  const query = db.db.execute(sql`select 1`).catch(() => {});
  const got = await waitFor(() => startups.find((p) => p.database === database), 'a startup message');
  await (db.client as postgres.Sql).end({ timeout: 0 }).catch(() => {});
  await query;
  return got!;
}

describe('Postgres statement_timeout', () => {
  it('every connection asks for the configured statement_timeout at startup', async () => {
    const config = loadConfig({ KVRAG_DATABASE_URL: `postgres://kvrag@127.0.0.1:${port}/kvrag` });
    expect(config.dbStatementTimeoutMs).toBe(30_000);
    const params = await startupOf(config.dbStatementTimeoutMs);
    expect(params).toMatchObject({ user: 'kvrag', statement_timeout: '30000' });
    expect((await startupOf(1500)).statement_timeout).toBe('1500');
  });

  it('0 leaves the server default', async () => {
    expect(loadConfig({ KVRAG_DB_STATEMENT_TIMEOUT_MS: '0' }).dbStatementTimeoutMs).toBe(0);
    expect((await startupOf(0)).statement_timeout).toBeUndefined();
  });
});
