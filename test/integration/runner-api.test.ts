// The runner over real HTTP (@hono/node-server on a free port), tiny model on the reference backend
// (exact), filesystem object store: SSE generation, 16 concurrent = one by one, disconnect frees KV,
// precompute + artifacts + reuse by key, malformed bodies → 400 envelope, /metrics is Prometheus text,
// GET /v1/model is the model profile.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRunner, type Runner } from '../../gpu-runner/server/runner.ts';
import { modelProfileSchema } from '../../contracts/model-profile.ts';
import type { RunnerUsage } from '../../contracts/runner-api.ts';
import { FsBlobStore } from '../../src/storage/fs.ts';
import { collectSse, sseEvents } from '../helpers/sse.ts';
import { tinyModels } from '../helpers/tiny-model.ts';

const models = tinyModels();
const tmp = mkdtempSync(join(tmpdir(), 'kvrag-runner-api-'));
let runner: Runner;
let base: string;
const TOKEN = 'runner-api-test-credential-0123456789abcdef';
const PREVIOUS = 'runner-api-test-previous-credential-0123456789';
const auth = { authorization: `Bearer ${TOKEN}` };
/** GET with the runner credential. */
const get = (path: string) => fetch(`${base}${path}`, { headers: auth });

beforeAll(async () => {
  runner = await createRunner({
    modelDir: models.make('llama', { arch: 'llama', seed: 7, layers: 2 }),
    backend: 'reference',
    blobs: new FsBlobStore(join(tmp, 'objects')),
    kvDiskDir: join(tmp, 'kv'),
    dtype: 'f32',
    port: 0,
    host: '127.0.0.1',
    scheduler: { maxRunning: 16, maxStepTokens: 64, growBlock: 8 },
    credential: { current: TOKEN, previous: PREVIOUS },
    limits: { maxBodyBytes: 1024 * 1024 },
  });
  const { port } = await runner.start();
  base = `http://127.0.0.1:${port}`;
});
afterAll(async () => {
  await runner.stop({ graceMs: 0 });
  models.cleanup();
  rmSync(tmp, { recursive: true, force: true });
});

const post = (path: string, body: unknown, init: RequestInit = {}) =>
  fetch(`${base}${path}`, {
    method: 'POST',
    body: typeof body === 'string' ? body : JSON.stringify(body),
    ...init,
    headers: { 'content-type': 'application/json', ...auth, ...(init.headers as Record<string, string>) },
  });

async function generate(body: Record<string, unknown>): Promise<{ text: string; usage: RunnerUsage }> {
  const res = await post('/v1/generate', body);
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toMatch(/text\/event-stream/);
  const events = await collectSse(res);
  const done = events.at(-1)!;
  expect(done.event).toBe('done');
  const text = events
    .filter((e) => e.event === 'token')
    .map((e) => (e.data as { text: string }).text)
    .join('');
  return { text, usage: done.data as RunnerUsage };
}

const questions = Array.from({ length: 16 }, (_, i) => `Q${i}: what is ${i} plus ${(i * 7) % 5}?`);
const greedy = (question: string) => ({
  system: 'Answer.',
  question,
  maxTokens: 20,
  ignoreEos: true,
  reuse: { mode: 'full' },
});

