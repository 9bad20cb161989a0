// API key brute force is rate limited: failed authentications are counted per client address and per key
// prefix; over the limit, 429 `rate_limited` with Retry-After in the error envelope, before any key lookup,
// for the rest of the window. In memory (embedded mode) and on a real redis-server shared by two API
// processes; a Redis outage does not take authentication down with it.
import type { Hono } from 'hono';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApp } from '../../src/app.ts';
import { RedisAuthFailures } from '../../src/auth-failures-redis.ts';
import { loadConfig } from '../../src/config.ts';
import { MemoryAuthFailures } from '../../src/auth-failure-store.ts';
import type { AppEnv } from '../../src/services.ts';
import { ADMIN_KEY, envelope, type Harness, startApiHarness } from '../helpers/api-harness.ts';
import { type RedisTestServer, startRedis } from '../helpers/redis-server.ts';

const LIMIT = 5;
const WINDOW_S = 30;
const env = { KVRAG_AUTH_FAILURE_LIMIT: String(LIMIT), KVRAG_AUTH_FAILURE_WINDOW_S: String(WINDOW_S) };
const from = (ip: string) => ({ 'cf-connecting-ip': ip });
const guess = (i: number) => `kvrag_${'x'.repeat(8)}${String(i).padStart(35, '0')}`;

async function expectLimited(res: Response) {
  expect(res.status).toBe(429);
  const retry = Number(res.headers.get('retry-after'));
  expect(retry).toBeGreaterThanOrEqual(1);
  expect(retry).toBeLessThanOrEqual(WINDOW_S);
  const e = await envelope(res);
  expect(e.code).toBe('rate_limited');
}

let h: Harness;
let tenant: { id: string; key: string };
// the in-memory counters' clock, moved forward by the test instead of waiting for a window to end
let skewMs = 0;
beforeAll(async () => {
  h = await startApiHarness({ env, authFailures: new MemoryAuthFailures(() => Date.now() + skewMs) });
  tenant = await h.tenant('victim');
});
afterAll(async () => {
  await h?.close();
});

describe('failed-auth rate limiting in memory', () => {
  it('an address that failed LIMIT times gets 429 with Retry-After, even with a valid key, until the window ends', async () => {
    for (let i = 0; i < LIMIT; i++) {
      const res = await h.call('GET', '/v1/collections', { key: guess(i), headers: from('10.0.0.1') });
      expect(res.status).toBe(401);
    }
    await expectLimited(
      await h.call('GET', '/v1/collections', { key: guess(99), headers: from('10.0.0.1') }),
    );
    await expectLimited(
      await h.call('GET', '/v1/collections', { key: tenant.key, headers: from('10.0.0.1') }),
    );
    // the answer routes share the counters
    await expectLimited(
      await h.call('POST', '/v1/query', { key: tenant.key, headers: from('10.0.0.1'), json: {} }),
    );
    // another address is not affected
    await h.expectJson(200, 'GET', '/v1/collections', { key: tenant.key, headers: from('10.0.0.2') });
    skewMs += WINDOW_S * 1000;
    await h.expectJson(200, 'GET', '/v1/collections', { key: tenant.key, headers: from('10.0.0.1') });
  });

  it('guesses at the admin key and at malformed tokens count too; a missing header does not', async () => {
    for (let i = 0; i < 10; i++) {
      expect((await h.call('GET', '/v1/collections', { key: null, headers: from('10.0.1.1') })).status).toBe(
        401,
      );
    }
    await h.expectJson(200, 'GET', '/v1/admin/tenants', { headers: from('10.0.1.1') });
    for (let i = 0; i < LIMIT; i++) {
      const res = await h.call('GET', '/v1/admin/tenants', {
        key: `${ADMIN_KEY}-${i}`,
        headers: from('10.0.1.1'),
      });
      expect(res.status).toBe(401);
    }
    await expectLimited(await h.call('GET', '/v1/admin/tenants', { headers: from('10.0.1.1') }));
  });

  it('guesses spread over many addresses against one key prefix lock that prefix', async () => {
    const other = await h.tenant('other');
    const prefix = tenant.key.slice(0, 14);
    for (let i = 0; i < LIMIT; i++) {
      const wrong = prefix + 'A'.repeat(34) + String(i % 10);
      const res = await h.call('GET', '/v1/collections', { key: wrong, headers: from(`10.1.0.${i}`) });
      expect(res.status).toBe(401);
    }
    await expectLimited(
      await h.call('GET', '/v1/collections', {
        key: `${prefix}${'B'.repeat(35)}`,
        headers: from('10.1.1.1'),
      }),
    );
    // other keys are unaffected
    await h.expectJson(200, 'GET', '/v1/collections', { key: other.key, headers: from('10.1.1.1') });
  });
});

