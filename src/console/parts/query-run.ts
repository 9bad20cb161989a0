// One /v1/query as the Ask page follows it: the request, the text and token events so far, the plan, the
// sources and the final `done`, and when the request left and its first token came (this browser's clock).
import type { Citation } from '../../answer/services.ts';
import type { Plan } from '../../planning/plan.ts';
import { type QueryDone, streamQuery } from '../api.ts';
import { errorText } from '../shell.ts';

export interface Run {
  body: Record<string, unknown>;
  text: string;
  /** token events received so far */
  tokens: number;
  citations: Citation[];
  plan?: Plan;
  done?: QueryDone;
  error?: string;
  /** ms, performance.now(): request sent, first token event here */
  sentAt: number;
  firstTokenAt?: number;
  streaming: boolean;
}

/** Streams one /v1/query into a Run, calling `update` with each new state. */
export async function runQuery(body: Record<string, unknown>, update: (r: Run) => void, signal: AbortSignal) {
  let run: Run = { body, text: '', tokens: 0, citations: [], sentAt: performance.now(), streaming: true };
  const set = (p: Partial<Run>) => update((run = { ...run, ...p }));
  set({});
  try {
    await streamQuery(
      body,
      {
        plan: (plan) => set({ plan }),
        citations: (citations) => set({ citations }),
        token: (t) =>
          set({
            text: run.text + t,
            tokens: run.tokens + 1,
            firstTokenAt: run.firstTokenAt ?? performance.now(),
          }),
        done: (done) => set({ done, text: done.text }),
      },
      signal,
    );
    set({ streaming: false });
  } catch (e) {
    set({ streaming: false, error: errorText(e) });
  }
}
