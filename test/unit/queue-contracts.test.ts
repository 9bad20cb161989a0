// The versioned job contracts: valid payloads pass (normalised), bad ones and unknown versions throw
// UnrecoverableJobError naming the problem, and enqueueJob refuses to queue a bad payload.
import { describe, expect, it } from 'vitest';
import { checkJob, enqueueJob, JOB_NAMES, parseJob } from '../../contracts/jobs.ts';
import { MemoryJobQueue } from '../../src/queue/memory.ts';
import { UnrecoverableJobError } from '../../contracts/queue.ts';

const hash = 'a'.repeat(64);
const fp = 'fp-0123456789abcdef';

describe('job contracts', () => {
  it('covers the four queues', () => {
    expect(JOB_NAMES.sort()).toEqual(['gc', 'ingest', 'precompute', 'precompute-done']);
  });

  it('accepts valid v1 payloads and fills defaults', () => {
    const ingest = {
      v: 1,
      tenantId: 't1',
      collectionId: 'c1',
      documentId: 'd1',
      objectKey: 'uploads/t1/d1',
      contentType: 'text/plain',
      filename: 'a.txt',
    };
    expect(parseJob('ingest', ingest)).toEqual(ingest);
    expect(
      parseJob('precompute', { v: 1, modelFingerprint: fp, chunks: [{ chunkHash: hash, tokenIds: [1, 2] }] })
        .chunks,
    ).toHaveLength(1);
    expect(
      parseJob('precompute', { v: 1, modelFingerprint: fp, chunks: [{ chunkHash: hash, text: 'hi' }] })
        .chunks[0].text,
    ).toBe('hi');
    const done = parseJob('precompute-done', {
      v: 1,
      modelFingerprint: fp,
      artifacts: [{ chunkHash: hash, objectKey: `kv/${fp}/aa/${hash}.kv`, bytes: 1024, formatVersion: 1 }],
    });
    expect(done.failed).toEqual([]);
    expect(parseJob('gc', { v: 1, tenantId: 't', collectionId: 'c' })).toEqual({
      v: 1,
      tenantId: 't',
      collectionId: 'c',
      blobKeys: [],
      chunkHashes: [],
    });
  });

  it('throws UnrecoverableJobError for bad payloads and unknown versions', () => {
    const cases: [Parameters<typeof parseJob>[0], unknown, RegExp][] = [
      ['ingest', { v: 1, tenantId: 't' }, /collectionId/],
      ['ingest', { v: 2, tenantId: 't' }, /unsupported payload version 2/],
      ['ingest', null, /unsupported payload version/],
      [
        'precompute',
        { v: 1, modelFingerprint: fp, chunks: [{ chunkHash: hash }] },
        /exactly one of tokenIds and text/,
      ],
      [
        'precompute',
        { v: 1, modelFingerprint: fp, chunks: [{ chunkHash: hash, text: 'x', tokenIds: [1] }] },
        /exactly one/,
      ],
      [
        'precompute',
        { v: 1, modelFingerprint: fp, chunks: [{ chunkHash: 'XYZ', text: 'x' }] },
        /chunks\.0\.chunkHash/,
      ],
      [
        'precompute',
        { v: 1, modelFingerprint: '../../etc', chunks: [{ chunkHash: hash, text: 'x' }] },
        /modelFingerprint/,
      ],
      ['precompute', { v: 1, modelFingerprint: fp, chunks: [] }, /chunks/],
      [
        'precompute-done',
        {
          v: 1,
          modelFingerprint: fp,
          artifacts: [{ chunkHash: hash, objectKey: 'k', bytes: -1, formatVersion: 1 }],
        },
        /bytes/,
      ],
      ['gc', { v: '1', tenantId: 't', collectionId: 'c' }, /unsupported payload version "1"/],
    ];
    for (const [name, data, message] of cases) {
      let thrown: unknown;
      try {
        parseJob(name, data);
      } catch (err) {
        thrown = err;
      }
      expect(thrown, JSON.stringify(data)).toBeInstanceOf(UnrecoverableJobError);
      expect((thrown as Error).message).toMatch(message);
    }
  });

  it('checks payloads on the producer side before they are queued', async () => {
    const q = new MemoryJobQueue();
    // a gc job without anything to collect
    expect(() => checkJob('gc', { v: 1, tenantId: 't' })).toThrow(/collectionId/);
    // @ts-expect-error
    await expect(async () => enqueueJob(q, 'gc', { v: 1 }, { jobId: 'gc-x' })).rejects.toThrow();
    expect(await q.getJob('gc', 'gc-x')).toBeNull();
    const id = await enqueueJob(q, 'gc', { v: 1, tenantId: 't', collectionId: 'c' }, { jobId: 'gc-ok' });
    expect((await q.getJob('gc', id))?.data).toMatchObject({ blobKeys: [], chunkHashes: [] });
    await q.close();
  });
});
