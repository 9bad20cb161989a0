// One behavioural suite for every BlobStore implementation (fs, S3 on s3rver, memory): round trips, ranges,
// streaming, a 50 MB object, ordered listing and key validation.
import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BlobStore } from '../../contracts/blob-store.ts';

export interface BlobStoreFixture {
  store: BlobStore;
  cleanup(): Promise<void>;
}

export interface SuiteOptions {
  /** Size of the large-object test (default 50 MB). */
  largeBytes?: number;
  /**
   * Whether readers racing a put are checked (default true). On S3 the service provides atomic puts;
   * s3rver writes objects in place, so against it the check would test s3rver, not our client.
   */
  checkAtomicReads?: boolean;
}

const enc = new TextEncoder();
const dec = new TextDecoder();

/** Deterministic pseudo-random bytes (xorshift32), fast enough for tens of megabytes. */
export function patternBytes(n: number, seed = 0x9e3779b9): Uint8Array {
  const words = new Uint32Array(Math.ceil(n / 4));
  let x = seed >>> 0 || 1;
  for (let i = 0; i < words.length; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    words[i] = x;
  }
  return new Uint8Array(words.buffer, 0, n);
}

/** A web stream that hands out `bytes` in chunks of varying, odd sizes. */
export function chunkedStream(bytes: Uint8Array, maxChunk = 64 * 1024): ReadableStream<Uint8Array> {
  let off = 0;
  let i = 0;
  return new ReadableStream<Uint8Array>({
    pull(c) {
      if (off >= bytes.byteLength) return c.close();
      const size = Math.max(1, (maxChunk - ((i++ * 7919) % maxChunk)) | 1);
      c.enqueue(bytes.slice(off, off + size));
      off += size;
    },
  });
}

async function streamDigest(stream: ReadableStream<Uint8Array>): Promise<{ sha: string; size: number }> {
  const h = createHash('sha256');
  let size = 0;
  const reader = stream.getReader();
  for (let r = await reader.read(); !r.done; r = await reader.read()) {
    h.update(r.value);
    size += r.value.byteLength;
  }
  return { sha: h.digest('hex'), size };
}

const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

async function keysOf(store: BlobStore, prefix: string): Promise<string[]> {
  const out: string[] = [];
  for await (const info of store.list(prefix)) out.push(info.key);
  return out;
}

export const BAD_KEYS = [
  '',
  '../x',
  'a/../../x',
  '..',
  '.',
  'a/./b',
  '/abs',
  'a//b',
  'a/',
  'a\\b',
  'a\0b',
  'x/..',
];

