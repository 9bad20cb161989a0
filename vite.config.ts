// The web console's build (src/console → dist/console): Vite with Preact's automatic JSX runtime, no
// other runtime dependency. Run through src/console/build.ts (`npm run build`, and `npm install`/`npm ci`
// through `prepare`), which makes it a production build whatever NODE_ENV says.
// Besides Vite's own per-file report it prints the bundle's total size, fails past BUDGET_GZIP_BYTES, and
// writes the security headers into `_headers` for Workers static assets (wrangler.toml [assets]).
// `npm run console:dev` serves the sources with the API of a running `npm start` behind /v1.
import { gzipSync } from 'node:zlib';
import { defineConfig, type Plugin } from 'vite';
import { CONSOLE_CACHE, CONSOLE_HEADERS } from './src/routes/console-headers.ts';

/**
 * The most the console's JS + CSS may weigh gzipped (it loads before anything shows): 20.4 KiB when this
 * was set, so room for the console to grow by half again before anyone has to look at what it pulls in.
 */
export const BUDGET_GZIP_BYTES = 32 * 1024;

function consoleBuildReport(): Plugin {
  return {
    name: 'kvrag-console-report',
    apply: 'build',
    generateBundle(_options, bundle) {
      let raw = 0;
      let gz = 0;
      for (const file of Object.values(bundle)) {
        if (!/\.(js|css)$/.test(file.fileName)) continue;
        const bytes = Buffer.from(file.type === 'chunk' ? file.code : file.source);
        raw += bytes.length;
        gz += gzipSync(bytes, { level: 9 }).length;
      }
      const kb = (n: number) => `${(n / 1024).toFixed(1)} KiB`;
      this.info(`console bundle: ${kb(raw)} JS+CSS, ${kb(gz)} gzipped (budget ${kb(BUDGET_GZIP_BYTES)})`);
      if (gz > BUDGET_GZIP_BYTES) this.error(`console bundle ${kb(gz)} gzipped is over its budget`);
      const headers = Object.entries(CONSOLE_HEADERS).map(([k, v]) => `  ${k}: ${v}`);
      this.emitFile({
        type: 'asset',
        fileName: '_headers',
        source: [
          '/*',
          ...headers,
          '/',
          `  cache-control: ${CONSOLE_CACHE.page}`,
          '/assets/*',
          `  cache-control: ${CONSOLE_CACHE.hashed}`,
          '',
        ].join('\n'),
      });
    },
  };
}

export default defineConfig({
  root: 'src/console',
  base: '/',
  publicDir: false,
  logLevel: 'info',
  oxc: { jsx: { runtime: 'automatic', importSource: 'preact' } },
  build: {
    outDir: '../../dist/console',
    emptyOutDir: true,
    target: 'es2022',
    assetsInlineLimit: 0,
    modulePreload: { polyfill: false },
    reportCompressedSize: true,
  },
  plugins: [consoleBuildReport()],
  server: {
    host: '127.0.0.1',
    proxy: { '/v1': 'http://127.0.0.1:8080', '/openapi.json': 'http://127.0.0.1:8080' },
  },
});
