// The web console in Debian's Chromium (playwright-core) against a real `kvrag serve` on loopback, one user
// journey: the page loads one production script and one stylesheet within the build's budget; a wrong key
// refused; the admin signs in by keyboard, makes a tenant and a key and switches to it; a collection; two
// record files uploaded (one dropped, one chosen) that reach `ready` in the live table; status filter;
// search with the query's terms marked; an answer streamed token by token whose citation [1] opens the
// chunk holding the asked record; the TTFT picture; the same question with reuse off; runners refreshing
// live; a document and then the collection deleted; a revoked key signing the tab out. Every page passes
// axe-core with no serious violation, works at 360 px, and the page never reaches beyond the server.
// Screenshots of each step: test-results/browser/.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BUDGET_GZIP_BYTES } from '../../vite.config.ts';
import { seriousAxeViolations } from '../helpers/browser.ts';
import {
  ADMIN_KEY,
  type ConsoleFixture,
  QUESTION,
  RECORD_FILES,
  startConsoleFixture,
} from '../helpers/console-fixture.ts';
import { REPO_ROOT } from '../helpers/serve-process.ts';

const SHOTS = join(REPO_ROOT, 'test-results/browser');
mkdirSync(SHOTS, { recursive: true });

let f: ConsoleFixture;
let page: Page;
let tenantKey = '';
let collectionId = '';
let step = 0;

const shot = async (name: string) => {
  step++;
  await page.screenshot({
    path: join(SHOTS, `${String(step).padStart(2, '0')}-${name}.png`),
    fullPage: true,
  });
};
const expectAccessible = async (what: string) => {
  expect(await seriousAxeViolations(page), `axe on ${what}`).toEqual([]);
};
/** Waits for what the page shows (the machine may be loaded: generous, but still bounded). */
const poll = <T>(fn: () => Promise<T> | T) => expect.poll(fn, { timeout: 20_000, interval: 100 });
/** The page fits `width` CSS pixels: nothing scrolls sideways but tables inside their own box. */
const fitsWidth = async (width: number) =>
  page.evaluate((w) => document.documentElement.scrollWidth <= w, width);

beforeAll(async () => {
  f = await startConsoleFixture();
  page = await f.context.newPage();
  page.setDefaultTimeout(30_000);
}, 180_000);
afterAll(async () => {
  await f?.close();
});

