// The web console in a real browser: Debian's Chromium driven by playwright-core, sealed off from the
// network (only the server under test is reachable; every other request is refused and recorded), axe-core
// for accessibility, and the console's build kept current before a test loads it.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { type Browser, type BrowserContext, chromium, type Page } from 'playwright-core';
import { REPO_ROOT } from './serve-process.ts';
import { CHROMIUM } from './system-packages.ts';

/** Rebuilds dist/console when its sources are newer than the build (src/console/build.ts). */
export function ensureConsoleBuild(): void {
  execFileSync(process.execPath, [join(REPO_ROOT, 'src/console/build.ts')], {
    cwd: REPO_ROOT,
    stdio: 'pipe',
  });
}

/** Headless Chromium; Playwright gives every launch a fresh, temporary profile (--user-data-dir). */
export async function launchChromium(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
      // nothing but loopback resolves, whatever the page or the browser itself asks for
      '--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1',
    ],
  });
}

/**
 * A context for `origin` where any request to another origin is refused and recorded in `outside`
 * (the console must load nothing from elsewhere: fonts, icons and scripts are its own).
 */
export async function sealedContext(
  browser: Browser,
  origin: string,
  opts: { width?: number; height?: number } = {},
): Promise<{ context: BrowserContext; outside: string[] }> {
  const context = await browser.newContext({
    viewport: { width: opts.width ?? 1280, height: opts.height ?? 860 },
    deviceScaleFactor: 1,
    reducedMotion: 'reduce',
  });
  const outside: string[] = [];
  await context.route('**/*', (route) => {
    const url = route.request().url();
    if (url.startsWith(`${origin}/`) || url === origin || url.startsWith('data:')) return route.continue();
    outside.push(url);
    return route.abort('blockedbyclient');
  });
  return { context, outside };
}

const AXE_SOURCE = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');

export interface AxeViolation {
  id: string;
  impact: string | null;
  help: string;
  nodes: string[];
}

/** axe-core's WCAG 2.x A/AA rules on the page as it is now; the serious and critical violations. */
export async function seriousAxeViolations(page: Page): Promise<AxeViolation[]> {
  // evaluated through the DevTools protocol, so the console's CSP (script-src 'self') does not apply
  if (!(await page.evaluate('typeof window.axe === "object"'))) await page.evaluate(AXE_SOURCE);
  const result = (await page.evaluate(`axe.run(document, {
    runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice'] },
    resultTypes: ['violations'],
  })`)) as {
    violations: { id: string; impact: string | null; help: string; nodes: { target: string[] }[] }[];
  };
  return result.violations
    .filter((v) => v.impact === 'serious' || v.impact === 'critical')
    .map((v) => ({
      id: v.id,
      impact: v.impact,
      help: v.help,
      nodes: v.nodes.map((n) => n.target.join(' ')),
    }));
}
