// Test helper: reads a text/event-stream response into events ({event, data as parsed JSON}).
import { readSse } from '../../src/routing/runner-client.ts';
export interface SseEvent {
  event: string;
  data: unknown;
}

/** Yields events as they arrive (parsed by the runner client's own SSE reader); stops at the end. */
export async function* sseEvents(res: Response): AsyncGenerator<SseEvent> {
  if (!res.body) return;
  for await (const { event, data } of readSse(res.body)) yield { event, data: JSON.parse(data) };
}

export async function collectSse(res: Response): Promise<SseEvent[]> {
  const out: SseEvent[] = [];
  for await (const e of sseEvents(res)) out.push(e);
  return out;
}
