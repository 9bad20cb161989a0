// `kvrag serve` (what npm start runs) on a fresh directory with no configuration answers /healthz.
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { REPO_ROOT, spawnServe } from '../helpers/serve-process.ts';

const startServe = (cwd: string, env: Record<string, string>) => spawnServe({ cwd, env });

const dirs: string[] = [];
const children: ChildProcess[] = [];
afterAll(() => {
  for (const c of children) c.kill('SIGKILL');
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe('kvrag serve', () => {
  it('answers /healthz and /readyz on a fresh directory with no configuration', async () => {
    const cwd = mkdtempSync(join(tmpdir(), 'kvrag-serve-'));
    dirs.push(cwd);
    // Port 0 only so parallel test runs cannot collide; every other setting is the default.
    const s = startServe(cwd, { KVRAG_PORT: '0' });
    children.push(s.child);
    const url = await s.url;
    const health = await fetch(`${url}/healthz`);
    expect(health.status).toBe(200);
    expect(await health.json()).toEqual({ status: 'ok' });
    const ready = await fetch(`${url}/readyz`);
    expect(await ready.json()).toMatchObject({ status: 'ready' });
    s.child.kill('SIGTERM');
    const code = await new Promise((r) => s.child.once('exit', r));
    expect(code).toBe(0);
  });

  it('stops with a message naming an invalid setting', async () => {
    const s = startServe(tmpdir(), { KVRAG_PORT: 'eighty' });
    children.push(s.child);
    const code = await new Promise((r) => s.child.once('exit', r));
    expect(code).toBe(2);
    expect(s.stderr()).toContain('KVRAG_PORT');
  });
});

describe('npm start', () => {
  it('runs kvrag serve through the package script (the README quick start)', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'kvrag-npm-start-'));
    dirs.push(dataDir);
    const { child, url: listening } = spawnServe({
      cwd: REPO_ROOT,
      env: { KVRAG_PORT: '0', KVRAG_DATA_DIR: dataDir },
      command: { file: 'npm', args: ['start', '--silent'], detached: true },
    });
    children.push(child);
    const url = await listening;
    const health = await fetch(`${url}/healthz`);
    expect(await health.json()).toEqual({ status: 'ok' });
    // npm runs the script in its own shell: stop the whole process group.
    process.kill(-child.pid!, 'SIGTERM');
    await new Promise((r) => child.once('exit', r));
  }, 60_000);
});
