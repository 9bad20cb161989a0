// Blob key, prefix and range rules shared by every store.
import { describe, expect, it } from 'vitest';
import { MAX_KEY_BYTES, resolveRange, validateKey, validatePrefix } from '../../src/storage/keys.ts';

describe('blob keys', () => {
  it('accepts ordinary, dotted and non-ASCII keys', () => {
    for (const k of [
      'a',
      'kv/fp/ab/abcd.kv',
      '.hidden',
      'a..b/c',
      'docs/ünïcødé name.pdf',
      'x'.repeat(MAX_KEY_BYTES),
    ]) {
      expect(validateKey(k)).toBe(k);
    }
  });

  it('rejects traversal, absolute paths, backslashes, control characters, empty and reserved segments', () => {
    const bad = [
      '',
      '..',
      '../a',
      'a/..',
      'a/../b',
      '.',
      './a',
      '/a',
      'a/',
      'a//b',
      'a\\..\\b',
      'a\0',
      'a\nb',
      'a/.kvrag-tmp-1',
    ];
    for (const k of [...bad, 'é'.repeat(MAX_KEY_BYTES / 2 + 1)]) {
      expect(() => validateKey(k), JSON.stringify(k)).toThrow(
        expect.objectContaining({ code: 'bad_request' }),
      );
    }
  });

  it('accepts partial prefixes but not traversal ones', () => {
    for (const p of ['', 'kv', 'kv/', 'kv/ab', 'kv/ab/c']) expect(validatePrefix(p)).toBe(p);
    for (const p of ['/', '/kv', 'kv//', '../', 'kv/..', 'kv/../x', 'a\\', 'a\0']) {
      expect(() => validatePrefix(p), p).toThrow(expect.objectContaining({ code: 'bad_request' }));
    }
  });
});

describe('byte ranges', () => {
  it('resolves against the object size: closed, open-ended, clipped, past the end', () => {
    expect(resolveRange(undefined, 10)).toEqual({ start: 0, endExclusive: 10 });
    expect(resolveRange({ start: 2, end: 4 }, 10)).toEqual({ start: 2, endExclusive: 5 });
    expect(resolveRange({ start: 7 }, 10)).toEqual({ start: 7, endExclusive: 10 });
    expect(resolveRange({ start: 7, end: 100 }, 10)).toEqual({ start: 7, endExclusive: 10 });
    expect(resolveRange({ start: 10 }, 10)).toEqual({ start: 10, endExclusive: 10 });
    expect(resolveRange({ start: 50, end: 60 }, 10)).toEqual({ start: 10, endExclusive: 10 });
  });

  it('rejects negative, fractional and inverted ranges', () => {
    for (const r of [{ start: -1 }, { start: 1.5 }, { start: 5, end: 4 }, { start: 0, end: 2.5 }]) {
      expect(() => resolveRange(r, 10), JSON.stringify(r)).toThrow(
        expect.objectContaining({ code: 'bad_request' }),
      );
    }
  });
});
