// Regenerates the README's console screenshots (docs/console-documents.png, docs/console-ask.png) from a
// fresh `kvrag serve` with the bundled model: `npm run console:screenshots`. Seeds a tenant, a key and a
// collection through the API, then drives the console in Chromium like the browser tests do: uploads the
// record files of test/helpers/console-fixture.ts padded with filler sentences (and a broken PDF), asks a
// question, asks it again with reuse off.
import { join } from 'node:path';
import { QUESTION, RECORD_FILES, startConsoleFixture } from '../helpers/console-fixture.ts';
import { ADMIN_KEY } from '../helpers/console-fixture.ts';
import { REPO_ROOT } from '../helpers/serve-process.ts';

const OUT = join(REPO_ROOT, 'docs');

// Filler sentences in the training episodes' style (gpu-runner/tools/train/EPISODES.md), so the ledgers
// are a few chunks long each and reuse has prefill to save; deterministic (a fixed LCG).
const ADJ = ['quiet', 'old', 'green', 'small', 'bright', 'red', 'long', 'tall', 'dark', 'warm'];
const NOUN = [
  'river',
  'bridge',
  'town',
  'field',
  'tree',
  'road',
  'boat',
  'star',
  'sea',
  'bird',
  'garden',
  'wall',
];
const VERB = ['crosses', 'follows', 'holds', 'watches', 'reaches', 'passes'];
const PREP = ['near', 'over', 'by', 'under', 'beyond'];
let seed = 7;
const pick = <T>(xs: readonly T[]) => xs[(seed = (seed * 1103515245 + 12345) % 2 ** 31) % xs.length];
const filler = (n: number) =>
  Array.from({ length: n }, () => {
    const s = `the ${pick(ADJ)} ${pick(NOUN)} ${pick(VERB)} the ${pick(ADJ)} ${pick(NOUN)} ${pick(PREP)} the ${pick(NOUN)}.`;
    return s[0].toUpperCase() + s.slice(1);
  }).join(' ');

const f = await startConsoleFixture({ width: 1280, height: 800 });
try {
  const must = async <T>(r: Promise<{ status: number; body: T }>, what: string) => {
    const { status, body } = await r;
    if (status >= 300) throw new Error(`${what}: HTTP ${status} ${JSON.stringify(body)}`);
    return body;
  };
  const tenant = await must(
    f.api<{ id: string }>('POST', '/v1/admin/tenants', ADMIN_KEY, { name: 'demo' }),
    'tenant',
  );
  const { key } = await must(
    f.api<{ key: string }>('POST', `/v1/admin/tenants/${tenant.id}/keys`, ADMIN_KEY, { name: 'readme' }),
    'key',
  );
  const col = await must(
    f.api<{ id: string }>('POST', '/v1/collections', key, { name: 'ledgers' }),
    'collection',
  );
  const page = await f.context.newPage();
  await page.goto(f.url);
  await page.evaluate((k) => sessionStorage.setItem('kvrag.key', k), key);
  await page.goto(`${f.url}/#/documents/${col.id}`);
  await page.reload();
  // uploaded through the console, with a PDF that is one only by its first bytes: it fails in parsing
  const files = [
    ...RECORD_FILES.map((x) => ({
      name: x.name,
      mimeType: x.type,
      buffer: Buffer.from(`${filler(10)}\n\n${x.text}\n\n${filler(10)}`),
    })),
    { name: 'scan.pdf', mimeType: 'application/pdf', buffer: Buffer.from('%PDF-1.4\nnot really a PDF\n') },
  ];
  await page.locator('input[type=file]').setInputFiles(files);
  await page.waitForFunction(
    (n) => document.querySelectorAll('tr[data-status="ready"], tr[data-status="failed"]').length === n,
    files.length,
    { timeout: 120_000 },
  );
  await page.screenshot({ path: join(OUT, 'console-documents.png'), fullPage: true });

  await page.getByRole('link', { name: 'Ask', exact: true }).click();
  await page.getByLabel('Question').fill(QUESTION.text);
  await page.getByRole('button', { name: 'Ask', exact: true }).click();
  await page.getByRole('heading', { name: 'Plan and timings' }).waitFor({ timeout: 60_000 });
  await page.getByRole('button', { name: 'Same question with reuse off' }).click();
  await page.getByTestId('ttft-compare').waitFor({ timeout: 60_000 });
  await page.screenshot({ path: join(OUT, 'console-ask.png'), fullPage: true });
  console.log(`wrote ${join(OUT, 'console-documents.png')} and ${join(OUT, 'console-ask.png')}`);
} finally {
  await f.close();
}
