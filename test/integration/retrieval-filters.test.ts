// Compiled attribute filters executed by real Postgres (PGlite over the wire protocol, through
// postgres.js as in production): semantics per operator and type, and injection attempts.
import { sql as dsql } from 'drizzle-orm';
import { drizzle } from 'drizzle-orm/pglite';
import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type AttributeFilter, compileFilter, parseAttributeFilter } from '../../src/retrieval/filters.ts';
import { filterSql } from '../../src/retrieval/filters-drizzle.ts';
import { type PgliteServer, startPgliteServer, TEST_POOL } from '../helpers/pglite-server.ts';

const ROWS: [number, unknown][] = [
  [1, { author: 'Ada', year: 2020, lang: 'en', draft: false, score: 9.5 }],
  [2, { author: 'Bob', year: 1999, lang: 'de', draft: true, score: 10 }],
  [3, { author: 'ada', year: '2021', lang: 'en' }],
  [4, { year: 2021.0, lang: 'fr', score: 1e2 }],
  [5, {}],
  [6, null],
  [7, { author: 'O\'Brien"; DROP TABLE docs; --', year: 10 }],
  [8, { author: 'Émile', year: 500 }],
];

let pg: PgliteServer;
let sql: postgres.Sql;

beforeAll(async () => {
  pg = await startPgliteServer({ migrate: false });
  sql = postgres(pg.url, { ...TEST_POOL, onnotice: () => {} });
  await sql`CREATE TABLE docs (id int PRIMARY KEY, attributes jsonb)`;
  for (const [id, attrs] of ROWS) {
    await sql.unsafe('INSERT INTO docs (id, attributes) VALUES ($1, $2::text::jsonb)', [
      id,
      attrs === null ? null : JSON.stringify(attrs),
    ]);
  }
});
afterAll(async () => {
  await sql?.end();
  await pg?.stop();
});

/**
 * Ids matching a filter, validated and compiled as a route would: through postgres.js with positional
 * parameters after one of the query's own, and as drizzle SQL on the PGlite driver; both must agree.
 */
async function ids(raw: unknown): Promise<number[]> {
  const filter = parseAttributeFilter(raw);
  const f = compileFilter(filter, { startIndex: 2 });
  const rows = await sql.unsafe(`SELECT id FROM docs WHERE id > $1 AND ${f.sql} ORDER BY id`, [
    0,
    ...f.params,
  ]);
  const viaWire = rows.map((r) => r.id as number);
  const res = await drizzle(pg.pglite).execute<{ id: number }>(
    dsql`SELECT id FROM docs WHERE id > ${0} AND ${filterSql(filter)} ORDER BY id`,
  );
  expect(res.rows.map((r) => r.id)).toEqual(viaWire);
  return viaWire;
}

const eq = (key: string, value: string | number | boolean): AttributeFilter => ({ type: 'eq', key, value });

describe('attribute filters in Postgres', () => {
  it('eq / ne compare with type: strings as text, numbers numerically, booleans', async () => {
    expect(await ids(eq('author', 'Ada'))).toEqual([1]);
    expect(await ids(eq('year', 2021))).toEqual([4]); // 2021.0 equals 2021; the string "2021" does not
    expect(await ids(eq('year', '2021'))).toEqual([3]);
    expect(await ids(eq('score', 100))).toEqual([4]);
    expect(await ids(eq('score', 9.5))).toEqual([1]);
    expect(await ids(eq('draft', false))).toEqual([1]);
    expect(await ids(eq('draft', true))).toEqual([2]);
    // ne is the complement of eq: rows without the key (and NULL attributes) match
    expect(await ids({ type: 'ne', key: 'author', value: 'Ada' })).toEqual([2, 3, 4, 5, 6, 7, 8]);
  });

  it('gt/gte/lt/lte: numbers numerically, strings in byte order, other types never match', async () => {
    expect(await ids({ type: 'gt', key: 'year', value: 2000 })).toEqual([1, 4]);
    expect(await ids({ type: 'gte', key: 'year', value: 2020 })).toEqual([1, 4]);
    expect(await ids({ type: 'lt', key: 'year', value: 1000 })).toEqual([7, 8]); // 10 < 500 < 1000: numeric, not text
    expect(await ids({ type: 'lte', key: 'year', value: 1999 })).toEqual([2, 7, 8]);
    expect(await ids({ type: 'gt', key: 'author', value: 'B' })).toEqual([2, 3, 7, 8]);
    expect(await ids({ type: 'lt', key: 'author', value: 'B' })).toEqual([1]);
    expect(await ids({ type: 'gte', key: 'year', value: '2021' })).toEqual([3]);
  });

  it('in / nin with arrays of strings and numbers', async () => {
    expect(await ids({ type: 'in', key: 'lang', value: ['en', 'fr'] })).toEqual([1, 3, 4]);
    expect(await ids({ type: 'in', key: 'year', value: [1999, '2021'] })).toEqual([2, 3]);
    expect(await ids({ type: 'nin', key: 'lang', value: ['en'] })).toEqual([2, 4, 5, 6, 7, 8]);
  });

  it('and / or, nested', async () => {
    expect(
      await ids({ type: 'and', filters: [eq('lang', 'en'), { type: 'gte', key: 'year', value: 2020 }] }),
    ).toEqual([1]);
    expect(
      await ids({ type: 'or', filters: [eq('author', 'Bob'), { type: 'in', key: 'lang', value: ['fr'] }] }),
    ).toEqual([2, 4]);
    expect(
      await ids({
        type: 'and',
        filters: [
          { type: 'or', filters: [eq('lang', 'en'), eq('lang', 'de')] },
          { type: 'ne', key: 'draft', value: true },
        ],
      }),
    ).toEqual([1, 3]);
  });

  it('hostile values are data, not SQL', async () => {
    expect(await ids(eq('author', 'O\'Brien"; DROP TABLE docs; --'))).toEqual([7]);
    expect(await ids(eq('author', "x' OR '1'='1"))).toEqual([]);
    expect(await ids({ type: 'in', key: 'author', value: ['"]', "'])::jsonb OR true --"] })).toEqual([]);
    // an unvalidated hostile key reaches Postgres only as a parameter
    const f = compileFilter({ type: 'eq', key: "author') OR true OR ('", value: 'x' } as AttributeFilter);
    expect((await sql.unsafe(`SELECT id FROM docs WHERE ${f.sql}`, f.params)).length).toBe(0);
    const [{ n }] = await sql`SELECT count(*)::int AS n FROM docs`;
    expect(n).toBe(ROWS.length);
  });
});
