// The Cloudflare Workers entry (wrangler.toml `main`): the same Hono app as `kvrag serve`, with services
// built from the Worker's bindings per request (src/worker-services.ts) — answers included, routed to the
// runners of KVRAG_RUNNER_URLS — and closed (artifact use written, database client ended) once the
// response body has been sent, since a streamed answer still writes after the handler returns. No
// Node-only module may be reachable from here; test/e2e/workers-edge.test.ts checks wrangler's bundle.
//
// The app is built once per isolate: Hono compiles its router on an app's first request (~2.5 ms of CPU
// here, against ~0.02 ms for a request on a warm app), which a per-request app would pay every time.
// Its Services reads through to the request's own services (fresh database client and all), found by
// AsyncLocalStorage, which workerd implements natively; concurrent requests never see each other's.
import { AsyncLocalStorage } from 'node:async_hooks';
import type { ExecutionContext, Hono } from 'hono';
import { createApp } from './app.ts';
import { type Config, ConfigError } from './config.ts';
import { AppError, toEnvelope } from '../contracts/errors.ts';
import type { AppEnv, Services } from './services.ts';
import { consoleLogger, openWorkerServices, type WorkerEnv, workerConfig } from './worker-services.ts';

export type { WorkerEnv } from './worker-services.ts';

const current = new AsyncLocalStorage<Services>();

function requestServices(): Services {
  const s = current.getStore();
  if (!s) throw new AppError('internal', 'services used outside a request');
  return s;
}

/** The app's Services for an isolate: configuration is the env's, the rest is the current request's. */
function isolateServices(config: Config): Services {
  return {
    config,
    get log() {
      return requestServices().log;
    },
    get readiness() {
      return requestServices().readiness;
    },
    get api() {
      return requestServices().api;
    },
  };
}

// Keyed like the configuration: by the env object, fixed for an isolate.
const apps = new WeakMap<object, Hono<AppEnv>>();

function appFor(env: WorkerEnv, config: Config): Hono<AppEnv> {
  let app = apps.get(env);
  if (!app) {
    app = createApp(isolateServices(config));
    apps.set(env, app);
  }
  return app;
}

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

/**
 * The response, with `close` run (through ctx.waitUntil) once its body has been sent or cancelled: a
 * streamed answer still writes after the handler returned (its query_log row, a stored response, the
 * artifacts it used), and postgres.js end() refuses queries issued after it.
 */
function afterBody(res: Response, ctx: ExecutionContext, close: () => Promise<void>): Response {
  if (!res.body) {
    ctx.waitUntil(close());
    return res;
  }
  const { readable, writable } = new TransformStream<Uint8Array, Uint8Array>();
  ctx.waitUntil(
    res.body
      .pipeTo(writable)
      .catch(() => {}) // the client went away: the handler's own signal handling applies
      .then(close),
  );
  return new Response(readable, res);
}

export default {
  async fetch(req: Request, env: WorkerEnv, ctx: ExecutionContext): Promise<Response> {
    let config: Config;
    try {
      config = workerConfig(env);
    } catch (err) {
      if (err instanceof ConfigError) return misconfigured(req, err);
      throw err;
    }
    const app = appFor(env, config);
    const { services, close } = await openWorkerServices(env, config);
    let res: Response;
    try {
      res = await current.run(services, () => app.fetch(req, env, ctx));
    } catch (err) {
      ctx.waitUntil(close());
      throw err;
    }
    return afterBody(res, ctx, close);
  },
};
