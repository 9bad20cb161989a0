// `kvrag workers` as its own process, configured only through KVRAG_* variables, against real
// components: the API harness (PGlite over the wire, filesystem blobs) takes an upload; the workers
// process relays it to BullMQ on redis-server and ingests it; SIGTERM stops it cleanly (exit 0).
import { type ChildProcess, spawn } from 'node:child_process';
import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chunks, documents } from '../../src/db/schema.ts';
import { type Harness, startApiHarness } from '../helpers/api-harness.ts';
import { waitFor } from '../helpers/job-queue-suite.ts';
import { parseExposition } from '../helpers/prometheus.ts';
import { type RedisTestServer, startRedis } from '../helpers/redis-server.ts';
import { type TinyModels, tinyModels } from '../helpers/tiny-model.ts';
import { FsBlobStore } from '../../src/storage/fs.ts';

describe('kvrag workers (separate process, BullMQ on redis-server)', () => {
  let h: Harness;
  let redis: RedisTestServer;
  let models: TinyModels;
  let child: ChildProcess | undefined;

  beforeAll(async () => {
    models = tinyModels();
    [h, redis] = await Promise.all([startApiHarness(), startRedis()]);
  });
  afterAll(async () => {
    child?.kill('SIGKILL');
    await h?.close();
    await redis?.stop();
    models?.cleanup();
  });

  it('ingests an uploaded document and exits 0 on SIGTERM', async () => {
    if (h.db.kind !== 'postgres') throw new Error('the harness serves PGlite over the wire');
    if (!(h.blobs instanceof FsBlobStore))
      throw new Error('the default harness keeps blobs on the filesystem');
    let output = '';
    child = spawn(process.execPath, ['bin/kvrag.js', 'workers', '--sweep-every', '0'], {
      env: {
        ...process.env,
        KVRAG_DATABASE_URL: h.db.url,
        KVRAG_REDIS_URL: redis.url,
        KVRAG_BLOB_STORE: `fs:${h.blobs.root}`,
        KVRAG_MODEL_DIR: models.make('m'),
        KVRAG_LOG_LEVEL: 'info',
        KVRAG_METRICS_PORT: '0',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child.stdout?.on('data', (d) => {
      output += d;
    });
    child.stderr?.on('data', (d) => {
      output += d;
    });
    const exited = new Promise<number | null>((resolve) => child!.once('exit', (code) => resolve(code)));

    const tenant = await h.tenant('cli');
    const col = await h.expectJson<{ id: string }>(201, 'POST', '/v1/collections', {
      key: tenant.key,
      json: { name: 'cli', chunking: { size: 64, overlap: 0 } },
    });
    const doc = await h.expectJson<{ id: string }>(201, 'POST', `/v1/collections/${col.id}/documents`, {
      key: tenant.key,
      json: { text: 'The workers process picks this up from the outbox. '.repeat(6), filename: 'cli.txt' },
    });
    // the process starts first (seconds of module loading on a loaded machine: not what this measures)
    await waitFor(() => output.includes('kvrag workers running'), 'the workers process to start', 120_000);
    await waitFor(
      async () => {
        const [d] = await h.db.db.select().from(documents).where(eq(documents.id, doc.id));
        return d.status === 'precomputing';
      },
      'precomputing',
      30_000,
    ).catch((e: Error) => {
      throw new Error(`${e.message} (workers output: ${output})`);
    });
    expect((await h.db.db.select().from(chunks).where(eq(chunks.documentId, doc.id))).length).toBeGreaterThan(
      1,
    );
    expect(output).toContain('kvrag workers running');
    // its metrics listener (port 0: a free one, named in the start line) counts the ingest job
    const metricsUrl = /"metrics":"([^"]+)"/.exec(output)![1];
    await waitFor(async () => {
      const x = parseExposition(await (await fetch(metricsUrl)).text());
      return x.value('kvrag_worker_jobs_total', { queue: 'ingest', result: 'completed' }) === 1;
    }, 'the ingest job on /metrics');

    child.kill('SIGTERM');
    expect(await exited).toBe(0);
    expect(output).toContain('workers shutting down');
    child = undefined;
  }, 180_000);
});
