// Stored responses (`store: true`, the default): the response object as returned, and the conversation it
// ended — every message of the turns so far, its own answer included — which a follow-up naming it as
// `previous_response_id` continues. Instructions are not part of it: OpenAI does not carry them over.
import { and, eq } from 'drizzle-orm';
import type { ChatMessage } from '../../../contracts/runner-api.ts';
import { isUuid, notFound } from '../../db/ids.ts';
import { type ResponseRow, responses } from '../../db/schema.ts';
import type { Database } from '../../db/types.ts';
import type { InputItem } from './objects.ts';

export interface StoredResponse {
  id: string;
  tenantId: string;
  previousResponseId: string | null;
  body: Record<string, unknown>;
  conversation: ChatMessage[];
  /** This turn's own input items (not the earlier turns'), listed by GET …/input_items. */
  inputItems: InputItem[];
}

export async function saveResponse(db: Database, r: StoredResponse): Promise<void> {
  await db
    .insert(responses)
    .values({ ...r, inputItems: r.inputItems as unknown as Record<string, unknown>[] });
}

/** The input items of the tenant's stored response, in the order given; 404 as `loadResponse`. */
export async function loadInputItems(db: Database, tenantId: string, id: string): Promise<InputItem[]> {
  const row = await loadResponse(db, tenantId, id);
  return row.inputItems as unknown as InputItem[];
}

/** The tenant's stored response; 404 otherwise (another tenant's id included). */
export async function loadResponse(db: Database, tenantId: string, id: string): Promise<ResponseRow> {
  if (!isUuid(id)) throw notFound('response', id);
  const [row] = await db
    .select()
    .from(responses)
    .where(and(eq(responses.id, id.toLowerCase()), eq(responses.tenantId, tenantId)));
  if (!row) throw notFound('response', id);
  return row;
}

export async function deleteResponse(db: Database, tenantId: string, id: string): Promise<void> {
  const row = await loadResponse(db, tenantId, id);
  await db.delete(responses).where(and(eq(responses.id, row.id), eq(responses.tenantId, tenantId)));
}
