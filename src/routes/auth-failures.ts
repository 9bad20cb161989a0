// Failed-authentication rate limiting: bad credentials are counted per client address and per API key
// prefix in fixed windows; once a subject has `limit` failures in its window, authentication from it is
// refused with 429 `rate_limited` (and Retry-After) before any key lookup, until the window ends. Counters
// live in Redis when the deployment has one (src/auth-failures-redis.ts, shared by every API process) and
// in process memory otherwise (embedded mode, Workers isolates). A missing Authorization header is not a
// guess and is not counted. Web-standard code only (runs on Workers).
import type { Context } from 'hono';
import { AppError } from '../../contracts/errors.ts';
import { type AuthFailureStore, type FailureWindow, MemoryAuthFailures } from '../auth-failure-store.ts';
import type { AppEnv, Services } from '../services.ts';

/** One in-memory store per Services object, shared by every authenticate() of that app. */
const memoryStores = new WeakMap<Services, MemoryAuthFailures>();

function storeOf(services: Services): AuthFailureStore {
  if (services.authFailures) return services.authFailures;
  let s = memoryStores.get(services);
  if (!s) memoryStores.set(services, (s = new MemoryAuthFailures()));
  return s;
}

/**
 * The caller's address. Behind `trustedHops` proxies (KVRAG_TRUST_PROXY) that each append the address
 * they saw to X-Forwarded-For, it is the entry `trustedHops` from the right: what the outermost trusted
 * proxy saw. Entries further left were written by the client and prove nothing (a client can send any
 * X-Forwarded-For it likes, so its first hop is never used). Otherwise the socket's peer on Node, else
 * Cloudflare's CF-Connecting-IP on Workers.
 */
export function clientAddress(c: Context<AppEnv>, trustedHops: number): string {
  if (trustedHops > 0) {
    const hops = (c.req.header('x-forwarded-for') ?? '')
      .split(',')
      .map((h) => h.trim())
      .filter((h) => h !== '');
    // a shorter chain did not pass every trusted proxy: its leftmost entry is still a proxy's
    if (hops.length > 0) return hops[Math.max(0, hops.length - trustedHops)];
  }
  const peer = (c.env as { incoming?: { socket?: { remoteAddress?: string } } } | undefined)?.incoming?.socket
    ?.remoteAddress;
  return peer ?? c.req.header('cf-connecting-ip') ?? 'unknown';
}

export interface AuthGuard {
  /** Throws 429 when any subject is over the limit. */
  check(): Promise<void>;
  /** Records a failed attempt against every subject. */
  fail(): Promise<void>;
}

/**
 * The failure guard of one request: subjects are the client address and, when the token has the shape of
 * an API key, its visible prefix. A counter store that is down does not take authentication with it:
 * errors are logged and the request goes on unlimited.
 */
export function authGuard(c: Context<AppEnv>, keyPrefix: string | null): AuthGuard {
  const services = c.get('services');
  const { authFailureLimit: limit, authFailureWindowS, trustProxy } = services.config;
  const store = storeOf(services);
  const subjects = [`ip:${clientAddress(c, trustProxy)}`, ...(keyPrefix ? [`key:${keyPrefix}`] : [])];
  const degraded = (err: unknown) =>
    services.log?.('warn', 'auth failure counter unavailable', { err: String(err) });
  return {
    async check() {
      if (limit === 0) return;
      let windows: FailureWindow[];
      try {
        windows = await Promise.all(subjects.map((s) => store.get(s)));
      } catch (err) {
        return degraded(err);
      }
      const over = windows.filter((w) => w.count >= limit);
      if (over.length === 0) return;
      const retryAfter = Math.max(1, Math.ceil(Math.max(...over.map((w) => w.resetMs)) / 1000));
      c.header('retry-after', String(retryAfter));
      throw new AppError('rate_limited', 'too many failed authentication attempts; try again later', {
        retry_after_s: retryAfter,
      });
    },
    async fail() {
      if (limit === 0) return;
      try {
        await Promise.all(subjects.map((s) => store.add(s, authFailureWindowS * 1000)));
      } catch (err) {
        degraded(err);
      }
    },
  };
}