describe('runner HTTP API', () => {
  it('16 concurrent greedy requests give the same text as the same requests one by one', async () => {
    const alone: string[] = [];
    for (const q of questions) alone.push((await generate(greedy(q))).text);
    const together = await Promise.all(questions.map((q) => generate(greedy(q))));
    expect(together.map((r) => r.text)).toEqual(alone);
    for (const r of together) {
      expect(r.usage.finishReason).toBe('length');
      expect(r.usage.completionTokens).toBe(20);
      expect(r.usage.text).toBe(r.text);
      expect(r.usage.timingsMs.ttft).toBeGreaterThan(0);
      expect(r.usage.keysAttended).toBeGreaterThan(r.usage.promptTokens);
    }
    expect(new Set(alone).size).toBeGreaterThan(1);
  });

  it('a client disconnect ends the sequence and frees its KV memory', async () => {
    const ac = new AbortController();
    const maxTokens = runner.core.engine.maxContext - 16;
    const res = await post(
      '/v1/generate',
      { question: 'go on', maxTokens, ignoreEos: true },
      { signal: ac.signal },
    );
    expect(res.status).toBe(200);
    let tokens = 0;
    const it = sseEvents(res);
    for await (const e of it) {
      if (e.event === 'token' && ++tokens === 3) break;
    }
    expect(runner.core.scheduler.stats().kvBytesInUse).toBeGreaterThan(0);
    ac.abort();
    const until = Date.now() + 5000;
    while (runner.core.scheduler.stats().kvBytesInUse > 0 && Date.now() < until)
      await new Promise((r) => setTimeout(r, 20));
    expect(runner.core.scheduler.stats()).toMatchObject({ kvBytesInUse: 0, running: 0, waiting: 0 });
    const metrics = await (await get('/metrics')).text();
    expect(metrics).toMatch(/^kvrag_runner_requests_total\{finish_reason="aborted"\} [1-9]/m);
    expect(metrics).toMatch(/^kvrag_runner_kv_bytes_in_use 0$/m);
  });

  it('precompute stores artifacts; generate reuses them by key; independent with one chunk = full', async () => {
    const chunk = 'The passkey is 4242. Remember it.';
    const res = await post('/v1/precompute', {
      chunks: [{ text: chunk }, { text: 'Another chunk.' }],
      dtype: 'f32',
    });
    expect(res.status).toBe(200);
    const { artifacts } = (await res.json()) as {
      artifacts: { key: string; skipped: boolean; bytes: number }[];
    };
    expect(artifacts.map((a) => a.skipped)).toEqual([false, false]);
    const again = (await (
      await post('/v1/precompute', { chunks: [{ text: chunk }], dtype: 'f32' })
    ).json()) as { artifacts: { key: string; skipped: boolean }[] };
    expect(again.artifacts[0]).toMatchObject({ key: artifacts[0].key, skipped: true });

    const where = (await (await get(`/v1/artifacts/${artifacts[0].key}`)).json()) as {
      present: boolean;
      tiers: Record<string, boolean>;
    };
    expect(where.present).toBe(true);
    expect(where.tiers.object).toBe(true);
    const missing = (await (await get(`/v1/artifacts/${'0'.repeat(64)}`)).json()) as {
      present: boolean;
    };
    expect(missing.present).toBe(false);

    const ask = { question: ' What is the passkey?', maxTokens: 12, ignoreEos: true };
    const reused = await generate({
      ...ask,
      chunks: [{ key: artifacts[0].key }],
      reuse: { mode: 'independent' },
    });
    const full = await generate({ ...ask, chunks: [{ text: chunk }], reuse: { mode: 'full' } });
    expect(reused.text).toBe(full.text);
    expect(reused.usage.cachedTokens).toBe(full.usage.promptTokens - reused.usage.prefillTokens);
    expect(reused.usage.cachedTokens).toBeGreaterThan(0);
    expect(Object.values(reused.usage.bytesLoaded).reduce((a, b) => a + b, 0)).toBeGreaterThan(0);
    expect(full.usage.cachedTokens).toBe(0);
    // ttft split: queue wait + assembly phases + live prefill add up to the runner's ttft; loading and
    // re-rotating stored K/V happen only when an artifact is reused, and full mode prefills everything live
    for (const { usage } of [reused, full]) {
      const n = expect.any(Number);
      expect(usage.timingsMs).toMatchObject({ load: n, rotate: n, recompute: n, squeeze: n, prefill: n });
      const t = usage.timingsMs as Required<typeof usage.timingsMs>;
      const parts = t.queueWait + t.load + t.rotate + t.recompute + t.squeeze + t.prefill;
      expect(parts).toBeCloseTo(t.ttft, 6);
      expect(t.prefill).toBeGreaterThan(0);
      expect(t.load + t.rotate + t.recompute + t.squeeze).toBeLessThanOrEqual(t.assemble);
    }
    expect(reused.usage.timingsMs.load).toBeGreaterThan(0);
    expect(reused.usage.timingsMs.rotate).toBeGreaterThan(0);
    expect(full.usage.timingsMs).toMatchObject({ load: 0, rotate: 0, recompute: 0, squeeze: 0, assemble: 0 });
    // an unknown key is a 404 envelope before any streaming
    const nf = await post('/v1/generate', { ...ask, chunks: [{ key: 'f'.repeat(64) }] });
    expect(nf.status).toBe(404);
    expect(((await nf.json()) as { error: { code: string } }).error.code).toBe('not_found');
  });

  it('squeezed attention over chunks: everything selected = dense text; a budget attends fewer keys', async () => {
    const chunks = [
      { text: 'The passkey is 4242. Remember it. '.repeat(5) },
      { text: 'Cats sleep most of the day, and dogs do not. '.repeat(5) },
    ];
    const ask = { question: ' What is the passkey?', chunks, maxTokens: 8, ignoreEos: true };
    const dense = await generate({ ...ask, reuse: { mode: 'independent' } });
    const all = await generate({
      ...ask,
      reuse: { mode: 'independent' },
      squeezed: { mode: 'budget', budget: 1 },
    });
    const some = await generate({
      ...ask,
      reuse: { mode: 'independent' },
      squeezed: { mode: 'threshold', threshold: 1 },
    });
    const full = await generate({
      ...ask,
      reuse: { mode: 'full' },
      squeezed: { mode: 'budget', budget: 0.5 },
    });
    expect(all.text).toBe(dense.text);
    expect(dense.usage.squeezed).toBeUndefined();
    expect(all.usage.squeezed).toMatchObject({ fraction: 1, unindexedTokens: 0 });
    expect(all.usage.squeezed!.keysAttended).toBeGreaterThan(0);
    expect(some.usage.squeezed!.fraction).toBeLessThan(1);
    expect(some.usage.squeezed!.bytesTouched).toBeGreaterThan(0);
    expect(full.usage.squeezed?.note).toMatch(/full mode/);
  });

  it('malformed requests get 400 with the error envelope', async () => {
    const bad: [string, unknown][] = [
      ['not json', '{"question": '],
      ['no question', { maxTokens: 3 }],
      ['both question and messages', { question: 'a', messages: [{ role: 'user', content: 'b' }] }],
      ['unknown field', { question: 'a', temperature: 1 }],
      ['negative maxTokens', { question: 'a', maxTokens: -1 }],
      ['bad reuse mode', { question: 'a', reuse: { mode: 'magic' } }],
      ['squeezed: unknown shape', { question: 'a', squeezed: { enabled: true } }],
      ['squeezed: budget above 1', { question: 'a', squeezed: { mode: 'budget', budget: 2 } }],
      ['squeezed: threshold, model not calibrated', { question: 'a', squeezed: { mode: 'threshold' } }],
      ['bad chunk', { question: 'a', chunks: [{ key: 'x', text: 'y' }] }],
      ['over the context', { question: 'a', maxTokens: 32768 }],
    ];
    for (const [what, body] of bad) {
      const res = await post('/v1/generate', body, {
        headers: { 'content-type': 'application/json', 'x-request-id': 'req-1' },
      });
      expect(res.status, what).toBe(400);
      const json = (await res.json()) as { error: { code: string; message: string; request_id: string } };
      expect(json.error.code, what).toBe('bad_request');
      expect(json.error.request_id).toBe('req-1');
      expect(json.error.message.length).toBeGreaterThan(0);
    }
    const badPre = await post('/v1/precompute', { chunks: [] });
    expect(badPre.status).toBe(400);
    const wrongType = await post(
      '/v1/generate',
      { question: 'a' },
      { headers: { 'content-type': 'text/plain' } },
    );
    expect(wrongType.status).toBe(415);
  });

  it('/metrics parses as Prometheus text exposition', async () => {
    const res = await get('/metrics');
    expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
    const families = parsePrometheus(await res.text());
    for (const name of [
      'kvrag_runner_ttft_seconds',
      'kvrag_runner_inter_token_seconds',
      'kvrag_runner_tokens_per_second',
      'kvrag_runner_queue_depth',
      'kvrag_runner_running_sequences',
      'kvrag_runner_kv_bytes_in_use',
      'kvrag_runner_tier_hits_total',
      'kvrag_runner_tier_misses_total',
      'kvrag_runner_tier_read_bytes_total',
    ])
      expect(families.has(name), name).toBe(true);
    const ttft = families.get('kvrag_runner_ttft_seconds')!;
    expect(ttft.type).toBe('histogram');
    const count = ttft.samples.find((s) => s.name === 'kvrag_runner_ttft_seconds_count')!.value;
    expect(count).toBeGreaterThanOrEqual(32);
    const tiers = families.get('kvrag_runner_tier_hits_total')!.samples.map((s) => s.labels.tier);
    expect(tiers).toEqual(expect.arrayContaining(['engine', 'host', 'disk', 'object']));
  });

  it('chat messages use the chat template; stop strings cut the text; a deadline ends the stream', async () => {
    const messages = [{ role: 'user', content: 'Say something.' }];
    const chat = await generate({ messages, maxTokens: 12, ignoreEos: true });
    expect(chat.usage.promptTokens).toBe(runner.core.engine.encodeChat(messages as never).length);
    expect(chat.usage.completionTokens).toBe(12);
    // stop at a piece of the unconstrained text: the output ends right before it
    const free = await generate({ question: 'Stop test', maxTokens: 16, ignoreEos: true });
    const cut = free.text.slice(4, 6);
    const stopped = await generate({ question: 'Stop test', maxTokens: 16, ignoreEos: true, stop: [cut] });
    expect(stopped.usage.finishReason).toBe('stop');
    expect(stopped.text).toBe(free.text.slice(0, free.text.indexOf(cut)));
    const late = await generate({
      question: 'slow',
      maxTokens: runner.core.engine.maxContext - 16,
      ignoreEos: true,
      deadlineMs: 50,
    });
    expect(late.usage.finishReason).toBe('deadline');
  });

  it('healthz and readyz answer', async () => {
    expect((await fetch(`${base}/healthz`)).status).toBe(200);
    expect((await get('/readyz')).status).toBe(200);
  });

  it('GET /v1/model publishes the profile the API plans from, in the contract shape', async () => {
    const res = await get('/v1/model');
    expect(res.status).toBe(200);
    const profile = modelProfileSchema.parse(await res.json());
    const e = runner.core.engine;
    // what the model directory says: a 2-layer llama named by its directory, no sidecars
    expect(profile).toEqual({
      v: 1,
      id: 'llama',
      fingerprint: e.fingerprint,
      contextTokens: e.maxContext,
      layers: 2,
      chatTemplate: e.chatTemplate !== null,
      independentTrained: false,
      sparseBreakEven: null,
      squeezedThreshold: null,
    });
  });
});

