// The Cloudflare Workers entry (wrangler.toml `main`): the same Hono app as `kvrag serve`, with services
// built from the Worker's bindings per request (src/worker-services.ts). No Node-only module may be
// reachable from here; test/unit/worker-bundle.test.ts bundles this file for workerd and checks.
import type { ExecutionContext } from 'hono';
import { createApp } from './app.ts';
import { ConfigError } from './config.ts';
import { AppError, toEnvelope } from './errors.ts';
import { consoleLogger, openWorkerServices, type WorkerEnv, workerConfig } from './worker-services.ts';

export type { WorkerEnv } from './worker-services.ts';

/** A request id for answers given before the app runs (the app sets its own otherwise). */
function requestIdOf(req: Request): string {
  const incoming = req.headers.get('x-request-id');
  return incoming && /^[\w.-]{1,128}$/.test(incoming) ? incoming : crypto.randomUUID();
}

/** Bad vars or secrets: every request answers 503 naming the settings (never their values). */
function misconfigured(req: Request, err: ConfigError): Response {
  consoleLogger('error')('error', 'invalid configuration', { issues: err.issues });
  const id = requestIdOf(req);
  const body = toEnvelope(new AppError('unavailable', err.message, { issues: err.issues }), id);
  return Response.json(body, { status: 503, headers: { 'x-request-id': id } });
}

export default {
  async fetch(req: Request, env: WorkerEnv, ctx: ExecutionContext): Promise<Response> {
    let config: ReturnType<typeof workerConfig>;
    try {
      config = workerConfig(env);
    } catch (err) {
      if (err instanceof ConfigError) return misconfigured(req, err);
      throw err;
    }
    const { services, close } = await openWorkerServices(env, config);
    try {
      return await createApp(services).fetch(req, env, ctx);
    } finally {
      // After the response is produced: the client ends once its queries are done (postgres.js end()).
      ctx.waitUntil(close());
    }
  },
};
