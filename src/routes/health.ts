// GET /healthz (the process is up) and GET /readyz (every dependency answers).
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
          results[name] = `error: ${(err as Error).message}`;
        }
      }),
    );
    return c.json({ status: ready ? 'ready' : 'not_ready', checks: results }, ready ? 200 : 503);
  });
  return r;
}
