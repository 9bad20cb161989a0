// Builds the configured job queue: BullMQ when a Redis URL is set (distributed mode), else the in-process
// queue (embedded mode). Imported lazily so embedded mode never loads BullMQ and ioredis.
import type { Config } from '../config.ts';
import type { Log } from '../../contracts/log.ts';
import type { JobQueue } from '../../contracts/queue.ts';

export async function openQueue(config: Config, log?: Log): Promise<JobQueue> {
  if (config.redisUrl) {
    const { BullMqJobQueue } = await import('./bullmq.ts');
    return new BullMqJobQueue({ url: config.redisUrl, log });
  }
  const { MemoryJobQueue } = await import('./memory.ts');
  return new MemoryJobQueue();
}
