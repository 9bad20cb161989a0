// The web console's built files on Node: dist/console at the repository root (built by `npm run build`,
// which `npm install` runs through the `prepare` script). Read on each request — a rebuild shows at once,
// and the files are small. Node only; the Workers build gets the same files as static assets.
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import type { StaticAssets } from './services.ts';

export const CONSOLE_BUILD_DIR = fileURLToPath(new URL('../dist/console/', import.meta.url));

/** Built files under `dir`; only `index.html` and `assets/<name>` (no other path is ever read). */
export function consoleAssets(dir: string = CONSOLE_BUILD_DIR): StaticAssets {
  return {
    async get(path) {
      if (path !== 'index.html' && !/^assets\/[\w-][\w.-]*$/.test(path)) return null;
      try {
        return new Uint8Array(await readFile(`${dir}/${path}`));
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
        throw e;
      }
    },
  };
}
