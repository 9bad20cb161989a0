// Failed-authentication counters on Redis (Node only), shared by every API process of a deployment:
//   kvrag:authfail:<subject> → failures in the window (a counter whose PX TTL is the window)
// Commands do not queue while Redis is away (the guard then lets requests through unlimited).
import { Redis } from 'ioredis';
import type { AuthFailureStore, FailureWindow } from './auth-failure-store.ts';

const key = (subject: string) => `kvrag:authfail:${subject}`;

// INCR, and open the window on the first failure; returns {count, pttl}
const ADD = `local n = redis.call('INCR', KEYS[1])
if n == 1 or redis.call('PTTL', KEYS[1]) < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return {n, redis.call('PTTL', KEYS[1])}`;

export class RedisAuthFailures implements AuthFailureStore {
  private readonly redis: Redis;

  constructor(url: string) {
    this.redis = new Redis(url, {
      lazyConnect: false,
      maxRetriesPerRequest: 1,
      enableOfflineQueue: false,
      commandTimeout: 500,
    });
    // connection errors surface per command (the guard logs them); keep ioredis from printing each retry
    this.redis.on('error', () => {});
  }

  /**
   * Resolves once the connection is up (true), or false after `timeoutMs`. Commands issued before that
   * fail fast (no offline queue), so a failure counted while connecting is not counted at all.
   */
  async ready(timeoutMs = 5000): Promise<boolean> {
    if (this.redis.status === 'ready') return true;
    return new Promise((resolve) => {
      const done = (ok: boolean) => {
        clearTimeout(timer);
        this.redis.off('ready', onReady);
        resolve(ok);
      };
      const onReady = () => done(true);
      const timer = setTimeout(() => done(false), timeoutMs);
      this.redis.on('ready', onReady);
    });
  }

  async get(subject: string): Promise<FailureWindow> {
    const res = await this.redis.multi().get(key(subject)).pttl(key(subject)).exec();
    const count = Number(res?.[0]?.[1] ?? 0);
    const pttl = Number(res?.[1]?.[1] ?? -2);
    return pttl > 0 ? { count, resetMs: pttl } : { count: 0, resetMs: 0 };
  }

  async add(subject: string, windowMs: number): Promise<FailureWindow> {
    const [count, pttl] = (await this.redis.eval(ADD, 1, key(subject), String(windowMs))) as [number, number];
    return { count, resetMs: Math.max(0, pttl) };
  }

  async close(): Promise<void> {
    this.redis.disconnect();
  }
}
