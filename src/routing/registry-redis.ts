// Runner registry on Redis (Node only). Each runner's heartbeat is a string key with a PX TTL, and a
// sorted set indexes runner ids by expiry so listing needs no SCAN:
//   kvrag:runner:<id>  → heartbeat JSON (expires with the TTL)
//   kvrag:runners      → zset id → expiry ms (stale members trimmed on publish and list)
import { Redis } from 'ioredis';
import {
  parseHeartbeat,
  type RunnerHeartbeat,
  type RunnerRegistry,
  runnerHeartbeatSchema,
} from '../../contracts/heartbeat.ts';

const INDEX = 'kvrag:runners';
const key = (id: string) => `kvrag:runner:${id}`;

export class RedisRegistry implements RunnerRegistry {
  private readonly redis: Redis;

  constructor(url: string) {
    this.redis = new Redis(url, { lazyConnect: false, maxRetriesPerRequest: 2, enableOfflineQueue: true });
  }

  async publish(hb: RunnerHeartbeat, ttlMs: number): Promise<void> {
    const json = JSON.stringify(runnerHeartbeatSchema.parse(hb));
    const now = Date.now();
    await this.redis
      .multi()
      .set(key(hb.id), json, 'PX', ttlMs)
      .zadd(INDEX, now + ttlMs, hb.id)
      .zremrangebyscore(INDEX, '-inf', now)
      .exec();
  }

  async remove(id: string): Promise<void> {
    await this.redis.multi().del(key(id)).zrem(INDEX, id).exec();
  }

  async list(): Promise<RunnerHeartbeat[]> {
    const now = Date.now();
    const ids = await this.redis.zrangebyscore(INDEX, now, '+inf');
    if (ids.length === 0) return [];
    const values = await this.redis.mget(ids.map(key));
    return values
      .map(parseHeartbeat)
      .filter((h): h is RunnerHeartbeat => h !== null)
      .sort((a, b) => a.id.localeCompare(b.id));
  }

  async close(): Promise<void> {
    await this.redis.quit().catch(() => this.redis.disconnect());
  }
}
