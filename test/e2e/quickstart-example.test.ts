// The README quick start's example end to end against a real served app: `npm start` (kvrag serve in
// embedded mode, the bundled model), `kvrag ingest examples/harbor-config.md`, then the README's two
// questions through `kvrag query` (streamed tokens and --json) and through POST /v1/chat/completions
// (greedy). The bundled model must answer each with the exact value the document gives — the same bytes,
// no leading space.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { callJson, REPO_ROOT, runKvrag, type ServeProcess, spawnServe } from '../helpers/serve-process.ts';

const ADMIN = 'e2e-admin-key-0123456789abcdef';
const EXAMPLE = join(REPO_ROOT, 'examples/harbor-config.md');
const doc = readFileSync(EXAMPLE, 'utf8');

/** The README's two questions, each with the value the example document states for it. */
const QUESTIONS = [
  { question: 'What is the value of max_connections?', answer: /^max_connections = (.+)$/m.exec(doc)![1] },
  {
    question: 'What does the table list for cache_size?',
    answer: /^\| cache_size \| (.+) \|$/m.exec(doc)![1],
  },
];

let serve: ServeProcess;
let url: string;
let dataDir: string;
let key: string;
let collection: string;

const call = <T>(k: string, method: string, path: string, body?: unknown) =>
  callJson<T>(url, k, method, path, body);

beforeAll(async () => {
  dataDir = mkdtempSync(join(tmpdir(), 'kvrag-quickstart-'));
  // as the README starts it (`KVRAG_ADMIN_KEY=… npm start` in the repository), its data in a fresh directory
  serve = spawnServe({
    cwd: REPO_ROOT,
    env: { KVRAG_PORT: '0', KVRAG_ADMIN_KEY: ADMIN, KVRAG_DATA_DIR: dataDir },
    command: { file: 'npm', args: ['start', '--silent'], detached: true },
  });
  url = await serve.url;
  const tenant = await call<{ id: string }>(ADMIN, 'POST', '/v1/admin/tenants', { name: 'demo' });
  key = (await call<{ key: string }>(ADMIN, 'POST', `/v1/admin/tenants/${tenant.body.id}/keys`, {})).body.key;
  // the README's collection: the default embedding provider at 384 dimensions
  const coll = await call<{ id: string }>(key, 'POST', '/v1/collections', {
    name: 'docs',
    embedding: { dimension: 384 },
  });
  expect(coll.status).toBe(201);
  collection = coll.body.id;
  const ing = await runKvrag(['ingest', '--url', url, '--key', key, '--collection', collection, EXAMPLE]);
  expect(ing.code, ing.err).toBe(0);
}, 180_000);

afterAll(async () => {
  // npm runs the script in its own shell: stop the whole process group
  const child = serve?.child;
  if (child?.pid !== undefined && child.exitCode === null) {
    process.kill(-child.pid, 'SIGTERM');
    await new Promise((r) => child.once('exit', r));
  }
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
});

describe('README quick start: examples/harbor-config.md', () => {
  it('README asks these questions about this file', () => {
    const readme = readFileSync(join(REPO_ROOT, 'README.md'), 'utf8');
    expect(readme).toContain('examples/harbor-config.md');
    for (const q of QUESTIONS) expect(readme).toContain(`"${q.question}"`);
  });

  it.each(QUESTIONS)(
    'kvrag query "$question" answers $answer',
    async ({ question, answer }) => {
      const common = ['query', question, '--url', url, '--key', key, '--collection', collection];
      const json = await runKvrag([...common, '--json']);
      expect(json.code, json.err).toBe(0);
      const done = JSON.parse(json.out) as { text: string; citations: { filename: string }[] };
      expect(done.text).toBe(answer);
      expect(done.citations.map((c) => c.filename)).toContain('harbor-config.md');
      // the streamed tokens, as the terminal shows them: the answer, then the sources
      const streamed = await runKvrag(common);
      expect(streamed.code, streamed.err).toBe(0);
      expect(streamed.out.startsWith(`${answer}\n\nSources:\n`)).toBe(true);
    },
    120_000,
  );

  it.each(QUESTIONS)(
    'POST /v1/chat/completions "$question" answers $answer',
    async ({ question, answer }) => {
      const r = await call<{ choices: { message: { content: string }; finish_reason: string }[] }>(
        key,
        'POST',
        '/v1/chat/completions',
        {
          model: 'kvrag-tiny',
          messages: [{ role: 'user', content: question }],
          temperature: 0,
          kvrag: { collection_ids: [collection] },
        },
      );
      expect(r.status).toBe(200);
      expect(r.body.choices[0].message.content).toBe(answer);
      expect(r.body.choices[0].finish_reason).toBe('stop');
    },
    120_000,
  );
});
