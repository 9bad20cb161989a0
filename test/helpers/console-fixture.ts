// What the browser tests and the README screenshot script share: a `kvrag serve` on loopback (embedded
// mode, bundled model, an admin key) with Chromium sealed off from everything else, and record documents
// the bundled model was trained on (`Record K: V.`, gpu-runner/tools/train/EPISODES.md).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Browser, BrowserContext } from 'playwright-core';
import { ensureConsoleBuild, launchChromium, sealedContext } from './browser.ts';
import { type ServeProcess, spawnServe, stopServe } from './serve-process.ts';

export const ADMIN_KEY = 'console-admin-key-0123456789';

/**
 * Two documents of records. Each says "value" and "record", so a question "What is the value of record
 * K?" finds the one holding K by full text as well (websearch_to_tsquery needs every term).
 */
export const RECORD_FILES = [
  {
    name: 'harbor.txt',
    type: 'text/plain',
    text: [
      'Harbor ledger. The value of each record below is its code.',
      'Record KQWTX: 482913.',
      'Record PLMNB: 556201.',
      'The quiet river crosses the old bridge near the town.',
    ].join('\n'),
  },
  {
    name: 'garden.md',
    type: 'text/markdown',
    text: [
      '# Garden ledger',
      '',
      'The value of each record below is its code.',
      '',
      'Record HMVZP: 730256.',
      '',
      'Record RTYQW: 904417.',
      '',
      'The red bird sings the long song in the garden by the wall.',
    ].join('\n'),
  },
] as const;

export const QUESTION = {
  text: 'What is the value of record HMVZP?',
  file: 'garden.md',
  record: 'Record HMVZP: 730256.',
};

export interface ConsoleFixture {
  url: string;
  serve: ServeProcess;
  browser: Browser;
  context: BrowserContext;
  /** Requests the page tried outside the server under test (refused). */
  outside: string[];
  /** The API as the admin, or as a key (for checks and seeding). */
  api<T>(method: string, path: string, key: string, body?: unknown): Promise<{ status: number; body: T }>;
  close(): Promise<void>;
}

export async function startConsoleFixture(
  opts: { width?: number; height?: number } = {},
): Promise<ConsoleFixture> {
  ensureConsoleBuild();
  const dir = mkdtempSync(join(tmpdir(), 'kvrag-console-'));
  const serve = spawnServe({ cwd: dir, env: { KVRAG_PORT: '0', KVRAG_ADMIN_KEY: ADMIN_KEY } });
  // Chromium starts while the server does (its database and model take the longer)
  const launching = launchChromium();
  let browser: Browser | undefined;
  try {
    const [url, b] = await Promise.all([serve.url, launching]);
    browser = b;
    const { context, outside } = await sealedContext(b, url, opts);
    return {
      url,
      serve,
      browser: b,
      context,
      outside,
      async api<T>(method: string, path: string, key: string, body?: unknown) {
        const res = await fetch(`${url}${path}`, {
          method,
          headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
          body: body === undefined ? undefined : JSON.stringify(body),
        });
        return { status: res.status, body: (await res.json()) as T };
      },
      async close() {
        await b.close();
        await stopServe(serve.child);
        rmSync(dir, { recursive: true, force: true });
      },
    };
  } catch (e) {
    await (browser ?? (await launching.catch(() => undefined)))?.close();
    await stopServe(serve.child);
    rmSync(dir, { recursive: true, force: true });
    throw e;
  }
}
