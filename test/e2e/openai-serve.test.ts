// README's "point your OpenAI client at kvrag" example (docs/openai-client.mjs), run as it is — a separate
// Node process with the official `openai` SDK, configured only by OPENAI_BASE_URL and OPENAI_API_KEY —
// against a real `kvrag serve` (embedded mode: PGlite on disk, filesystem blobs, in-process workers and
// runner on the bundled model).
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { DEFAULT_SYSTEM } from '../../src/answer/prompt.ts';
import { cleanEnv, REPO_ROOT, spawnServe, stopServe } from '../helpers/serve-process.ts';

const ADMIN = 'e2e-admin-key-0123456789abcdef';
let child: ChildProcess;
let url: string;
let cwd: string;

beforeAll(async () => {
  cwd = mkdtempSync(join(tmpdir(), 'kvrag-openai-serve-'));
  const serve = spawnServe({ cwd, env: { KVRAG_PORT: '0', KVRAG_ADMIN_KEY: ADMIN } });
  child = serve.child;
  url = await serve.url;
}, 120_000);
afterAll(async () => {
  await stopServe(child);
  if (cwd) rmSync(cwd, { recursive: true, force: true });
});

async function post<T>(key: string, path: string, body: unknown): Promise<T> {
  const res = await fetch(`${url}${path}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  if (!res.ok) throw new Error(`${path}: ${res.status} ${await res.text()}`);
  return (await res.json()) as T;
}

it('the README example runs unchanged against kvrag serve', async () => {
  const tenant = await post<{ id: string }>(ADMIN, '/v1/admin/tenants', { name: 'openai-example' });
  const { key } = await post<{ key: string }>(ADMIN, `/v1/admin/tenants/${tenant.id}/keys`, {});
  const out = await new Promise<{ code: number | null; stdout: string; stderr: string }>((done) => {
    let stdout = '';
    let stderr = '';
    const p = spawn(process.execPath, [resolve(REPO_ROOT, 'docs/openai-client.mjs')], {
      cwd: REPO_ROOT,
      env: { ...cleanEnv, OPENAI_BASE_URL: `${url}/v1`, OPENAI_API_KEY: key },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    p.stdout?.on('data', (d) => {
      stdout += d;
    });
    p.stderr?.on('data', (d) => {
      stderr += d;
    });
    p.once('exit', (code) => done({ code, stdout, stderr }));
  });
  expect(out.code, out.stderr).toBe(0);
  const lines = out.stdout.split('\n');
  expect(lines).toContain('file completed');
  expect(lines.find((l) => l.startsWith('search '))).toMatch(/^search records\.txt \d\.\d{3}$/);
  const answer = /^answer (".*") (\d+)$/.exec(lines.find((l) => l.startsWith('answer ')) ?? '');
  expect(answer).not.toBeNull();
  // the retrieved chunk came from its stored KV artifact: more prompt tokens from cache than the system
  // prefix holds (the bundled model is byte-level: one token per byte)
  expect(Number(answer![2])).toBeGreaterThan(Buffer.byteLength(DEFAULT_SYSTEM));
  // greedy: the streamed answer is the plain one
  expect(lines.find((l) => l.startsWith('streamed '))).toBe(`streamed ${answer![1]}`);
  expect(lines.at(-2)).toBe('cleaned up');
}, 120_000);
