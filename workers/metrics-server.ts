// The small HTTP listener of `kvrag workers` (KVRAG_METRICS_PORT): GET /metrics (Prometheus text) and
// GET /healthz, for scrapers and liveness probes; everything else is a 404 envelope.
import { type ServerType, serve } from '@hono/node-server';
import { Hono } from 'hono';
import { AppError, toEnvelope } from '../contracts/errors.ts';
import { type MetricsRegistry, PROMETHEUS_CONTENT_TYPE } from '../src/metrics.ts';

export interface MetricsServer {
  port: number;
  close(): Promise<void>;
}

export function metricsApp(registry: MetricsRegistry): Hono {
  const app = new Hono();
  app.get('/healthz', (c) => c.json({ status: 'ok' }));
  app.get('/metrics', async (c) =>
    c.body(await registry.render(), 200, { 'content-type': PROMETHEUS_CONTENT_TYPE }),
  );
  app.notFound((c) => c.json(toEnvelope(new AppError('not_found', 'no such route'), ''), 404));
  return app;
}

export async function startMetricsServer(
  registry: MetricsRegistry,
  port: number,
  hostname: string,
): Promise<MetricsServer> {
  const server: ServerType = serve({ fetch: metricsApp(registry).fetch, port, hostname });
  await new Promise<void>((resolve, reject) => {
    server.once('listening', resolve);
    server.once('error', reject);
  });
  const addr = server.address();
  return {
    port: typeof addr === 'object' && addr ? addr.port : port,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}
