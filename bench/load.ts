// `kvrag bench load [--concurrency 1,4,16,64] [--duration S] [--routes search,query] [--docs N] [--k N]
//   [--max-tokens N] [--reuse MODE] [--timeout-ms MS] [--json]`
// A bounded loopback load test of the embedded default: `kvrag serve` as a child process (PGlite, fs blobs,
// in-process queue and workers, in-process CPU runner on the bundled model behind a runner credential
// (KVRAG_RUNNER_TOKEN, fresh per run: every API → runner call carries and is checked for it), all other
// settings default; every KVRAG_* setting of this shell is dropped) gets a small generated corpus (--docs documents, waited until
// `ready`), then closed-loop clients — `c` clients, each sending its next request when the previous one
// ends — for --duration seconds per route and concurrency level (requests still in flight then are
// awaited and counted), route by route. search: POST /v1/collections/:id/search. query: POST /v1/query,
// stream=false, k chunks, --max-tokens tokens, the planner's reuse mode unless --reuse, a distinct
// question per request so the answer cache never serves it (its hits are reported and should be 0). Latency is request sent → whole response read, at the
// client; an error is a network failure, a timeout or any status other than 200.
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { REUSE_MODES } from '../contracts/reuse.ts';
import { numberOption, parseOptions, UsageError } from '../cli/args.ts';
import { emit, formatTable, percentile } from './_report.ts';

const ROUTES = ['search', 'query'] as const;
type Route = (typeof ROUTES)[number];
const ADMIN_KEY = 'bench-load-admin-key-0123456789';
const KVRAG_BIN = resolve(import.meta.dirname, '../bin/kvrag.js');

export interface LoadRow {
  route: Route;
  concurrency: number;
  requests: number;
  errors: number;
  /** Status (or `network`/`timeout`) → count, for the errors. */
  errorKinds: Record<string, number>;
  requestsPerSec: number;
  p50Ms: number;
  p99Ms: number;
  meanMs: number;
  /** query only: answers the answer cache served (distinct questions: expected 0). */
  cachedAnswers?: number;
  /** query only: means of the server's own timings (done.timings): retrieval, first token, total. */
  serverMs?: { retrieval: number; ttft: number; total: number };
}

interface Reply {
  status: number | 'network' | 'timeout';
  body: string;
}

/** One JSON request over a keep-alive agent; never throws (network errors and timeouts are replies). */
function call(
  agent: Agent,
  base: URL,
  method: string,
  path: string,
  key: string,
  body: unknown,
  timeoutMs: number,
): Promise<Reply> {
  return new Promise((done) => {
    const data = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const req = request(
      {
        agent,
        host: base.hostname,
        port: base.port,
        method,
        path,
        headers: {
          authorization: `Bearer ${key}`,
          ...(data ? { 'content-type': 'application/json', 'content-length': data.length } : {}),
        },
        timeout: timeoutMs,
      },
      (res) => {
        const parts: Buffer[] = [];
        res.on('data', (d: Buffer) => parts.push(d));
        res.on('end', () => done({ status: res.statusCode ?? 0, body: Buffer.concat(parts).toString() }));
        res.on('error', () => done({ status: 'network', body: '' }));
      },
    );
    req.on('timeout', () => {
      req.destroy();
      done({ status: 'timeout', body: '' });
    });
    req.on('error', () => done({ status: 'network', body: '' }));
    req.end(data);
  });
}

/** `kvrag serve` on a free port in `dataDir`, embedded defaults; resolves with its URL. */
function startServe(dataDir: string): { child: ChildProcess; url: Promise<string> } {
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('KVRAG_')));
  const child = spawn(process.execPath, [KVRAG_BIN, 'serve'], {
    cwd: dataDir,
    env: {
      ...env,
      KVRAG_PORT: '0',
      KVRAG_DATA_DIR: join(dataDir, 'data'),
      KVRAG_ADMIN_KEY: ADMIN_KEY,
      KVRAG_RUNNER_TOKEN: randomBytes(32).toString('hex'),
    },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let log = '';
  const url = new Promise<string>((res, rej) => {
    child.stderr?.on('data', (d: Buffer) => {
      if (log.length > 1 << 20) return; // keep draining, stop keeping
      log += d.toString();
      const m = log.match(/"msg":"kvrag listening".*?"url":"([^"]+)"/);
      if (m) res(m[1]);
    });
    child.once('exit', (code) => rej(new Error(`kvrag serve exited with ${code}: ${log.slice(-2000)}`)));
  });
  url.catch(() => {});
  return { child, url };
}

