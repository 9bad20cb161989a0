// Child process for the stalled-job test: consumes one queue, prints `started <jobId>` when a handler
// begins, and never finishes it, so the parent can SIGKILL this process mid-job.
// usage: node bullmq-hung-consumer.ts <redisUrl> <prefix> <queue> <lockDurationMs>
import { BullMqJobQueue } from '../../src/queue/bullmq.ts';

const [url, prefix, queue, lockMs] = process.argv.slice(2);
const q = new BullMqJobQueue({
  url,
  prefix,
  lockDurationMs: Number(lockMs),
  stalledIntervalMs: Number(lockMs),
});
q.consume(queue, async (_data, ctx) => {
  process.stdout.write(`started ${ctx.id}\n`);
  await new Promise(() => {}); // hangs until killed
});
process.stdout.write('ready\n');
