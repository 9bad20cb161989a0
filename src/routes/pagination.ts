// Cursor pagination shaped like OpenAI's lists: `limit` (1–100, default 20), `order` (asc|desc by
// creation time, default desc), `after` / `before` = the id of an object from a previous page. Keyset
// over (created_at, id), compared inside Postgres (a subquery reads the cursor row) so microsecond
// timestamps never round-trip through JS dates. A cursor that names no object in scope is a 400.
import { and, asc, desc, type SQL, sql } from 'drizzle-orm';
import type { PgColumn, PgTable } from 'drizzle-orm/pg-core';
import { z } from 'zod';
import type { Database } from '../db/types.ts';
import { AppError } from '../../contracts/errors.ts';
import { isUuid } from '../db/ids.ts';

export const listQuerySchema = z.object({
  limit: z.coerce.number().int().min(1).max(100).default(20),
  order: z.enum(['asc', 'desc']).default('desc'),
  after: z.string().optional(),
  before: z.string().optional(),
});
export type ListQuery = z.output<typeof listQuerySchema>;

export interface Page<T> {
  object: 'list';
  data: T[];
  first_id: string | null;
  last_id: string | null;
  has_more: boolean;
}

/** The keyset of a list: the object id as the API shows it, and the creation time. */
export interface Keyed {
  id: PgColumn | SQL;
  createdAt: PgColumn;
}

/**
 * One page of `table` rows matching `scope` (which must include the tenant). `select` runs the query:
 * it receives the where clause (scope ∧ cursor), the order and the row limit to apply. `key` names the
 * keyset when the listed id is not the table's own `id` column (a vector store file is listed by its
 * file id); the cursor row is looked up within `scope`, so an id need only be unique there.
 */
export async function paginate<R>(
  db: Database,
  table: PgTable,
  scope: SQL,
  q: ListQuery,
  select: (where: SQL, orderBy: SQL[], limit: number) => Promise<R[]>,
  key: Keyed = table as unknown as Keyed,
): Promise<{ rows: R[]; hasMore: boolean }> {
  if (q.after && q.before) throw new AppError('bad_request', 'pass either `after` or `before`, not both');
  const cursor = q.after ?? q.before;
  let where = scope;
  // Walking backwards (`before`) reads in the opposite order, then flips the page.
  const backwards = q.before !== undefined;
  const ascending = (q.order === 'asc') !== backwards;
  if (cursor !== undefined) {
    const exists =
      isUuid(cursor) &&
      (
        await db
          .select({ id: sql`1` })
          .from(table)
          .where(and(scope, sql`${key.id} = ${cursor}`))
          .limit(1)
      ).length > 0;
    if (!exists)
      throw new AppError('bad_request', `invalid cursor: no object ${JSON.stringify(cursor)} in this list`);
    const op = sql.raw(ascending ? '>' : '<');
    where = and(
      scope,
      sql`(${key.createdAt}, ${key.id}) ${op} (select ${key.createdAt}, ${key.id} from ${table} where ${scope} and ${key.id} = ${cursor})`,
    )!;
  }
  const dir = ascending ? asc : desc;
  const rows = await select(where, [dir(key.createdAt), dir(key.id)], q.limit + 1);
  const hasMore = rows.length > q.limit;
  const page = rows.slice(0, q.limit);
  if (backwards) page.reverse();
  return { rows: page, hasMore };
}

export function toPage<R extends { id: string }, T>(rows: R[], hasMore: boolean, map: (r: R) => T): Page<T> {
  return {
    object: 'list',
    data: rows.map(map),
    first_id: rows[0]?.id ?? null,
    last_id: rows.at(-1)?.id ?? null,
    has_more: hasMore,
  };
}

/**
 * One page of a list held in memory (`items` in ascending order, each id unique), with the same `limit`,
 * `order`, `after` / `before` rules as `paginate`: the stored input items of a response.
 */
export function pageOf<T extends { id: string }>(items: readonly T[], q: ListQuery): Page<T> {
  if (q.after && q.before) throw new AppError('bad_request', 'pass either `after` or `before`, not both');
  const ordered = q.order === 'asc' ? [...items] : [...items].reverse();
  const cursor = q.after ?? q.before;
  let from = 0;
  let to = ordered.length;
  if (cursor !== undefined) {
    const at = ordered.findIndex((it) => it.id === cursor);
    if (at < 0)
      throw new AppError('bad_request', `invalid cursor: no object ${JSON.stringify(cursor)} in this list`);
    if (q.after !== undefined) from = at + 1;
    else to = at;
  }
  // `before` takes the `limit` items just before the cursor, as `paginate` does walking backwards
  const start = q.before !== undefined ? Math.max(from, to - q.limit) : from;
  const end = Math.min(to, start + q.limit);
  const data = ordered.slice(start, end);
  const hasMore = q.before !== undefined ? start > from : end < to;
  return {
    object: 'list',
    data,
    first_id: data[0]?.id ?? null,
    last_id: data.at(-1)?.id ?? null,
    has_more: hasMore,
  };
}