describe('web console in Chromium against kvrag serve', () => {
  it('loads one production script and one stylesheet, within the build budget', async () => {
    const loaded: { url: string; type: string; body: Buffer }[] = [];
    const onResponse = async (res: import('playwright-core').Response) => {
      const type = res.request().resourceType();
      if (type === 'script' || type === 'stylesheet')
        loaded.push({ url: res.url(), type, body: await res.body() });
    };
    page.on('response', onResponse);
    await page.goto(f.url);
    await page.getByLabel('API key').waitFor();
    page.off('response', onResponse);
    expect(loaded.map((r) => r.type).sort()).toEqual(['script', 'stylesheet']);
    for (const r of loaded) expect(r.url).toMatch(new RegExp(`^${f.url}/assets/index-[\\w-]+\\.(js|css)$`));
    const gz = loaded.reduce((n, r) => n + gzipSync(r.body, { level: 9 }).length, 0);
    expect(gz).toBeLessThanOrEqual(BUDGET_GZIP_BYTES);
    // a development bundle (Vite under NODE_ENV=test) carries every JSX element's source file and line
    const script = loaded.find((r) => r.type === 'script')!.body.toString();
    expect(script.includes(REPO_ROOT), 'the script names the source files').toBe(false);
    expect(/lineNumber/.test(script), 'the script carries JSX source lines').toBe(false);
  });

  it('refuses a wrong key and says so', async () => {
    await page.getByLabel('API key').fill(`kvrag_${'x'.repeat(43)}`);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await poll(() => page.getByRole('alert').textContent()).toMatch(/refused/);
    expect(await page.evaluate(() => sessionStorage.getItem('kvrag.key'))).toBeNull();
    await expectAccessible('sign-in');
    await shot('wrong-key');
  });

  it('signs the admin in by keyboard; makes a tenant and a key, and switches to it', async () => {
    await page.getByLabel('API key').fill('');
    await page.getByLabel('API key').focus();
    await page.keyboard.type(ADMIN_KEY);
    await page.keyboard.press('Enter');
    await page.getByRole('heading', { name: 'Tenants', level: 1 }).waitFor();
    // the key lives in this tab's session storage only, never in the address
    expect(page.url()).not.toContain(ADMIN_KEY);
    expect(await page.evaluate(() => [sessionStorage.getItem('kvrag.key'), localStorage.length])).toEqual([
      ADMIN_KEY,
      0,
    ]);
    await page.getByLabel('Name').fill('acme');
    await page.getByRole('button', { name: 'Create tenant' }).click();
    await page.getByRole('heading', { name: 'API keys of acme' }).waitFor();
    await page.getByRole('button', { name: 'Create key' }).click();
    tenantKey = (await page.getByTestId('new-key').textContent())!.trim();
    expect(tenantKey).toMatch(/^kvrag_[\w-]{43}$/);
    await expectAccessible('tenants');
    await shot('tenants-and-key');
    await page.getByRole('button', { name: 'Sign in with this key' }).click();
    await page.getByRole('heading', { name: 'Collections', level: 1 }).waitFor();
    expect(await page.evaluate(() => sessionStorage.getItem('kvrag.key'))).toBe(tenantKey);
  });

  it('creates a collection', async () => {
    await expectAccessible('collections');
    await page.getByLabel('Name').fill('ledgers');
    await page.getByLabel('Chunk size (tokens)').fill('256');
    await page.getByLabel('Overlap (tokens)').fill('32');
    await page.getByRole('button', { name: 'Create collection' }).click();
    await page.getByRole('heading', { name: 'ledgers', level: 1 }).waitFor();
    collectionId = /#\/documents\/([\w-]+)/.exec(page.url())![1];
    const col = await f.api<{ name: string; chunking: { size: number } }>(
      'GET',
      `/v1/collections/${collectionId}`,
      tenantKey,
    );
    expect(col.body).toMatchObject({ name: 'ledgers', chunking: { size: 256 } });
    await shot('collection-created');
  });

  it('uploads two files (dropped and chosen) and shows both reaching ready live', async () => {
    // what the live table showed for each file, in order, without any navigation
    await page.evaluate(() => {
      const seen: Record<string, string[]> = {};
      (window as unknown as { seen: typeof seen }).seen = seen;
      const note = () => {
        for (const tr of document.querySelectorAll('tr[data-status]')) {
          const name = tr.querySelector('.filename')?.textContent ?? '';
          const s = tr.getAttribute('data-status')!;
          const list = (seen[name] ??= []);
          if (list.at(-1) !== s) list.push(s);
        }
      };
      new MutationObserver(note).observe(document.body, { subtree: true, childList: true, attributes: true });
    });
    const [dropped, chosen] = RECORD_FILES;
    const dt = await page.evaluateHandle(
      ({ name, type, text }) => {
        const d = new DataTransfer();
        d.items.add(new File([text], name, { type }));
        return d;
      },
      { ...dropped },
    );
    await page.locator('fieldset.drop').dispatchEvent('drop', { dataTransfer: dt });
    await page
      .locator('input[type=file]')
      .setInputFiles({ name: chosen.name, mimeType: chosen.type, buffer: Buffer.from(chosen.text) });
    // one progress bar per file, each run to the end
    const bars = page.locator('.uploads progress');
    await poll(() => bars.count()).toBe(2);
    for (const file of RECORD_FILES) {
      const item = page.locator('.uploads li', { hasText: file.name });
      await poll(() => item.locator('.state').textContent()).toBe('uploaded');
      expect(await item.locator('progress').getAttribute('value')).toBe('1');
    }
    await expect
      .poll(() => page.locator('tr[data-status="ready"]').count(), { timeout: 90_000, interval: 250 })
      .toBe(2);
    const seen = await page.evaluate(() => (window as unknown as { seen: Record<string, string[]> }).seen);
    for (const file of RECORD_FILES) expect(seen[file.name]?.at(-1), file.name).toBe('ready');
    // the table followed ingestion while it ran: some file was shown in progress before it was ready
    expect(RECORD_FILES.some((x) => seen[x.name].length > 1)).toBe(true);
    for (const file of RECORD_FILES) {
      const row = page.locator('tr', { hasText: file.name });
      expect(Number(await row.locator('td.num').nth(0).textContent())).toBeGreaterThan(0); // chunks
      expect(await row.locator('td.num').nth(1).textContent()).toMatch(/^\d+(\.\d)? (KiB|MiB)$/); // artifacts
    }
    await expectAccessible('documents');
    await shot('documents-ready');
  }, 120_000);

  it('filters documents by status', async () => {
    await page.getByLabel('Status').selectOption('failed');
    await page.getByText('No failed documents.').waitFor();
    await page.getByLabel('Status').selectOption('ready');
    await poll(() => page.locator('tr[data-status="ready"]').count()).toBe(2);
    await page.getByLabel('Status').selectOption('');
  });

  it('searches and marks the query terms in the matched chunk', async () => {
    await page.getByRole('link', { name: 'Search it' }).click();
    await page.getByRole('heading', { name: 'Search', level: 1 }).waitFor();
    await page.getByLabel('Query').fill('record HMVZP');
    await page.getByRole('button', { name: 'Search', exact: true }).click();
    const first = page.locator('.hit').first();
    await first.waitFor();
    expect(await first.locator('.filename').textContent()).toBe(QUESTION.file);
    const marks = await first.locator('mark').allTextContents();
    expect(marks.map((m) => m.toLowerCase())).toEqual(expect.arrayContaining(['record', 'hmvzp']));
    expect(Number((await first.locator('.score').textContent())!.trim())).toBeGreaterThan(0);
    await expectAccessible('search');
    await shot('search');
    // an attribute filter no chunk satisfies leaves nothing
    await page.getByRole('button', { name: 'Add filter' }).click();
    await page.getByLabel('Filter 1 attribute').fill('lang');
    await page.getByLabel('Filter 1 value').fill('xx');
    await page.getByRole('button', { name: 'Search', exact: true }).click();
    await page.getByRole('heading', { name: /^0 results for/ }).waitFor();
  });

  it('streams an answer; citation [1] opens the chunk holding the record; the TTFT picture adds up', async () => {
    await page.getByRole('link', { name: 'Ask', exact: true }).click();
    await page.getByRole('heading', { name: 'Ask', level: 1 }).waitFor();
    await page.getByLabel('Question').fill(QUESTION.text);
    // the token counts the answer showed while it was streaming
    await page.evaluate(() => {
      const counts: number[] = [];
      (window as unknown as { counts: number[] }).counts = counts;
      new MutationObserver(() => {
        const el = document.querySelector('.answer-text');
        if (el?.getAttribute('data-streaming') !== 'true') return;
        const n = Number(el.getAttribute('data-tokens'));
        if (n > 0 && counts.at(-1) !== n) counts.push(n);
      }).observe(document.body, { subtree: true, childList: true, attributes: true, characterData: true });
    });
    await page.getByRole('button', { name: 'Ask', exact: true }).click();
    await page.getByRole('heading', { name: 'Plan and timings' }).waitFor({ timeout: 60_000 });
    const counts = await page.evaluate(() => (window as unknown as { counts: number[] }).counts);
    const answer = page.locator('.answer-text');
    const total = Number(await answer.getAttribute('data-tokens'));
    // the answer came as several token events (data-tokens counts them) and showed before it was done.
    // How many renders it took depends on how the browser's reads group the events (one, on a loaded
    // machine): that the API sends each token as it is made is test/integration/api-query.test.ts's.
    expect(total).toBeGreaterThan(1);
    expect(counts.length, 'token counts shown while streaming').toBeGreaterThanOrEqual(1);
    expect(counts.at(-1)!).toBeLessThanOrEqual(total);
    expect((await answer.textContent())!.length).toBeGreaterThan(0);

    // the best source is the chunk with the record asked for; it opens in a dialog, by keyboard too
    const first = page.locator('.citations button').first();
    expect(await first.textContent()).toContain(`[1] ${QUESTION.file}`);
    await first.focus();
    await page.keyboard.press('Enter');
    const dialog = page.getByRole('dialog');
    await dialog.locator('.chunk-text').waitFor();
    expect(await dialog.locator('.chunk-text').textContent()).toContain(QUESTION.record);
    expect(await dialog.getByRole('heading').textContent()).toBe(`[1] ${QUESTION.file}`);
    await expectAccessible('ask: chunk dialog');
    await shot('ask-citation');
    await page.keyboard.press('Escape');
    await poll(() => dialog.count()).toBe(0);
    expect(await page.evaluate(() => document.activeElement?.textContent)).toContain('[1]');

    // the TTFT picture: its parts (legend) add up to the TTFT in its caption
    const ttft = page.locator('figure', { hasText: 'Time to first token' }).first();
    const caption = (await ttft.locator('figcaption').textContent())!;
    const msOf = (t: string) => {
      const m = /([\d.]+) (ms|s)\b/.exec(t)!;
      return Number(m[1]) * (m[2] === 's' ? 1000 : 1);
    };
    const legend = await ttft
      .locator('.legend li')
      .evaluateAll((lis) =>
        lis.map((li) => [li.getAttribute('data-part'), li.querySelector('.legend-value')!.textContent]),
      );
    expect(legend.map(([k]) => k)).toEqual(
      expect.arrayContaining(['retrieval', 'load', 'rotate', 'prefill']),
    );
    const sum = legend.reduce((s, [, v]) => s + msOf(v!), 0);
    expect(Math.abs(sum - msOf(caption))).toBeLessThanOrEqual(Math.max(2, 0.02 * msOf(caption)));
    expect(Number(await ttft.locator('rect[data-part="load"]').getAttribute('width'))).toBeGreaterThan(0);
    // the plan's choices and reasons, cached vs computed tokens, bytes per tier
    const decisions = await page.locator('.decision').allTextContents();
    expect(decisions.join(' ')).toMatch(/Reuse mode\s*independent/);
    expect(decisions.join(' ')).toMatch(/block-diagonal/);
    expect(await page.locator('figure', { hasText: 'Prompt tokens' }).textContent()).toMatch(/cached/);
    expect(await page.locator('figure', { hasText: 'KV bytes read per tier' }).textContent()).toMatch(/KiB/);
    await expectAccessible('ask');
    await shot('ask-plan');

    // the same question with reuse off, side by side, with the ratio of the TTFTs measured now
    await page.getByRole('button', { name: 'Same question with reuse off' }).click();
    const compare = page.getByTestId('ttft-compare');
    await compare.waitFor({ timeout: 60_000 });
    const label = (await compare.locator('figcaption').textContent())!;
    const [planned, full] = await compare.locator('.bar-value').allTextContents();
    const ratio = Number(/after retrieval: reuse off takes ([\d.]+)× as long as independent/.exec(label)![1]);
    // the bars are the TTFTs after retrieval: the planned one is the picture's TTFT less its retrieval part
    const retrieval = msOf(legend.find(([k]) => k === 'retrieval')![1]!);
    expect(Math.abs(msOf(planned) - (msOf(caption) - retrieval))).toBeLessThanOrEqual(
      Math.max(2, 0.02 * msOf(caption)),
    );
    expect(ratio).toBeCloseTo(msOf(full) / msOf(planned), 1);
    await shot('ask-reuse-off');
  }, 120_000);

  it('fits a 360 px wide screen', async () => {
    await page.setViewportSize({ width: 360, height: 780 });
    expect(await fitsWidth(360)).toBe(true);
    await shot('ask-360px');
    await page.goto(`${f.url}/#/documents/${collectionId}`);
    await page.getByRole('heading', { name: 'ledgers', level: 1 }).waitFor();
    await poll(() => page.locator('tr[data-status]').count()).toBe(2);
    expect(await fitsWidth(360)).toBe(true);
    await expectAccessible('documents at 360 px');
    await shot('documents-360px');
    await page.setViewportSize({ width: 1280, height: 860 });
  });

  it('shows the runners with tier occupancy and hit rates, refreshed live', async () => {
    await page.getByRole('link', { name: 'Runners' }).click();
    const card = page.locator('article.runner');
    await card.waitFor();
    expect(await card.getByRole('heading').textContent()).toBe('in-process');
    expect(await card.locator('.model').textContent()).toBe('kvrag-tiny');
    expect(
      await card.locator('tr[data-tier]').evaluateAll((rs) => rs.map((r) => r.getAttribute('data-tier'))),
    ).toEqual(['engine', 'host', 'disk', 'object']);
    const reads = await card
      .locator('tr[data-tier] td.num')
      .evaluateAll((tds) => tds.filter((_, i) => i % 3 < 2).reduce((s, td) => s + Number(td.textContent), 0));
    expect(reads).toBeGreaterThan(0); // the answers above read artifacts
    const updated = page.getByText(/^Updated /);
    const before = await updated.textContent();
    await poll(() => updated.textContent()).not.toBe(before);
    await expectAccessible('runners');
    await shot('runners');
    await page.setViewportSize({ width: 360, height: 780 });
    expect(await fitsWidth(360)).toBe(true);
    await shot('runners-360px');
    await page.setViewportSize({ width: 1280, height: 860 });
  });

  it('deletes a document after confirmation', async () => {
    await page.goto(`${f.url}/#/documents/${collectionId}`);
    await poll(() => page.locator('tr[data-status]').count()).toBe(2);
    await page.getByRole('button', { name: `Delete ${RECORD_FILES[0].name}` }).click();
    const dialog = page.getByRole('dialog');
    expect(await dialog.getByRole('heading').textContent()).toBe(`Delete ${RECORD_FILES[0].name}?`);
    await expectAccessible('delete confirmation');
    await dialog.getByRole('button', { name: 'Delete document' }).click();
    await poll(() => page.locator('tr[data-status]').count()).toBe(1);
    const left = await f.api<{ data: { filename: string }[] }>(
      'GET',
      `/v1/collections/${collectionId}/documents`,
      tenantKey,
    );
    expect(left.body.data.map((d) => d.filename)).toEqual([RECORD_FILES[1].name]);
    await shot('document-deleted');
  });

  it('deletes the collection after confirmation', async () => {
    await page.goto(`${f.url}/#/collections`);
    await page.getByRole('heading', { name: 'Collections', level: 1 }).waitFor();
    await page.getByRole('button', { name: 'Delete collection ledgers' }).click();
    const dialog = page.getByRole('dialog');
    expect(await dialog.getByRole('heading').textContent()).toBe('Delete collection ledgers?');
    await dialog.getByRole('button', { name: 'Delete collection' }).click();
    await page.getByText('No collections yet').waitFor();
    expect((await f.api('GET', `/v1/collections/${collectionId}`, tenantKey)).status).toBe(404);
    await shot('collection-deleted');
  });

  it('signs the tab out when its key is revoked meanwhile, saying why', async () => {
    const tenants = await f.api<{ data: { id: string; name: string }[] }>(
      'GET',
      '/v1/admin/tenants',
      ADMIN_KEY,
    );
    const acme = tenants.body.data.find((t) => t.name === 'acme')!;
    const keys = await f.api<{ data: { id: string; prefix: string }[] }>(
      'GET',
      `/v1/admin/tenants/${acme.id}/keys`,
      ADMIN_KEY,
    );
    const key = keys.body.data.find((k) => tenantKey.startsWith(k.prefix))!;
    expect((await f.api('DELETE', `/v1/admin/tenants/${acme.id}/keys/${key.id}`, ADMIN_KEY)).status).toBe(
      200,
    );
    // the collections page re-reads its list every few seconds: the refusal ends the session
    await page.getByRole('heading', { name: 'kvrag console', level: 1 }).waitFor({ timeout: 15_000 });
    expect(await page.locator('.notice').textContent()).toMatch(/refused this key/);
    expect(await page.evaluate(() => sessionStorage.getItem('kvrag.key'))).toBeNull();
    await shot('key-revoked');
  });

  it('reached nothing but the server under test', () => {
    expect(f.outside).toEqual([]);
  });
});
