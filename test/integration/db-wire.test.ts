// The PGlite wire server of the test helpers under the access patterns of the service: several clients at
// once, transactions while other clients query, failing statements, and clients vanishing mid-transaction.
// (With @electric-sql/pglite-socket's server the first case loses statements; see pglite-wire.ts.)
import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type PgliteServer, startPgliteServer } from '../helpers/pglite-server.ts';

describe('PGlite wire server', () => {
  let server: PgliteServer;
  const clients: postgres.Sql[] = [];
  const connect = (max = 1) => {
    const c = postgres(server.url, { max, onnotice: () => {} });
    clients.push(c);
    return c;
  };

  beforeAll(async () => {
    server = await startPgliteServer();
  });
  afterAll(async () => {
    await Promise.all(clients.map((c) => c.end({ timeout: 1 })));
    await server?.stop();
  });

  it('serves concurrent clients and pooled connections without mixing their statements', async () => {
    const pool = [connect(), connect(), connect(4)];
    const results = await Promise.all(
      pool.flatMap((sql, c) =>
        Array.from({ length: 60 }, async (_, i) => {
          const v = c * 1000 + i;
          // Two statement shapes so prepared statements and unnamed portals of different clients alternate.
          const [row] =
            i % 2
              ? await sql`select ${v}::int as v, ${`c${c}`}::text as who`
              : await sql`select ${v}::int + 0 as v, ${`c${c}`}::text as who, 1 as extra`;
          return row.v === v && row.who === `c${c}`;
        }),
      ),
    );
    expect(results.filter((ok) => !ok)).toEqual([]);
    expect(results).toHaveLength(180);
  });

  it('runs another client only after an open transaction ends', async () => {
    const a = connect();
    const b = connect();
    await a`create table wire_tx (id int)`;
    const order: string[] = [];
    let inserted!: () => void;
    const insertedP = new Promise<void>((r) => (inserted = r));
    const tx = a.begin(async (t) => {
      await t`insert into wire_tx values (1)`;
      inserted();
      await new Promise((r) => setTimeout(r, 200));
      order.push('commit');
    });
    await insertedP;
    const read = b`select count(*)::int as n from wire_tx`.then((rows) => {
      order.push('read');
      return rows[0].n;
    });
    await tx;
    expect(await read).toBe(1);
    expect(order).toEqual(['commit', 'read']);
  });

  it('a failing statement errors only for its client', async () => {
    const a = connect();
    const b = connect();
    const [bad, ...good] = await Promise.allSettled([
      a`selec 1`,
      ...Array.from({ length: 10 }, (_, i) => b`select ${i}::int as i`),
    ]);
    expect(bad).toMatchObject({ status: 'rejected', reason: { code: '42601' } });
    expect(good.map((r) => r.status)).toEqual(Array(10).fill('fulfilled'));
    expect(await a`select 2 as two`).toEqual([{ two: 2 }]);
  });

  it('rolls back the transaction of a client that disconnects inside it, and serves the others', async () => {
    const a = connect();
    await a`create table wire_gone (id int)`;
    let inserted!: () => void;
    const insertedP = new Promise<void>((r) => (inserted = r));
    const tx = a
      .begin(async (t) => {
        await t`insert into wire_gone values (1)`;
        inserted();
        await new Promise(() => {}); // never commits
      })
      .catch((e: Error) => e);
    await insertedP;
    await a.end({ timeout: 0 });
    expect(await tx).toBeInstanceOf(Error);
    const b = connect();
    expect(await b`select count(*)::int as n from wire_gone`).toEqual([{ n: 0 }]);
  });
});