describe('failed-auth rate limiting behind proxies (KVRAG_TRUST_PROXY = trusted hops)', () => {
  // two proxies in front: the client's address is the second X-Forwarded-For entry from the right, and
  // whatever the client wrote further left (a new fake first hop per guess) must not reset its count
  const app = () =>
    createApp({
      config: loadConfig({ KVRAG_ADMIN_KEY: ADMIN_KEY, KVRAG_TRUST_PROXY: '2', ...env }),
      readiness: {},
      api: h.api,
      authFailures: new MemoryAuthFailures(),
    });
  const via = (key: string, xff: string) => ({
    headers: { authorization: `Bearer ${key}`, 'x-forwarded-for': xff },
  });

  it('spoofed leftmost hops do not escape the limit; the address two hops from the right is counted', async () => {
    const a = app();
    for (let i = 0; i < LIMIT; i++) {
      const res = await a.request('/v1/collections', via(guess(i), `203.0.113.${i}, 198.51.100.7, 10.9.0.1`));
      expect(res.status).toBe(401);
    }
    await expectLimited(
      await a.request('/v1/collections', via(guess(50), '1.2.3.4, 198.51.100.7, 10.9.0.1')),
    );
    // another client behind the same proxies is not affected
    expect((await a.request('/v1/admin/tenants', via(ADMIN_KEY, '198.51.100.8, 10.9.0.1'))).status).toBe(200);
  });

  it('a chain shorter than the trusted hops counts its leftmost entry (a proxy wrote it)', async () => {
    const a = app();
    for (let i = 0; i < LIMIT; i++)
      expect((await a.request('/v1/collections', via(guess(i), '10.9.0.7'))).status).toBe(401);
    await expectLimited(await a.request('/v1/collections', via(guess(9), '10.9.0.7')));
  });
});

describe('failed-auth rate limiting on Redis', () => {
  let redis: RedisTestServer;
  let stores: RedisAuthFailures[];
  let apps: Hono<AppEnv>[];
  // two API processes over one database, their counters on one redis-server
  const call = (app: Hono<AppEnv>, path: string, key: string, ip: string) =>
    Promise.resolve(app.request(path, { headers: { authorization: `Bearer ${key}`, ...from(ip) } }));
  beforeAll(async () => {
    redis = await startRedis();
    stores = [new RedisAuthFailures(redis.url), new RedisAuthFailures(redis.url)];
    // a failure counted before a store has connected is dropped (no offline queue): wait for both
    expect(await Promise.all(stores.map((s) => s.ready()))).toEqual([true, true]);
    const config = loadConfig({ KVRAG_ADMIN_KEY: ADMIN_KEY, ...env });
    apps = stores.map((authFailures) => createApp({ config, readiness: {}, api: h.api, authFailures }));
  });
  afterAll(async () => {
    for (const s of stores ?? []) await s.close();
    await redis?.stop();
  });

  it('failures on one API process count on another', async () => {
    const [a, b] = apps;
    for (let i = 0; i < LIMIT; i++) {
      expect((await call(i % 2 ? a : b, '/v1/collections', guess(i), '10.2.0.1')).status).toBe(401);
    }
    await expectLimited(await call(a, '/v1/admin/tenants', ADMIN_KEY, '10.2.0.1'));
    await expectLimited(await call(b, '/v1/admin/tenants', ADMIN_KEY, '10.2.0.1'));
    expect((await call(a, '/v1/admin/tenants', ADMIN_KEY, '10.2.0.2')).status).toBe(200);
  });

  it('with Redis down, authentication still works (unlimited) and the limit returns with Redis', async () => {
    const [a] = apps;
    await redis.down();
    try {
      expect((await call(a, '/v1/admin/tenants', ADMIN_KEY, '10.2.1.1')).status).toBe(200);
      for (let i = 0; i < LIMIT + 2; i++) {
        expect((await call(a, '/v1/collections', guess(i), '10.2.1.1')).status).toBe(401);
      }
    } finally {
      await redis.up();
    }
    // ioredis reconnects by itself; once it has, failures count again
    const deadline = Date.now() + 10_000;
    let limited = false;
    while (!limited && Date.now() < deadline) {
      const res = await call(a, '/v1/collections', guess(1), '10.2.1.2');
      limited = res.status === 429;
      await res.body?.cancel();
      if (!limited) await new Promise((r) => setTimeout(r, 50));
    }
    expect(limited).toBe(true);
  });
});