export function blobStoreSuite(
  name: string,
  open: () => Promise<BlobStoreFixture>,
  opts: SuiteOptions = {},
): void {
  describe(`BlobStore contract: ${name}`, () => {
    let fx: BlobStoreFixture;
    let store: BlobStore;
    beforeAll(async () => {
      fx = await open();
      store = fx.store;
    });
    afterAll(async () => {
      await fx?.cleanup();
    });

    it('puts, gets, heads, overwrites and deletes an object', async () => {
      const info = await store.put('docs/one.txt', enc.encode('hello blob'), { contentType: 'text/plain' });
      expect(info).toMatchObject({ key: 'docs/one.txt', size: 10 });
      expect(dec.decode((await store.get('docs/one.txt'))!)).toBe('hello blob');
      expect(await store.head('docs/one.txt')).toMatchObject({ key: 'docs/one.txt', size: 10 });

      await store.put('docs/one.txt', enc.encode('replaced'));
      expect(dec.decode((await store.get('docs/one.txt'))!)).toBe('replaced');

      await store.delete('docs/one.txt');
      expect(await store.get('docs/one.txt')).toBeNull();
      expect(await store.getStream('docs/one.txt')).toBeNull();
      expect(await store.head('docs/one.txt')).toBeNull();
      await store.delete('docs/one.txt'); // absent: not an error
    });

    it('stores an empty object', async () => {
      await store.put('empty/zero', new Uint8Array(0));
      expect((await store.head('empty/zero'))?.size).toBe(0);
      expect((await store.get('empty/zero'))?.byteLength).toBe(0);
      expect((await store.get('empty/zero', { start: 0 }))?.byteLength).toBe(0);
      await store.delete('empty/zero');
    });

    it('reads byte ranges: closed, open-ended, clipped, past the end', async () => {
      const bytes = patternBytes(1000, 7);
      await store.put('ranges/obj', bytes);
      expect(await store.get('ranges/obj', { start: 10, end: 19 })).toEqual(bytes.slice(10, 20));
      expect(await store.get('ranges/obj', { start: 0, end: 0 })).toEqual(bytes.slice(0, 1));
      expect(await store.get('ranges/obj', { start: 990 })).toEqual(bytes.slice(990));
      expect(await store.get('ranges/obj', { start: 995, end: 5000 })).toEqual(bytes.slice(995));
      expect((await store.get('ranges/obj', { start: 1000 }))?.byteLength).toBe(0);
      expect(await store.get('ranges/absent', { start: 1 })).toBeNull();
      const s = await store.getStream('ranges/obj', { start: 500, end: 599 });
      expect(await streamDigest(s!)).toEqual({ sha: sha(bytes.slice(500, 600)), size: 100 });
      const open = await store.getStream('ranges/obj', { start: 900 });
      expect(await streamDigest(open!)).toEqual({ sha: sha(bytes.slice(900)), size: 100 });
      await expect(store.get('ranges/obj', { start: -1 })).rejects.toMatchObject({ code: 'bad_request' });
      await expect(store.get('ranges/obj', { start: 5, end: 4 })).rejects.toMatchObject({
        code: 'bad_request',
      });
    });

    it('puts from a stream and streams the object back', async () => {
      const bytes = patternBytes(3 * 1024 * 1024 + 17, 11);
      const info = await store.put('streams/s1', chunkedStream(bytes));
      expect(info.size).toBe(bytes.byteLength);
      const back = await store.getStream('streams/s1');
      expect(await streamDigest(back!)).toEqual({ sha: sha(bytes), size: bytes.byteLength });
    });

    it(`round-trips a ${Math.round((opts.largeBytes ?? 50e6) / 1e6)} MB streamed object with ranged reads`, async () => {
      const n = opts.largeBytes ?? 50 * 1000 * 1000;
      const bytes = patternBytes(n, 23);
      const info = await store.put('large/object.bin', chunkedStream(bytes, 1024 * 1024));
      expect(info.size).toBe(n);
      expect((await store.head('large/object.bin'))?.size).toBe(n);
      const back = await store.getStream('large/object.bin');
      expect(await streamDigest(back!)).toEqual({ sha: sha(bytes), size: n });
      // A range straddling the 8 MiB multipart boundary and one at the tail.
      const mid = 8 * 1024 * 1024 - 100;
      expect(await store.get('large/object.bin', { start: mid, end: mid + 199 })).toEqual(
        bytes.slice(mid, mid + 200),
      );
      expect(await store.get('large/object.bin', { start: n - 1000 })).toEqual(bytes.slice(n - 1000));
      await store.delete('large/object.bin');
      expect(await store.head('large/object.bin')).toBeNull();
    });

    it('leaves no object behind when the body fails mid-way (also past the first multipart part)', async () => {
      for (const failAfter of [100_000, 12 * 1024 * 1024]) {
        const bytes = patternBytes(failAfter, 5);
        let off = 0;
        const broken = new ReadableStream<Uint8Array>({
          pull(c) {
            if (off >= bytes.byteLength) return c.error(new Error('client went away'));
            c.enqueue(bytes.slice(off, off + 1024 * 1024));
            off += 1024 * 1024;
          },
        });
        await expect(store.put('broken/obj', broken)).rejects.toThrow('client went away');
        expect(await store.head('broken/obj')).toBeNull();
        expect(await keysOf(store, 'broken/')).toEqual([]);
      }
    });

    it('lists by prefix in key (byte) order, across nesting and pages', async () => {
      const keys = [
        'ls/b',
        'ls/a0',
        'ls/a/y',
        'ls/a-b',
        'ls/a/x/deep',
        'ls/c/1',
        'ls/c/2',
        'ls/ab',
        'lsx/other',
      ];
      for (const k of keys) await store.put(k, enc.encode(k));
      expect(await keysOf(store, 'ls/')).toEqual([
        'ls/a-b',
        'ls/a/x/deep',
        'ls/a/y',
        'ls/a0',
        'ls/ab',
        'ls/b',
        'ls/c/1',
        'ls/c/2',
      ]);
      expect(await keysOf(store, 'ls/a')).toEqual(['ls/a-b', 'ls/a/x/deep', 'ls/a/y', 'ls/a0', 'ls/ab']);
      expect(await keysOf(store, 'ls/c/')).toEqual(['ls/c/1', 'ls/c/2']);
      expect(await keysOf(store, 'ls')).toEqual([...(await keysOf(store, 'ls/')), 'lsx/other']);
      expect(await keysOf(store, 'nothing/')).toEqual([]);
      const all = await keysOf(store, '');
      expect(all).toEqual(expect.arrayContaining(keys));
      const sorted = [...all].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
      expect(all).toEqual(sorted);
      const sizes: number[] = [];
      for await (const info of store.list('ls/c/')) sizes.push(info.size);
      expect(sizes).toEqual([6, 6]);
      for (const k of keys) await store.delete(k);
      expect(await keysOf(store, 'ls')).toEqual([]);
    });

    if (opts.checkAtomicReads ?? true)
      it('never shows a partly written object to readers', async () => {
        const v1 = new Uint8Array(2 * 1024 * 1024).fill(1);
        const v2 = new Uint8Array(2 * 1024 * 1024).fill(2);
        await store.put('atomic/obj', v1);
        let slowOff = 0;
        const slow = new ReadableStream<Uint8Array>({
          async pull(c) {
            if (slowOff >= v2.byteLength) return c.close();
            await new Promise((r) => setTimeout(r, 2));
            c.enqueue(v2.slice(slowOff, slowOff + 128 * 1024));
            slowOff += 128 * 1024;
          },
        });
        const writing = store.put('atomic/obj', slow);
        let reads = 0;
        let done = false;
        writing.finally(() => (done = true)).catch(() => {});
        while (!done) {
          const got = (await store.get('atomic/obj'))!;
          expect(got.byteLength).toBe(v1.byteLength);
          expect(got[0] === got[got.byteLength - 1] && (got[0] === 1 || got[0] === 2)).toBe(true);
          reads++;
          await new Promise((r) => setImmediate(r)); // let the writer's timers run (memory reads never wait)
        }
        await writing;
        expect(reads).toBeGreaterThan(0);
        expect((await store.get('atomic/obj', { start: 0, end: 0 }))![0]).toBe(2);
        expect(await keysOf(store, 'atomic/')).toEqual(['atomic/obj']); // no temp files listed
      });

    it('rejects keys that could escape the store or mean two things', async () => {
      for (const key of BAD_KEYS) {
        await expect(store.put(key, enc.encode('x')), key).rejects.toMatchObject({ code: 'bad_request' });
        await expect(store.get(key), key).rejects.toMatchObject({ code: 'bad_request' });
        await expect(store.getStream(key), key).rejects.toMatchObject({ code: 'bad_request' });
        await expect(store.head(key), key).rejects.toMatchObject({ code: 'bad_request' });
        await expect(store.delete(key), key).rejects.toMatchObject({ code: 'bad_request' });
      }
      for (const prefix of ['../', '/abs', 'a//', 'a\\', '..']) {
        await expect(keysOf(store, prefix), prefix).rejects.toMatchObject({ code: 'bad_request' });
      }
    });
  });
}
