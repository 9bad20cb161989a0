// The runner client against real HTTP: a real runner (reference backend, tiny model) listening on a port.
// callRunner streams its tokens and usage; staticSource lists it only while /readyz answers (polled at most
// every pollMs), with the model profile it publishes at GET /v1/model (asked once per fingerprint); a runner
// stopped mid-list is skipped by the pool before the first token.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRunner, type Runner } from '../../gpu-runner/server/runner.ts';
import { type FetchFn, withRunnerToken } from '../../contracts/runner-api.ts';
import {
  callRunner,
  RunnerCallError,
  RunnerPool,
  readSse,
  staticSource,
} from '../../src/routing/runner-client.ts';
import { MemoryBlobStore } from '../../src/storage/memory.ts';
import { type TinyModels, tinyModels } from '../helpers/tiny-model.ts';

describe('runner client over HTTP', () => {
  let models: TinyModels;
  let runner: Runner;
  let url: string;
  /** Plain fetch with the runner's credential, as the API's is. */
  let authed: FetchFn;

  beforeAll(async () => {
    models = tinyModels();
    runner = await createRunner({
      modelDir: models.make('m'),
      backend: 'reference',
      blobs: new MemoryBlobStore(),
      port: 0,
      host: '127.0.0.1',
    });
    const { port } = await runner.start();
    url = `http://127.0.0.1:${port}`;
    authed = withRunnerToken((r) => fetch(r), runner.core.credential.current);
  }, 30_000);
  afterAll(async () => {
    await runner?.stop({ graceMs: 0 });
    models?.cleanup();
  });

  it('callRunner streams tokens then the usage; their text is the usage text', async () => {
    const events = [];
    for await (const e of callRunner(
      { id: 'r', url, fetch: authed },
      {
        question: 'hello',
        maxTokens: 4,
      },
    ))
      events.push(e);
    const done = events.at(-1)!;
    expect(done.type).toBe('done');
    const text = events.flatMap((e) => (e.type === 'token' ? [e.text] : [])).join('');
    if (done.type === 'done') {
      expect(done.usage.text).toBe(text);
      expect(done.usage.completionTokens).toBeGreaterThan(0);
      expect(done.usage.completionTokens).toBeLessThanOrEqual(4);
    }
  });

  it('a bad request is a 400 AppError, not a failover', async () => {
    const it = callRunner({ id: 'r', url, fetch: authed }, { maxTokens: 4 });
    await expect(it.next()).rejects.toMatchObject({ code: 'bad_request' });
  });

  it('a runner refusing the credential is a runner failure (failover), not a bad request', async () => {
    for (const fetchFn of [(r: Request) => fetch(r), withRunnerToken((r) => fetch(r), 'z'.repeat(40))]) {
      const it = callRunner({ id: 'r', url, fetch: fetchFn }, { question: 'hello', maxTokens: 2 });
      const err = await it.next().catch((e: unknown) => e);
      expect(err).toBeInstanceOf(RunnerCallError);
      expect((err as RunnerCallError).beforeFirstToken).toBe(true);
      expect((err as Error).message).toContain('401');
    }
  });

  it('staticSource lists a runner only while it is ready, probing at most every pollMs, with its profile', async () => {
    let t = 0;
    const asked: string[] = [];
    const src = staticSource([url, 'http://127.0.0.1:1'], {
      pollMs: 1000,
      now: () => t,
      fetch: (r) => {
        asked.push(new URL(r.url).pathname);
        return authed(r);
      },
    });
    const first = await src.list();
    expect(first.map((r) => r.url)).toEqual([url]);
    expect(first[0].models).toEqual([runner.core.engine.fingerprint]);
    expect(first[0].profile).toEqual(runner.core.engine.profile);
    expect(first[0].profile).toMatchObject({ fingerprint: runner.core.engine.fingerprint, v: 1 });
    await src.list();
    // readiness of both, the live one's profile; nothing more within pollMs
    expect(asked.sort()).toEqual(['/readyz', '/readyz', '/v1/model']);
    t += 1000;
    const again = await src.list();
    expect(again[0].profile).toEqual(runner.core.engine.profile);
    // readiness again; the profile of an unchanged fingerprint is not asked again
    expect(asked.sort()).toEqual(['/readyz', '/readyz', '/readyz', '/readyz', '/v1/model']);
  });

  it('readSse joins events split across network chunks', async () => {
    const enc = new TextEncoder();
    const parts = ['event: tok', 'en\ndata: {"te', 'xt":"a"}\n', '\nevent: done\r\ndata: 1\r\n\r\n'];
    const body = new ReadableStream<Uint8Array<ArrayBuffer>>({
      start(c) {
        for (const p of parts) c.enqueue(enc.encode(p));
        c.close();
      },
    });
    const got = [];
    for await (const m of readSse(body)) got.push(m);
    expect(got).toEqual([
      { event: 'token', data: '{"text":"a"}' },
      { event: 'done', data: '1' },
    ]);
  });

  it('the pool skips a listed runner that is gone before the first token', async () => {
    const pool = new RunnerPool({
      list: async () => [
        {
          id: 'gone',
          url: 'http://127.0.0.1:1',
          models: ['fp'],
          load: 0,
          holds: () => true,
          fetch: (r) => fetch(r),
        },
        { id: 'live', url, models: ['fp'], load: 0, holds: () => false, fetch: authed },
      ],
    });
    const route = { runnerId: '', failedOver: [] as string[] };
    let n = 0;
    for await (const e of pool.generate('fp', ['k'], { question: 'hi', maxTokens: 2 }, route))
      n += e.type === 'token' ? 1 : 0;
    expect(n).toBeGreaterThan(0);
    expect(route).toEqual({ runnerId: 'live', failedOver: ['gone'] });
  });
});
