// The JobQueue contract against the in-process queue (embedded mode), plus what only it can show.
import { describe, expect, it } from 'vitest';
import { MemoryJobQueue } from '../../src/queue/memory.ts';
import { jobQueueSuite, waitFor } from '../helpers/job-queue-suite.ts';

jobQueueSuite('in-process', async () => {
  const queue = new MemoryJobQueue();
  return { queue, cleanup: () => queue.close() };
});

describe('MemoryJobQueue specifics', () => {
  it('forgets completed jobs past their retention, after which the id can run again', async () => {
    const q = new MemoryJobQueue({ keepCompletedMs: 50 });
    let runs = 0;
    q.consume('r', async () => {
      runs++;
    });
    await q.enqueue('r', {}, { jobId: 'x' });
    await waitFor(() => runs === 1, 'first run');
    await q.enqueue('r', {}, { jobId: 'x' });
    await new Promise((r) => setTimeout(r, 80));
    expect(runs).toBe(1);
    await q.enqueue('r', {}, { jobId: 'x' });
    await waitFor(() => runs === 2, 'second run after retention');
    await q.close();
  });

  it('gives handlers their own copy of the payload', async () => {
    const q = new MemoryJobQueue();
    const payload = { list: [1, 2] };
    const tries: number[][] = [];
    q.consume<{ list: number[] }>('m', async (data, ctx) => {
      tries.push([...data.list]);
      data.list.push(99);
      if (ctx.attempt === 1) throw new Error('again');
    });
    await q.enqueue('m', payload, { jobId: 'copy', backoffMs: 5 });
    payload.list.push(3);
    await waitFor(async () => (await q.getJob('m', 'copy'))?.state === 'completed', 'completion');
    expect(tries).toEqual([
      [1, 2],
      [1, 2],
    ]);
    await q.close();
  });

  it('refuses work after close', async () => {
    const q = new MemoryJobQueue();
    await q.close();
    await expect(q.enqueue('z', {})).rejects.toThrow(/closed/);
  });
});
