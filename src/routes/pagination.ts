// Cursor pagination shaped like OpenAI's lists: `limit` (1–100, default 20), `order` (asc|desc by
// creation time, default desc), `after` / `before` = the id of an object from a previous page. Keyset
// over (created_at, id), compared inside Postgres (a subquery reads the cursor row) so microsecond
// timestamps never round-trip through JS dates. A cursor that names no object in scope is a 400.
import { and, asc, desc, eq, type SQL, sql } from 'drizzle-orm';
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

interface Keyed {
  id: PgColumn;
  createdAt: PgColumn;
}

/**
 * One page of `table` rows matching `scope` (which must include the tenant). `select` runs the query:
 * it receives the where clause (scope ∧ cursor), the order and the row limit to apply.
 */
export async function paginate<R extends { id: string }>(
  db: Database,
  table: PgTable & Keyed,
  scope: SQL,
  q: ListQuery,
  select: (where: SQL, orderBy: SQL[], limit: number) => Promise<R[]>,
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
          .select({ id: table.id })
          .from(table)
          .where(and(scope, eq(table.id, cursor)))
          .limit(1)
      ).length > 0;
    if (!exists)
      throw new AppError('bad_request', `invalid cursor: no object ${JSON.stringify(cursor)} in this list`);
    const op = sql.raw(ascending ? '>' : '<');
    where = and(
      scope,
      sql`(${table.createdAt}, ${table.id}) ${op} (select ${table.createdAt}, ${table.id} from ${table} where ${table.id} = ${cursor})`,
    )!;
  }
  const dir = ascending ? asc : desc;
  const rows = await select(where, [dir(table.createdAt), dir(table.id)], q.limit + 1);
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
