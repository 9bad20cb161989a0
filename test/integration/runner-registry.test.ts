// The runner registry on real Redis and in memory: live runners are listed, a runner that stops
// heartbeating disappears when its TTL runs out, malformed entries are ignored.
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BloomFilter } from '../../contracts/bloom.ts';
import type { RunnerHeartbeat, RunnerRegistry } from '../../contracts/heartbeat.ts';
import { MemoryRegistry } from '../../src/routing/registry.ts';
import { RedisRegistry } from '../../src/routing/registry-redis.ts';
import { startRedis } from '../helpers/redis-server.ts';

const hb = (id: string): RunnerHeartbeat => ({
  v: 1,
  id,
  url: `http://127.0.0.1:${9000 + Number(id.slice(-1))}`,
  models: ['a'.repeat(64)],
  load: { running: 0, waiting: 0, maxRunning: 8 },
  kvFreeBytes: 1 << 30,
  artifacts: BloomFilter.forCapacity(16).toJSON(),
  sentAt: Date.now(),
});
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

let redis: Awaited<ReturnType<typeof startRedis>>;
beforeAll(async () => {
  redis = await startRedis();
});
afterAll(async () => {
  await redis?.stop();
});

async function expiryBehaviour(reg: RunnerRegistry, wait: (ms: number) => Promise<void>) {
  await reg.publish(hb('runner-1'), 60_000);
  await reg.publish(hb('runner-2'), 300);
  expect((await reg.list()).map((h) => h.id)).toEqual(['runner-1', 'runner-2']);
  await wait(450); // runner-2 stopped heartbeating
  expect((await reg.list()).map((h) => h.id)).toEqual(['runner-1']);
  await reg.publish(hb('runner-2'), 60_000); // it comes back
  expect((await reg.list()).map((h) => h.id)).toEqual(['runner-1', 'runner-2']);
  await reg.remove('runner-1');
  expect((await reg.list()).map((h) => h.id)).toEqual(['runner-2']);
}

describe('runner registry', () => {
  it('expires runners that stop heartbeating (in memory)', async () => {
    let now = 1_000_000;
    const reg = new MemoryRegistry(() => now);
    await expiryBehaviour(reg, async (ms) => {
      now += ms;
    });
  });

  it('expires runners that stop heartbeating (Redis)', async () => {
    const reg = new RedisRegistry(redis.url);
    try {
      await expiryBehaviour(reg, sleep);
    } finally {
      await reg.close();
    }
  });

  it('ignores malformed entries and refuses to publish malformed heartbeats (Redis)', async () => {
    const reg = new RedisRegistry(redis.url);
    const raw = new Redis(redis.url);
    try {
      await reg.publish(hb('runner-3'), 60_000);
      await raw.set('kvrag:runner:evil', '{"v":1,"id":"evil","url":"javascript:alert(1)"}', 'PX', 60_000);
      await raw.zadd('kvrag:runners', Date.now() + 60_000, 'evil');
      const ids = (await reg.list()).map((h) => h.id);
      expect(ids).toContain('runner-3');
      expect(ids).not.toContain('evil');
      await expect(reg.publish({ ...hb('runner-4'), url: 'ftp://x' }, 1000)).rejects.toThrow();
    } finally {
      await raw.quit();
      await reg.close();
    }
  });
});
