// The console's files as the API serves them (src/routes/console.ts over src/static-assets.ts), from a
// build directory made here: index.html and hashed assets with their types, cache rules and security
// headers; nothing outside the build is reachable; a missing build says how to make it.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { createApp } from '../../src/app.ts';
import { loadConfig } from '../../src/config.ts';
import { CONSOLE_HEADERS } from '../../src/routes/console-headers.ts';
import { consoleAssets } from '../../src/static-assets.ts';

const root = mkdtempSync(join(tmpdir(), 'kvrag-console-'));
const build = join(root, 'console');
mkdirSync(join(build, 'assets'), { recursive: true });
writeFileSync(join(build, 'index.html'), '<!doctype html><title>kvrag</title><div id="app"></div>');
writeFileSync(join(build, 'assets', 'index-Ab12.js'), 'console.log(1)');
writeFileSync(join(build, 'assets', 'index-Cd34.css'), 'body{}');
writeFileSync(join(root, 'secret.txt'), 'outside the build');
afterAll(() => rmSync(root, { recursive: true, force: true }));

const appWith = (dir: string | null) =>
  createApp({ config: loadConfig({}), readiness: {}, ...(dir ? { assets: consoleAssets(dir) } : {}) });

describe('console files', () => {
  const app = appWith(build);

  it('serves index.html at / with the security headers, revalidated', async () => {
    const res = await app.request('/');
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('text/html; charset=utf-8');
    expect(res.headers.get('cache-control')).toBe('no-cache');
    for (const [k, v] of Object.entries(CONSOLE_HEADERS)) expect(res.headers.get(k)).toBe(v);
    expect(res.headers.get('content-security-policy')).toContain("connect-src 'self'");
    expect(await res.text()).toContain('<div id="app">');
  });

  it('serves hashed assets with their type, cached for good', async () => {
    const js = await app.request('/assets/index-Ab12.js');
    expect(js.status).toBe(200);
    expect(js.headers.get('content-type')).toBe('text/javascript; charset=utf-8');
    expect(js.headers.get('cache-control')).toContain('immutable');
    expect(await js.text()).toBe('console.log(1)');
    expect((await app.request('/assets/index-Cd34.css')).headers.get('content-type')).toBe(
      'text/css; charset=utf-8',
    );
  });

  it('reaches nothing outside the build and no unknown file', async () => {
    for (const path of [
      '/assets/..%2Fsecret.txt',
      '/assets/..%2F..%2Fsecret.txt',
      '/assets/%2e%2e%2Fsecret.txt',
      '/assets/.hidden.js',
      '/assets/missing-1.js',
      '/assets/index-Ab12.exe',
      '/secret.txt',
    ]) {
      const res = await app.request(path);
      expect(res.status, path).toBe(404);
      expect(await res.text(), path).not.toContain('outside the build');
    }
    const assets = consoleAssets(build);
    expect(await assets.get('../secret.txt')).toBeNull();
    expect(await assets.get('assets/../../secret.txt')).toBeNull();
    expect(await assets.get('assets/sub/dir.js')).toBeNull();
  });

  it('without a build, / says how to make one (and the API still answers)', async () => {
    for (const a of [appWith(null), appWith(join(root, 'not-built'))]) {
      const res = await a.request('/');
      expect(res.status).toBe(404);
      expect(await res.text()).toContain('npm run build');
      expect((await a.request('/healthz')).status).toBe(200);
    }
  });
});
