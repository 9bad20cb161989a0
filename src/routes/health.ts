// GET /healthz (the process is up) and GET /readyz (every dependency answers). Both answer anyone, so
// /readyz says only which check failed; why (host names, addresses, driver errors) goes to the log.
import { Hono } from 'hono';
import type { AppEnv } from '../services.ts';

export function healthRoutes(): Hono<AppEnv> {
  const r = new Hono<AppEnv>();
  r.get('/healthz', (c) => c.json({ status: 'ok' }));
  r.get('/readyz', async (c) => {
    const checks = c.get('services').readiness;
    const results: Record<string, string> = {};
    let ready = true;
    await Promise.all(
      Object.entries(checks).map(async ([name, check]) => {
        try {
          await check();
          results[name] = 'ok';
        } catch (err) {
          ready = false;
          results[name] = 'error';
          c.get('services').log?.('warn', 'readiness check failed', {
            check: name,
            err: (err as Error).message,
            request_id: c.get('requestId'),
          });
        }
      }),
    );
    return c.json({ status: ready ? 'ready' : 'not_ready', checks: results }, ready ? 200 : 503);
  });
  return r;
}
