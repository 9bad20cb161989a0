// npm's `prepare` (run by `npm install` and `npm ci` in this repository, and by the browser tests): builds
// the console into dist/console unless the build is newer than every source it is made from. A production
// install (`--omit=dev`) has no Vite: it says so and leaves the build to `npm run build` where the dev
// dependencies are (infra/docker/api.Dockerfile builds it in a stage of its own).
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

async function main(): Promise<number> {
  let vite: typeof import('vite');
  try {
    vite = await import('vite');
  } catch {
    console.log(
      'kvrag: Vite is not installed (production install): the console is not built here; run `npm run build` where the dev dependencies are',
    );
    return 0;
  }
  if (consoleBuildIsCurrent()) {
    console.log('kvrag: the console build (dist/console) is current');
    return 0;
  }
  await vite.build({ configFile: join(ROOT, 'vite.config.ts'), root: join(ROOT, 'src/console') });
  return 0;
}

if (import.meta.main) process.exitCode = await main();
