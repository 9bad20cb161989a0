// How many documents of each status a collection (or a file batch) holds: one grouped query for a page of
// them. The collections API shows the counts as they are; the OpenAI surface folds them into its
// in_progress / completed / failed (src/openai/statuses.ts).
import { and, eq, inArray, sql } from 'drizzle-orm';
import { DOCUMENT_STATUSES, type DocumentStatus, documents } from '../db/schema.ts';
import type { Database } from '../db/types.ts';

export type StatusCounts = Record<DocumentStatus, number> & { total: number };

export const emptyCounts = (): StatusCounts =>
  Object.fromEntries([...DOCUMENT_STATUSES.map((s) => [s, 0]), ['total', 0]]) as StatusCounts;

/** Documents per status of each collection (`by: 'collection'`) or file batch (`by: 'batch'`). */
export async function documentCounts(
  db: Database,
  tenantId: string,
  ids: readonly string[],
  by: 'collection' | 'batch' = 'collection',
): Promise<Map<string, StatusCounts>> {
  const out = new Map(ids.map((id) => [id, emptyCounts()]));
  if (ids.length === 0) return out;
  const key = by === 'collection' ? documents.collectionId : documents.batchId;
  const rows = await db
    .select({ key, status: documents.status, n: sql<number>`count(*)::int` })
    .from(documents)
    .where(and(eq(documents.tenantId, tenantId), inArray(key, [...ids])))
    .groupBy(key, documents.status);
  for (const r of rows) {
    const c = out.get(r.key!);
    if (!c) continue;
    c[r.status] = Number(r.n);
    c.total += Number(r.n);
  }
  return out;
}
