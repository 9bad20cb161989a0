// `kvrag runner` processes on real Redis (BullMQ + registry) and a filesystem object store: a runner
// SIGKILLed in the middle of a precompute job leaves no half-written artifact and no precompute-done; a
// restarted runner picks the job up again, skips what the killed try stored and checkpointed, stores the
// rest, and reports once.
// The dead runner's heartbeat expires; the live one leaves the registry on SIGTERM and exits 0.
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeArtifact } from '../../gpu-runner/engine/kv/artifact-format.ts';
import { modelFingerprint } from '../../gpu-runner/engine/fingerprint.ts';
import { BullMqJobQueue } from '../../src/queue/bullmq.ts';
import type { PrecomputeDoneJob } from '../../contracts/jobs.ts';
import { enqueueJob } from '../../contracts/jobs.ts';
import { RedisRegistry } from '../../src/routing/registry-redis.ts';
import { FsBlobStore } from '../../src/storage/fs.ts';
import { type RedisTestServer, startRedis } from '../helpers/redis-server.ts';
import { tinyModels } from '../helpers/tiny-model.ts';

const CHUNKS = 16;
const RUNNER_TOKEN = 'runner-precompute-test-credential-0123456789';
const models = tinyModels();
const tmp = mkdtempSync(join(tmpdir(), 'kvrag-runner-pre-'));
const objects = join(tmp, 'objects');
let redis: RedisTestServer;
let modelDir: string;
const children: ChildProcess[] = [];

beforeAll(async () => {
  redis = await startRedis();
  // big enough that one chunk takes tens of ms on the reference backend, so a kill lands mid-job
  modelDir = models.make('pre', {
    hidden: 128,
    intermediate: 256,
    layers: 2,
    heads: 4,
    kvHeads: 2,
    headDim: 32,
  });
});
afterAll(async () => {
  for (const c of children) c.kill('SIGKILL');
  await redis?.stop();
  models.cleanup();
  rmSync(tmp, { recursive: true, force: true });
});

interface Child {
  proc: ChildProcess;
  port: Promise<number>;
  exited: Promise<number | null>;
  output: () => string;
}

