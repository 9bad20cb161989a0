// The web console at / (its built files, src/console → dist/console): index.html and the hashed files
// under /assets/. Served from Services.assets on Node; on Workers the platform serves the same build as
// static assets before the Worker runs (wrangler.toml [assets]), so these routes see only a missing build.
import { Hono } from 'hono';
import { AppError } from '../../contracts/errors.ts';
import type { AppEnv } from '../services.ts';
import { CONSOLE_CACHE, CONSOLE_HEADERS } from './console-headers.ts';

const TYPES: Record<string, string> = {
  html: 'text/html; charset=utf-8',
  js: 'text/javascript; charset=utf-8',
  css: 'text/css; charset=utf-8',
  svg: 'image/svg+xml',
  woff2: 'font/woff2',
  png: 'image/png',
  json: 'application/json',
};
/** A built file's name: no path separators, no leading dot. */
const FILE = /^[\w-][\w.-]*\.(\w+)$/;

const NOT_BUILT = `<!doctype html><html lang="en"><meta charset="utf-8"><title>kvrag</title>
<p>The kvrag console is not built in this installation. Run <code>npm run build</code> (or <code>npm install</code>,
which builds it) and restart. The API itself is up: <a href="/openapi.json">/openapi.json</a>.</p></html>`;

export function consoleRoutes(): Hono<AppEnv> {
  const r = new Hono<AppEnv>();
  r.get('/', async (c) => {
    const body = await c.get('services').assets?.get('index.html');
    const headers = { ...CONSOLE_HEADERS, 'cache-control': CONSOLE_CACHE.page };
    if (!body) return c.html(NOT_BUILT, 404, headers);
    return c.body(body as Uint8Array<ArrayBuffer>, 200, { ...headers, 'content-type': TYPES.html });
  });

  r.get('/assets/:file', async (c) => {
    const name = c.req.param('file');
    const m = FILE.exec(name);
    const type = m ? TYPES[m[1]] : undefined;
    const body = type ? await c.get('services').assets?.get(`assets/${name}`) : null;
    if (!type || !body) throw new AppError('not_found', `no console file ${name}`);
    return c.body(body as Uint8Array<ArrayBuffer>, 200, {
      ...CONSOLE_HEADERS,
      'content-type': type,
      'cache-control': CONSOLE_CACHE.hashed,
    });
  });
  return r;
}
