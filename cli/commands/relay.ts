// `kvrag relay`: the outbox relay as its own process (distributed mode): moves committed outbox rows to
// BullMQ until SIGTERM/SIGINT, then finishes the pass in progress and exits. Embedded mode has no use
// for it: its queue lives inside `kvrag serve`, which must relay in-process.
import { loadConfig } from '../../src/config.ts';
import { openDatabase } from '../../src/db/client.ts';
import { jsonLogger } from '../../src/log.ts';
import { BullMqJobQueue } from '../../src/queue/bullmq.ts';
import { startOutboxRelay } from '../../workers/outbox-relay.ts';
import { numberOption, parseOptions, UsageError } from '../args.ts';
import type { Command } from '../command.ts';

export const command: Command = {
  summary: 'Relay the transactional outbox to BullMQ (distributed mode; runs until SIGTERM).',
  usage: 'kvrag relay [--batch-size N] [--idle-ms MS]',
  async run(args) {
    const { values } = parseOptions(args, {
      'batch-size': { type: 'string' },
      'idle-ms': { type: 'string' },
    });
    const config = loadConfig(process.env);
    if (!config.redisUrl || !config.databaseUrl) {
      throw new UsageError(
        'needs KVRAG_DATABASE_URL and KVRAG_REDIS_URL (embedded mode relays inside `kvrag serve`)',
      );
    }
    const batchSize = numberOption('batch-size', values['batch-size'], 100);
    const idleMs = numberOption('idle-ms', values['idle-ms'], 500);
    const log = jsonLogger(config.logLevel, { service: 'kvrag-relay' });
    const db = await openDatabase(config);
    const queue = new BullMqJobQueue({ url: config.redisUrl, log });
    const loop = startOutboxRelay(db.db, queue, {
      batchSize,
      idleMs,
      log,
      retentionMs: config.outboxRetentionS * 1000,
    });
    log('info', 'outbox relay started', { batchSize, idleMs });
    await new Promise<void>((resolve) => {
      process.once('SIGTERM', () => resolve());
      process.once('SIGINT', () => resolve());
    });
    log('info', 'outbox relay stopping');
    await loop.stop();
    await queue.close();
    await db.close();
    return 0;
  },
};