function startRunner(id: string): Child {
  let out = '';
  const proc = spawn(
    process.execPath,
    [
      'bin/kvrag.js',
      'runner',
      '--port',
      '0',
      '--host',
      '127.0.0.1',
      '--id',
      id,
      '--precompute-batch',
      '1',
    ].concat(['--heartbeat-ms', '200', '--job-lock-ms', '600', '--grace-ms', '2000']),
    {
      env: {
        ...process.env,
        KVRAG_REDIS_URL: redis.url,
        KVRAG_BLOB_STORE: `fs:${objects}`,
        KVRAG_DATA_DIR: join(tmp, id),
        KVRAG_MODEL_DIR: modelDir,
        KVRAG_ENGINE_BACKEND: 'reference',
        KVRAG_LOG_LEVEL: 'info',
        KVRAG_RUNNER_TOKEN: RUNNER_TOKEN,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  children.push(proc);
  const port = new Promise<number>((resolve, reject) => {
    proc.stdout!.on('data', (d) => {
      out += d;
      const m = out.match(/\{"listening":(\d+)/);
      if (m) resolve(Number(m[1]));
    });
    proc.once('exit', () => reject(new Error(`runner ${id} exited early: ${out}`)));
  });
  port.catch(() => {});
  proc.stderr!.on('data', (d) => {
    out += d;
  });
  const exited = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
  return { proc, port, exited, output: () => out };
}

/** Artifact files under the object store (temp files of an interrupted write are not artifacts). */
function artifactFiles(): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    let entries: import('node:fs').Dirent[];
    try {
      entries = readdirSync(d, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      if (e.isDirectory()) walk(join(d, e.name));
      else if (e.name.endsWith('.kv')) out.push(join(d, e.name));
    }
  };
  walk(objects);
  return out;
}

async function waitFor(cond: () => boolean | Promise<boolean>, what: string, ms = 20_000): Promise<void> {
  const until = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

describe('kvrag runner: precompute consumer and heartbeat', () => {
  it('a runner killed mid-job: the job is picked up again, finishes once, nothing written twice', async () => {
    const queue = new BullMqJobQueue({ url: redis.url });
    const registry = new RedisRegistry(redis.url);
    try {
      const fingerprint = modelFingerprint(modelDir);
      const chunks = Array.from({ length: CHUNKS }, (_, c) => ({
        chunkHash: (c + 1).toString(16).padStart(64, '0'),
        tokenIds: Array.from({ length: 160 }, (_, i) => (i * 31 + c * 17 + ((i * c) % 13)) % 200),
      }));
      const first = startRunner('runner-a');
      await first.port;
      const jobId = await enqueueJob(
        queue,
        'precompute',
        { v: 1, modelFingerprint: fingerprint, chunks },
        { attempts: 5, backoffMs: 100 },
      );
      // a few artifacts in (each checkpointed after it is stored), so some are behind a checkpoint
      await waitFor(() => artifactFiles().length >= 3, `a few artifacts (${first.output()})`);
      first.proc.kill('SIGKILL');
      await first.exited;
      const atKill = artifactFiles().length;
      expect(atKill).toBeGreaterThan(0);
      expect(atKill).toBeLessThan(CHUNKS); // really mid-job
      expect(Object.values(await queue.counts('precompute-done')).reduce((a, b) => a + b, 0)).toBe(0);
      expect((await registry.list()).map((r) => r.id)).toContain('runner-a');

      const second = startRunner('runner-b');
      const port = await second.port;
      const done: PrecomputeDoneJob[] = [];
      const consumer = queue.consume<PrecomputeDoneJob>('precompute-done', async (d) => {
        done.push(d);
      });
      await waitFor(() => done.length > 0, `precompute-done (${second.output()})`);
      // the dead runner's heartbeat expires (TTL 3 × 200 ms); the live one stays
      await waitFor(async () => {
        const ids = (await registry.list()).map((r) => r.id);
        return !ids.includes('runner-a') && ids.includes('runner-b');
      }, 'runner-a to expire from the registry');
      await new Promise((r) => setTimeout(r, 300)); // a duplicate report would show up by now
      await consumer.close();

      expect(done).toHaveLength(1);
      const report = done[0];
      expect(report.failed).toEqual([]);
      expect(report.runnerId).toBe('runner-b');
      expect(report.artifacts.map((a) => a.chunkHash).sort()).toEqual(chunks.map((c) => c.chunkHash).sort());
      expect(new Set(report.artifacts.map((a) => a.objectKey)).size).toBe(CHUNKS);
      // one object per chunk, each complete and verified
      expect(artifactFiles()).toHaveLength(CHUNKS);
      const blobs = new FsBlobStore(objects);
      const hb = (await registry.list()).find((r) => r.id === 'runner-b')!;
      expect(hb.models).toEqual([fingerprint]);
      for (const a of report.artifacts) {
        const bytes = (await blobs.get(a.objectKey))!;
        expect(bytes.byteLength).toBe(a.bytes);
        const key = a.objectKey.split('/').at(-1)!.replace(/\.kv$/, '');
        expect(() => decodeArtifact(bytes, { key, fingerprint })).not.toThrow();
      }
      // the second runner skipped what the first had stored and checkpointed in the job (all it stored but
      // at most the one batch written between its last checkpoint and the kill), and stored the rest
      const metrics = await (
        await fetch(`http://127.0.0.1:${port}/metrics`, {
          headers: { authorization: `Bearer ${RUNNER_TOKEN}` },
        })
      ).text();
      const count = (r: string) =>
        Number(
          metrics.match(
            new RegExp(`kvrag_runner_precompute_artifacts_total\\{result="${r}"\\} (\\d+)`),
          )?.[1] ?? 0,
        );
      expect(count('skipped')).toBeGreaterThanOrEqual(atKill - 1);
      expect(count('skipped')).toBeGreaterThanOrEqual(2);
      expect(count('stored') + count('skipped')).toBe(CHUNKS);
      expect((await queue.getJob('precompute-done', `precompute-done-${jobId}`))?.state).toBe('completed');

      // graceful stop: exit 0 and leave the registry at once
      second.proc.kill('SIGTERM');
      expect(await second.exited).toBe(0);
      expect((await registry.list()).map((r) => r.id)).not.toContain('runner-b');
    } finally {
      await queue.close();
      await registry.close();
    }
  }, 60_000);
});
