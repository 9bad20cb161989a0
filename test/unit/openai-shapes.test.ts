// The pure parts of the OpenAI surface: citations from [n] markers, the document lifecycle in OpenAI's
// statuses and counts, batch status, and the error object the SDKs read.
import { describe, expect, it } from 'vitest';
import { AppError } from '../../contracts/errors.ts';
import { citationMarks, citedNumbers } from '../../src/answer/prompt.ts';
import { retriesExhausted } from '../../src/documents/failure.ts';
import { batchStatus } from '../../src/openai/file-batches.ts';
import { fileCitations } from '../../src/openai/responses/objects.ts';
import { fileCountsOf, fileStatusOf, lastErrorOf } from '../../src/openai/statuses.ts';
import type { FileBatch } from '../../src/db/schema.ts';
import type { HybridHit } from '../../src/retrieval/hybrid.ts';
import { isOpenAiPath, toOpenAiError } from '../../src/routes/openai/errors.ts';

const hit = (documentId: string, fileId: string | null, filename: string) =>
  ({ documentId, fileId, filename }) as HybridHit;

describe('file citations', () => {
  const sources = [hit('d1', 'f1', 'a.txt'), hit('d2', null, 'b.txt')];

  it('one per [n] marker naming a source, at the marker’s offset, repeats included', () => {
    const text = 'Dawn [1]. Noon [2], and again [1]; not [3] nor [0] nor [x].';
    expect(citationMarks(text, 2)).toEqual([
      { n: 1, index: 5 },
      { n: 2, index: 15 },
      { n: 1, index: 30 },
    ]);
    expect(citedNumbers(text, 2)).toEqual([1, 2]);
    expect(fileCitations(text, sources)).toEqual([
      { type: 'file_citation', file_id: 'f1', filename: 'a.txt', index: 5 },
      // an upload through /v1/collections is cited by its document id, its vector store file id
      { type: 'file_citation', file_id: 'd2', filename: 'b.txt', index: 15 },
      { type: 'file_citation', file_id: 'f1', filename: 'a.txt', index: 30 },
    ]);
  });

  it('offsets count UTF-16 code units, as JavaScript strings and OpenAI’s SDKs index text', () => {
    const text = 'Café 🚪 [2]';
    const [c] = fileCitations(text, sources);
    expect(c.index).toBe(text.indexOf('[2]'));
    expect(text.slice(c.index, c.index + 3)).toBe('[2]');
  });

  it('no markers, no sources: no citations', () => {
    expect(fileCitations('plain answer', sources)).toEqual([]);
    expect(fileCitations('see [1]', [])).toEqual([]);
  });
});

describe('statuses and counts', () => {
  it('maps the ingest lifecycle onto in_progress / completed / failed', () => {
    for (const s of ['queued', 'parsing', 'chunking', 'embedding', 'precomputing'] as const)
      expect(fileStatusOf(s)).toBe('in_progress');
    expect(fileStatusOf('ready')).toBe('completed');
    expect(fileStatusOf('failed')).toBe('failed');
  });

  it('last_error: server_error when ingestion gave up on retries, invalid_file otherwise', () => {
    expect(lastErrorOf('ready', null)).toBeNull();
    expect(lastErrorOf('failed', 'the document has no text to index')).toEqual({
      code: 'invalid_file',
      message: 'the document has no text to index',
    });
    const gaveUp = retriesExhausted(3, 'connection refused');
    expect(lastErrorOf('failed', gaveUp)).toEqual({ code: 'server_error', message: gaveUp });
  });

  it('file_counts fold the statuses and add the cancelled', () => {
    const c = {
      queued: 1,
      parsing: 0,
      chunking: 1,
      embedding: 0,
      precomputing: 2,
      ready: 3,
      failed: 1,
      total: 8,
    };
    expect(fileCountsOf(c, 2)).toEqual({ in_progress: 4, completed: 3, failed: 1, cancelled: 2, total: 10 });
  });

  it('a batch is in_progress while any file is, then cancelled, failed (all failed) or completed', () => {
    const b = { cancelledAt: null } as FileBatch;
    const counts = (in_progress: number, completed: number, failed: number, cancelled = 0) => ({
      in_progress,
      completed,
      failed,
      cancelled,
      total: in_progress + completed + failed + cancelled,
    });
    expect(batchStatus(b, counts(1, 1, 0))).toBe('in_progress');
    expect(batchStatus(b, counts(0, 1, 1))).toBe('completed');
    expect(batchStatus(b, counts(0, 0, 2))).toBe('failed');
    expect(batchStatus({ cancelledAt: new Date() } as FileBatch, counts(0, 1, 0, 1))).toBe('cancelled');
  });
});

describe('OpenAI error objects', () => {
  it('carry type, param (the first offending field), kvrag’s code and the request id', () => {
    const e = new AppError('bad_request', 'invalid request body: input: bad', {
      issues: [{ path: ['tools', 0, 'type'], message: 'bad' }],
    });
    expect(toOpenAiError(e, 'req-1')).toEqual({
      error: {
        message: 'invalid request body: input: bad',
        type: 'invalid_request_error',
        param: 'tools.0.type',
        code: 'bad_request',
        request_id: 'req-1',
      },
    });
    expect(toOpenAiError(new AppError('unauthorized', 'no'), 'r').error).toMatchObject({
      type: 'authentication_error',
      param: null,
    });
    expect(toOpenAiError(new AppError('unavailable', 'no'), 'r').error.type).toBe('server_error');
  });

  it('only the OpenAI platform prefixes take that shape', () => {
    expect(isOpenAiPath('/v1/files')).toBe(true);
    expect(isOpenAiPath('/v1/vector_stores/x/files')).toBe(true);
    expect(isOpenAiPath('/v1/filesystem')).toBe(false);
    expect(isOpenAiPath('/v1/collections')).toBe(false);
    expect(isOpenAiPath('/v1/chat/completions')).toBe(false);
  });
});