interface Family {
  type: string;
  samples: { name: string; labels: Record<string, string>; value: number }[];
}

/** A strict reader of the text format: HELP/TYPE before samples, valid names, labels and values, histogram buckets cumulative with +Inf = count. */
function parsePrometheus(text: string): Map<string, Family> {
  const families = new Map<string, Family>();
  const NAME = '[a-zA-Z_:][a-zA-Z0-9_:]*';
  const sampleRe = new RegExp(`^(${NAME})(\\{([^}]*)\\})? (-?[0-9.e+-]+|\\+Inf|-Inf|NaN)$`);
  let current: string | null = null;
  expect(text.endsWith('\n')).toBe(true);
  for (const line of text.trimEnd().split('\n')) {
    const help = line.match(new RegExp(`^# HELP (${NAME}) .+$`));
    if (help) continue;
    const type = line.match(new RegExp(`^# TYPE (${NAME}) (counter|gauge|histogram|summary|untyped)$`));
    if (type) {
      expect(families.has(type[1]), `duplicate family ${type[1]}`).toBe(false);
      families.set(type[1], { type: type[2], samples: [] });
      current = type[1];
      continue;
    }
    const m = line.match(sampleRe);
    expect(m, `bad line: ${line}`).not.toBeNull();
    const [, name, , labelText, value] = m!;
    expect(current !== null && name.startsWith(current), `${name} outside its family`).toBe(true);
    const labels: Record<string, string> = {};
    if (labelText)
      for (const part of labelText.split(',')) {
        const lm = part.match(/^([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"$/);
        expect(lm, `bad label ${part}`).not.toBeNull();
        labels[lm![1]] = lm![2];
      }
    const v = value === '+Inf' ? Infinity : value === '-Inf' ? -Infinity : Number(value);
    expect(Number.isNaN(v) && value !== 'NaN').toBe(false);
    families.get(current!)!.samples.push({ name, labels, value: v });
  }
  for (const [name, f] of families) {
    if (f.type !== 'histogram') continue;
    const buckets = f.samples.filter((s) => s.name === `${name}_bucket`);
    for (let i = 1; i < buckets.length; i++)
      expect(buckets[i].value).toBeGreaterThanOrEqual(buckets[i - 1].value);
    expect(buckets.at(-1)!.labels.le).toBe('+Inf');
    expect(buckets.at(-1)!.value).toBe(f.samples.find((s) => s.name === `${name}_count`)!.value);
  }
  return families;
}