const TOPICS = ['relay', 'ledger', 'cache', 'router', 'planner', 'tokenizer', 'sweeper', 'archive'];

/** Document i of the generated corpus: a few facts about one made-up component. */
function corpusDoc(i: number): { filename: string; text: string } {
  const t = TOPICS[i % TOPICS.length];
  const name = `${t}-${i}`;
  const facts = [
    `The ${name} component moves ${t} records between the staging area and shelf ${i + 3}.`,
    `It runs every ${5 + i} minutes and keeps at most ${100 * (i + 1)} entries in memory.`,
    `When the ${name} fails, operators restart it from the control room on floor ${(i % 4) + 1}.`,
    `The ${name} was introduced in release ${2020 + (i % 6)} to replace the manual ${t} checklist.`,
  ];
  return { filename: `${name}.md`, text: `# ${name}\n\n${facts.join(' ')}\n` };
}

export async function run(args: string[]): Promise<number> {
  const { values } = parseOptions(args, {
    concurrency: { type: 'string', default: '1,4,16,64' },
    duration: { type: 'string' },
    routes: { type: 'string', default: 'search,query' },
    docs: { type: 'string' },
    'max-tokens': { type: 'string' },
    k: { type: 'string' },
    reuse: { type: 'string' },
    'timeout-ms': { type: 'string' },
    json: { type: 'boolean' },
  });
  const levels = (values.concurrency ?? '').split(',').map((c) => numberOption('concurrency', c, 1));
  if (levels.some((c) => !Number.isInteger(c) || c < 1 || c > 1024))
    throw new UsageError('--concurrency takes integers from 1 to 1024');
  const routes = (values.routes ?? '').split(',') as Route[];
  for (const r of routes)
    if (!ROUTES.includes(r)) throw new UsageError(`unknown route "${r}" (search, query)`);
  const durationMs = numberOption('duration', values.duration, 5) * 1000;
  const docs = numberOption('docs', values.docs, 16);
  const maxTokens = numberOption('max-tokens', values['max-tokens'], 8);
  const k = numberOption('k', values.k, 4);
  const reuse = values.reuse;
  if (reuse !== undefined && !(REUSE_MODES as readonly string[]).includes(reuse))
    throw new UsageError(`--reuse must be one of ${REUSE_MODES.join(', ')}`);
  const timeoutMs = numberOption('timeout-ms', values['timeout-ms'], 60_000);
  if (!(durationMs > 0) || docs < 1 || maxTokens < 1)
    throw new UsageError('--duration, --docs, --max-tokens > 0');

  const tmp = mkdtempSync(join(tmpdir(), 'kvrag-bench-load-'));
  const serve = startServe(tmp);
  const agent = new Agent({ keepAlive: true, maxSockets: Math.max(...levels) });
  try {
    const base = new URL(await serve.url);
    const setup = async <T>(method: string, path: string, key: string, body?: unknown): Promise<T> => {
      const r = await call(agent, base, method, path, key, body, timeoutMs);
      if (typeof r.status !== 'number' || r.status >= 300)
        throw new Error(`${method} ${path}: ${r.status} ${r.body.slice(0, 300)}`);
      return JSON.parse(r.body) as T;
    };
    const tenant = await setup<{ id: string }>('POST', '/v1/admin/tenants', ADMIN_KEY, {
      name: 'bench-load',
    });
    const { key } = await setup<{ key: string }>(
      'POST',
      `/v1/admin/tenants/${tenant.id}/keys`,
      ADMIN_KEY,
      {},
    );
    const coll = await setup<{ id: string }>('POST', '/v1/collections', key, { name: 'bench-load' });
    const ids: string[] = [];
    for (let i = 0; i < docs; i++)
      ids.push(
        (await setup<{ id: string }>('POST', `/v1/collections/${coll.id}/documents`, key, corpusDoc(i))).id,
      );
    const ingestStart = performance.now();
    for (const id of ids) {
      for (;;) {
        const d = await setup<{ status: string; error?: string }>(
          'GET',
          `/v1/collections/${coll.id}/documents/${id}`,
          key,
        );
        if (d.status === 'ready') break;
        if (d.status === 'failed') throw new Error(`document ${id} failed: ${d.error}`);
        if (performance.now() - ingestStart > 300_000) throw new Error('corpus not ready after 300 s');
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    const ingestMs = performance.now() - ingestStart;

    let n = 0;
    const send = (route: Route): Promise<Reply> => {
      const i = n++;
      const t = TOPICS[i % TOPICS.length];
      if (route === 'search')
        return call(
          agent,
          base,
          'POST',
          `/v1/collections/${coll.id}/search`,
          key,
          { query: `${t} records shelf` },
          timeoutMs,
        );
      const question = `How often does the ${t}-${i % docs} component run? (request ${i})`;
      const body = {
        question,
        collection_ids: [coll.id],
        k,
        max_tokens: maxTokens,
        stream: false,
        ...(reuse ? { reuse } : {}),
      };
      return call(agent, base, 'POST', '/v1/query', key, body, timeoutMs);
    };

    // warm-up: one request per route (JIT, engine-tier residency)
    for (const r of routes) await send(r);

    const rows: LoadRow[] = [];
    // route by route (all of search, then all of query): a level's requests that time out at the client
    // may still be computed by the server, and must not slow the next route down
    for (const route of routes) {
      for (const c of levels) {
        const lat: number[] = [];
        const errorKinds: Record<string, number> = {};
        let cached = 0;
        const server = { retrieval: 0, ttft: 0, total: 0 };
        const t0 = performance.now();
        await Promise.all(
          Array.from({ length: c }, async () => {
            while (performance.now() - t0 < durationMs) {
              const s = performance.now();
              const r = await send(route);
              lat.push(performance.now() - s);
              if (r.status !== 200) errorKinds[String(r.status)] = (errorKinds[String(r.status)] ?? 0) + 1;
              else if (route === 'query') {
                const done = JSON.parse(r.body) as { cached?: boolean; timings: Record<string, number> };
                if (done.cached) cached++;
                server.retrieval += done.timings.retrieval_ms;
                server.ttft += done.timings.ttft_ms;
                server.total += done.timings.total_ms;
              }
            }
          }),
        );
        const wall = performance.now() - t0;
        lat.sort((a, b) => a - b);
        const errors = Object.values(errorKinds).reduce((a, b) => a + b, 0);
        const ok = Math.max(1, lat.length - errors);
        rows.push({
          route,
          concurrency: c,
          requests: lat.length,
          errors,
          errorKinds,
          requestsPerSec: lat.length / (wall / 1000),
          p50Ms: percentile(lat, 50),
          p99Ms: percentile(lat, 99),
          meanMs: lat.reduce((a, b) => a + b, 0) / lat.length,
          ...(route === 'query'
            ? {
                cachedAnswers: cached,
                serverMs: {
                  retrieval: server.retrieval / ok,
                  ttft: server.ttft / ok,
                  total: server.total / ok,
                },
              }
            : {}),
        });
      }
    }
    const result = {
      bench: 'load',
      mode: 'embedded (kvrag serve defaults: PGlite, fs blobs, in-process queue, CPU runner, bundled model)',
      docs,
      ingestMs,
      durationSPerLevel: durationMs / 1000,
      maxTokens,
      k,
      reuse: reuse ?? 'planner',
      timeoutMs,
      rows,
    };
    emit(!!values.json, result, () =>
      [
        `kvrag bench load: ${docs} documents (ready in ${(ingestMs / 1000).toFixed(1)} s), ${durationMs / 1000} s per level, ` +
          `query k ${k}, max_tokens ${maxTokens}, reuse ${reuse ?? "the planner's"}; client timeout ${timeoutMs / 1000} s`,
        formatTable(
          [
            'route',
            'concurrency',
            'requests',
            'errors',
            'req/s',
            'p50 ms',
            'p99 ms',
            'server retrieval ms',
            'server TTFT ms',
            'cached answers',
          ],
          rows.map((r) => [
            r.route,
            r.concurrency,
            r.requests,
            r.errors,
            r.requestsPerSec,
            r.p50Ms,
            r.p99Ms,
            r.serverMs?.retrieval ?? null,
            r.serverMs?.ttft ?? null,
            r.cachedAnswers ?? null,
          ]),
        ),
      ].join('\n'),
    );
    return 0;
  } finally {
    agent.destroy();
    if (serve.child.exitCode === null) {
      serve.child.kill('SIGTERM');
      await new Promise((r) => serve.child.once('exit', r));
    }
    rmSync(tmp, { recursive: true, force: true });
  }
}
