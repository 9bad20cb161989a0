// `kvrag ingest PATH…` as a user runs it: a separate process uploading a directory to the API served over
// HTTP (PGlite over the wire, filesystem blobs), with the workers running in-process on the in-process
// queue and the test playing the runner (precompute → precompute-done). Checks the per-file progress
// lines, the status changes, the final summary and the exit code.
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type ServerType, serve } from '@hono/node-server';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MemoryJobQueue } from '../../src/queue/memory.ts';
import { type RunningWorkers, startWorkers } from '../../workers/run.ts';
import { loadServingModel } from '../../workers/serving-model.ts';
import { type Harness, startApiHarness } from '../helpers/api-harness.ts';
import { consumePrecompute } from '../helpers/artifact-runner.ts';
import { type TinyModels, tinyModels } from '../helpers/tiny-model.ts';

function run(args: string[]): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    let out = '';
    const child: ChildProcess = spawn(process.execPath, ['bin/kvrag.js', ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child.stdout?.on('data', (d) => {
      out += d;
    });
    child.stderr?.on('data', (d) => {
      out += d;
    });
    child.once('exit', (code) => resolve({ code, out }));
  });
}

describe('kvrag ingest PATH… (HTTP API, workers in-process)', () => {
  let h: Harness;
  let models: TinyModels;
  let server: ServerType;
  let url: string;
  let queue: MemoryJobQueue;
  let workers: RunningWorkers;
  let dir: string;

  beforeAll(async () => {
    models = tinyModels();
    h = await startApiHarness();
    dir = await mkdtemp(join(tmpdir(), 'kvrag-ingest-cli-'));
    server = serve({ fetch: h.app.fetch, hostname: '127.0.0.1', port: 0 });
    await new Promise<void>((r) => server.once('listening', () => r()));
    url = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
    queue = new MemoryJobQueue();
    const model = loadServingModel(models.make('m'));
    workers = startWorkers({ db: h.db.db, blobs: h.blobs, embeddings: h.api.embeddings, model }, queue, {
      relay: { idleMs: 50 },
      sweepEveryMs: 0,
    });
    // the runner: every chunk's artifact stored and reported
    consumePrecompute(queue, h.blobs);
  });
  afterAll(async () => {
    await workers?.stop();
    await queue?.close();
    await new Promise((r) => server?.close(r));
    await h?.close();
    await rm(dir, { recursive: true, force: true });
    models?.cleanup();
  });

  it('uploads a directory, prints progress per file and status changes, summarises, exits 1 on a failed file', async () => {
    const tenant = await h.tenant('cli');
    const col = await h.expectJson<{ id: string }>(201, 'POST', '/v1/collections', {
      key: tenant.key,
      json: { name: 'cli', chunking: { size: 64, overlap: 0 } },
    });
    await mkdir(join(dir, 'docs', 'sub'), { recursive: true });
    await writeFile(join(dir, 'docs', 'a.txt'), 'Alpha document for the command line ingest. '.repeat(5));
    await writeFile(join(dir, 'docs', 'sub', 'b.md'), '# Beta\n\nA markdown file in a sub directory.\n');
    await writeFile(join(dir, 'docs', 'bad.pdf'), '%PDF-1.4\nnot a real pdf\n%%EOF\n');

    const args = ['ingest', '--url', url, '--key', tenant.key, '--collection', col.id, '--timeout', '60'];
    const first = await run([...args, join(dir, 'docs')]);
    expect(first.out).toMatch(/\[1\/3\] .*a\.txt: uploaded as [0-9a-f-]{36} \(queued\)/);
    expect(first.out).toMatch(/\[2\/3\] .*bad\.pdf: uploaded as/);
    expect(first.out).toMatch(/\[3\/3\] .*b\.md: uploaded as/);
    expect(first.out).toMatch(/a\.txt: ready/);
    expect(first.out).toMatch(/b\.md: ready/);
    expect(first.out).toMatch(/bad\.pdf: failed \(.+\)/);
    expect(first.out).toMatch(/3 file\(s\): .*ready 2/);
    expect(first.out).toMatch(/failed 1/);
    expect(first.code).toBe(1);

    // the good files again: already there and ready → exit 0
    const again = await run([...args, join(dir, 'docs', 'a.txt'), join(dir, 'docs', 'sub')]);
    expect(again.out).toMatch(/\[1\/2\] .*a\.txt: already uploaded as [0-9a-f-]{36} \(ready\)/);
    expect(again.out).toMatch(/2 file\(s\): ready 2/);
    expect(again.code).toBe(0);

    // a refused upload (unknown collection) is reported and fails the run
    const refused = await run([
      ...args.slice(0, 5),
      '--collection',
      crypto.randomUUID(),
      join(dir, 'docs', 'a.txt'),
    ]);
    expect(refused.out).toMatch(/refused \(404 not_found/);
    expect(refused.code).toBe(1);
  });
});
