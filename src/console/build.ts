// Builds the console (src/console → dist/console) with vite.config.ts, always as a production build
// (minified, Preact without its debug hooks) whatever NODE_ENV the caller has: vitest sets NODE_ENV=test,
// which would make Vite build a development bundle about 40% larger.
//
//   node src/console/build.ts          npm's `prepare` (npm install / npm ci) and the browser tests: builds
//                                      unless dist/console is newer than every source it is made from
//   node src/console/build.ts --force  `npm run build`: always builds
//
// A production install (`--omit=dev`) has no Vite: `prepare` says so and leaves the build to `npm run
// build` where the dev dependencies are (infra/docker/api.Dockerfile builds it in a stage of its own);
// `--force` without Vite fails.
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const BUILT = join(ROOT, 'dist/console/index.html');
const SOURCES = [
  join(ROOT, 'src/console'),
  join(ROOT, 'vite.config.ts'),
  join(ROOT, 'src/routes/console-headers.ts'),
];

function newest(path: string): number {
  const st = statSync(path);
  if (!st.isDirectory()) return st.mtimeMs;
  return Math.max(st.mtimeMs, ...readdirSync(path).map((f) => newest(join(path, f))));
}

/** Whether dist/console was built after the last change to its sources. */
export function consoleBuildIsCurrent(): boolean {
  return existsSync(BUILT) && statSync(BUILT).mtimeMs >= Math.max(...SOURCES.map(newest));
}

async function main(force: boolean): Promise<number> {
  let vite: typeof import('vite');
  try {
    vite = await import('vite');
  } catch {
    const where = 'run `npm run build` where the dev dependencies are';
    if (force) {
      console.error(`kvrag: Vite is not installed, so the console cannot be built here; ${where}`);
      return 1;
    }
    console.log(`kvrag: Vite is not installed (production install): the console is not built here; ${where}`);
    return 0;
  }
  if (!force && consoleBuildIsCurrent()) {
    console.log('kvrag: the console build (dist/console) is current');
    return 0;
  }
  // Vite takes a production build's NODE_ENV from the environment when one is set there
  process.env.NODE_ENV = 'production';
  await vite.build({
    configFile: join(ROOT, 'vite.config.ts'),
    root: join(ROOT, 'src/console'),
    mode: 'production',
  });
  return 0;
}

if (import.meta.main) process.exitCode = await main(process.argv.includes('--force'));
