// AnswerCache: TTL, LRU bound, key normalisation and tenant separation.
import { describe, expect, it } from 'vitest';
import { AnswerCache } from '../../src/answer/cache.ts';

describe('AnswerCache', () => {
  it('expires entries after the TTL', () => {
    let t = 1000;
    const c = new AnswerCache<string>({ ttlMs: 100, now: () => t });
    c.set('a', 'x');
    t += 99;
    expect(c.get('a')).toBe('x');
    t += 1;
    expect(c.get('a')).toBeUndefined();
    expect(c.size).toBe(0);
    expect([c.hits, c.misses]).toEqual([1, 1]);
  });

  it('keeps at most maxEntries, evicting the least recently used', () => {
    const c = new AnswerCache<number>({ maxEntries: 2 });
    c.set('a', 1);
    c.set('b', 2);
    expect(c.get('a')).toBe(1); // a is now more recent than b
    c.set('c', 3);
    expect(c.get('b')).toBeUndefined();
    expect(c.get('a')).toBe(1);
    expect(c.get('c')).toBe(3);
  });

  it('keys normalise whitespace and key order, and separate tenants', () => {
    const k = AnswerCache.key('t1', { q: '  what  is\nit ', ids: ['x'], n: 1 });
    expect(AnswerCache.key('t1', { n: 1, ids: ['x'], q: 'what is it', s: undefined })).toBe(k);
    expect(AnswerCache.key('t2', { q: 'what is it', ids: ['x'], n: 1 })).not.toBe(k);
    expect(AnswerCache.key('t1', { q: 'what is it', ids: ['y'], n: 1 })).not.toBe(k);
  });

  it('a zero TTL caches nothing', () => {
    const c = new AnswerCache<number>({ ttlMs: 0 });
    c.set('a', 1);
    expect(c.get('a')).toBeUndefined();
  });
});
