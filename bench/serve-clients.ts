// The closed-loop SSE clients of `kvrag bench serve`, in a worker thread of their own: real clients are
// other processes (the edge API), so their fetches and SSE parsing must not share the runner's event loop
// (where they queued behind every forward: a burst's requests reached the scheduler a step or more apart).
// The bench posts one message per level ({mode, c}); the worker answers with every request's TTFT and
// usage and the level's wall time, measured here, where the requests are sent and the tokens read.
import { parentPort, workerData } from 'node:worker_threads';
import type { ReuseMode } from '../contracts/reuse.ts';
import type { RunnerUsage } from '../contracts/runner-api.ts';
import { rng } from './_report.ts';

export interface ClientsInit {
  base: string;
  headers: Record<string, string>;
  /** chunk token ids: request i of a level gets pool[i·k … i·k+k−1] */
  pool: number[][];
  k: number;
  system: number[];
  questionTokens: number;
  maxTokens: number;
  perLevel: number;
}

/** `c` clients, each sending its next request when its previous one ends, until perLevel finished. */
export interface LevelMsg {
  mode: ReuseMode;
  c: number;
  /** requests in all (default: perLevel) */
  requests?: number;
  /** open `c` keep-alive connections first (so the level does not pay for opening them) */
  connect: boolean;
}

export interface LevelDone {
  ttfts: number[];
  usages: RunnerUsage[];
  wallMs: number;
}

const init = workerData as ClientsInit;
const rand = rng(11);

// i: the request's index within its level (its chunk set)
async function request(mode: ReuseMode, i: number): Promise<{ ttft: number; usage: RunnerUsage }> {
  const { k, pool, maxTokens } = init;
  const chunks = Array.from({ length: k }, (_, j) => ({ tokenIds: pool[i * k + j] }));
  const question = Array.from({ length: init.questionTokens }, () =>
    String.fromCharCode(97 + Math.floor(rand() * 26)),
  ).join('');
  const t0 = performance.now();
  const res = await fetch(`${init.base}/v1/generate`, {
    method: 'POST',
    headers: init.headers,
    body: JSON.stringify({
      system: { tokenIds: init.system },
      chunks,
      question,
      maxTokens,
      ignoreEos: true,
      reuse: { mode },
    }),
  });
  if (!res.ok || !res.body) throw new Error(`generate failed: ${res.status} ${await res.text()}`);
  let ttft = -1;
  let usage: RunnerUsage | null = null;
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = '';
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    buf += value;
    if (ttft < 0 && buf.includes('event: token')) ttft = performance.now() - t0;
    const at = buf.indexOf('event: done');
    if (at >= 0) {
      const end = buf.indexOf('\n\n', at);
      if (end >= 0) usage = JSON.parse(buf.slice(buf.indexOf('data:', at) + 5, end).trim());
    }
  }
  if (!usage) throw new Error('stream ended without a done event');
  // a first token with no text of its own (a random model's id outside the byte range) sends no token
  // event: then the runner's own TTFT (arrival → first token) stands in
  return { ttft: ttft < 0 ? usage.timingsMs.ttft : ttft, usage };
}

async function level({ mode, c, requests, connect }: LevelMsg): Promise<LevelDone> {
  const n = requests ?? init.perLevel;
  if (connect)
    await Promise.all(Array.from({ length: c }, () => fetch(`${init.base}/healthz`).then((x) => x.text())));
  const ttfts: number[] = [];
  const usages: RunnerUsage[] = [];
  let started = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: c }, async () => {
      while (started < n) {
        const got = await request(mode, started++);
        ttfts.push(got.ttft);
        usages.push(got.usage);
      }
    }),
  );
  return { ttfts, usages, wallMs: performance.now() - t0 };
}

parentPort?.on('message', (msg: LevelMsg) => {
  level(msg).then(
    (done) => parentPort?.postMessage({ ok: true, done }),
    (err: unknown) => parentPort?.postMessage({ ok: false, error: String((err as Error)?.stack ?? err) }),
  );
});
