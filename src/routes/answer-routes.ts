// The answer routes under /v1 — query, chat completions, models — with their own authentication and body
// limit (they are not under the resource prefixes app.ts guards). Mount with app.route('/v1', answerRoutes(config.maxBodyBytes)).
import { Hono } from 'hono';
import type { AppEnv } from '../services.ts';
import { authenticate } from './auth.ts';
import { limitBody } from './body-limit.ts';
import { chatRoutes } from './chat.ts';
import { queryRoutes } from './query.ts';

export function answerRoutes(maxBodyBytes: number): Hono<AppEnv> {
  const r = new Hono<AppEnv>();
  const auth = authenticate();
  const limit = limitBody(() => maxBodyBytes);
  for (const path of ['/query', '/chat/*', '/models']) r.use(path, auth, limit);
  r.route('/', queryRoutes());
  r.route('/', chatRoutes());
  return r;
}
