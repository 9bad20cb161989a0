import { execFileSync } from 'node:child_process';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import {
  HashEmbeddingProvider,
  hashEmbed,
  hashFeatureValues,
  hashTokens,
} from '../../../src/embeddings/hash.ts';
import { fmix32, fnv1a32 } from '../../../src/embeddings/hashing.ts';
import { embeddingFingerprint } from '../../../src/embeddings/types.ts';

const dot = (a: Float32Array, b: Float32Array) => a.reduce((s, x, i) => s + x * b[i], 0);
const norm = (a: Float32Array) => Math.sqrt(dot(a, a));

/** FNV-1a over explicit bytes: the textbook definition, to check the allocation-free string version. */
function fnvBytes(bytes: Uint8Array): number {
  let h = 0x811c9dc5;
  for (const b of bytes) h = Math.imul(h ^ b, 0x01000193) >>> 0;
  return h >>> 0;
}

describe('fnv1a32', () => {
  it('matches the published FNV-1a 32-bit test vectors', () => {
    expect(fnv1a32('')).toBe(0x811c9dc5);
    expect(fnv1a32('a')).toBe(0xe40c292c);
    expect(fnv1a32('foobar')).toBe(0xbf9cf968);
  });

  it('hashes the UTF-8 bytes of any string, lone surrogates as U+FFFD like TextEncoder', () => {
    const enc = new TextEncoder();
    for (const s of [
      'é',
      'naïve café',
      '日本語テキスト',
      'emoji 😀👍🏽',
      'lone \ud800 high',
      'lone \udc00 low',
      'end\ud83d',
    ]) {
      expect(fnv1a32(s)).toBe(fnvBytes(enc.encode(s)));
    }
  });

  it('fmix32 is a bijection on a sample (no collisions) and mixes low bits', () => {
    const seen = new Set<number>();
    for (let i = 0; i < 10000; i++) seen.add(fmix32(i));
    expect(seen.size).toBe(10000);
    // consecutive inputs must not land in consecutive buckets
    const buckets = new Set(Array.from({ length: 64 }, (_, i) => fmix32(i) % 64));
    expect(buckets.size).toBeGreaterThan(30);
  });
});

describe('hash embedding', () => {
  it('normalises with NFKC and lowercase before tokenising', () => {
    expect(hashTokens('ＣＡＴ sat, on the  ﬁle!')).toEqual(['cat', 'sat', 'on', 'the', 'file']);
    expect(Array.from(hashEmbed('ＣＡＴ Sat', 64))).toEqual(Array.from(hashEmbed('cat sat', 64)));
  });

  it('uses sublinear tf (1 + ln tf) per feature family', () => {
    const f = hashFeatureValues('apple apple apple apple banana');
    expect(f.get('w\u0001apple')).toBeCloseTo(1 + Math.log(4), 12);
    expect(f.get('w\u0001banana')).toBeCloseTo(1, 12);
    expect(f.get('b\u0001apple\u0002apple')).toBeCloseTo(0.5 * (1 + Math.log(3)), 12);
    expect(f.get('b\u0001apple\u0002banana')).toBeCloseTo(0.5, 12);
    // character n-grams stay inside words: "<apple>" gives "<ap", …, "ple>", never one spanning the space
    expect(f.get('c\u0001<ap')).toBeCloseTo(0.25 * (1 + Math.log(4)), 12);
    expect(f.has('c\u0001e b')).toBe(false);
    expect([...f.keys()].filter((k) => k.startsWith('c\u0001') && k.includes(' '))).toEqual([]);
  });

  it('returns unit vectors of the configured dimension; empty text is the zero vector', async () => {
    const p = new HashEmbeddingProvider({ dimension: 100 });
    const [a, b] = await p.embed(['Postgres full-text search', ''], 'document');
    expect(a.length).toBe(100);
    expect(norm(a)).toBeCloseTo(1, 5);
    expect(Array.from(b).every((x) => x === 0)).toBe(true);
    expect(embeddingFingerprint(p)).toBe('hash:kvrag-hash-v1:100');
    expect(new HashEmbeddingProvider().dimension).toBe(384);
    expect(() => new HashEmbeddingProvider({ dimension: 1 })).toThrow(RangeError);
  });

  it('ranks lexically related texts above unrelated ones, and tolerates typos', async () => {
    const p = new HashEmbeddingProvider();
    const [q, related, unrelated, typo] = await p.embed(
      [
        'how does the KV cache speed up retrieval',
        'The KV cache of each retrieved chunk is precomputed, so retrieval answers start fast.',
        'Stock markets fell sharply on Tuesday after the central bank raised interest rates.',
        'retreival',
      ],
      'query',
    );
    expect(dot(q, related)).toBeGreaterThan(dot(q, unrelated) + 0.2);
    const [exact] = await p.embed(['retrieval'], 'document');
    const [other] = await p.embed(['elephant'], 'document');
    expect(dot(exact, typo)).toBeGreaterThan(0.2);
    expect(dot(exact, typo)).toBeGreaterThan(dot(exact, other) + 0.2);
  });

  it('is identical in a separate process (no process-random seed)', () => {
    const texts = ['Deterministic across processes', '日本語とemoji 😀', 'a b c d e f g'];
    const mod = pathToFileURL(`${process.cwd()}/src/embeddings/hash.ts`).href;
    const script = `import { hashEmbed } from ${JSON.stringify(mod)};
      const texts = ${JSON.stringify(texts)};
      process.stdout.write(JSON.stringify(texts.map((t) => Array.from(hashEmbed(t, 256)))));`;
    const out = execFileSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' });
    const theirs = JSON.parse(out) as number[][];
    texts.forEach((t, i) => {
      expect(theirs[i]).toEqual(Array.from(hashEmbed(t, 256)));
    });
  });
});

describe('hash embedding fast path', () => {
  it('equals the embedding built from the string-keyed features (the reference definition)', () => {
    const texts = [
      'The KV cache of each retrieved chunk is precomputed, so answers start fast.',
      'naïve café résumé — Ünïcödé ﬁ ligatures',
      '日本語のテキスト and emoji 😀👍🏽 in𝔘𝔫𝔦𝔠𝔬𝔡𝔢 words',
      'repeat repeat repeat repeat x',
      'a',
    ];
    for (const t of texts) {
      const ref = new Float32Array(200);
      for (const [f, value] of hashFeatureValues(t)) {
        const h = fmix32(fnv1a32(f));
        ref[h % 200] += h >>> 31 ? -value : value;
      }
      const n = Math.sqrt(ref.reduce((s, x) => s + x * x, 0));
      const fast = hashEmbed(t, 200);
      for (let i = 0; i < 200; i++) expect(fast[i]).toBeCloseTo(ref[i] / n, 6);
    }
  });

  it('continues FNV over concatenations', () => {
    expect(fnv1a32('bar', fnv1a32('foo'))).toBe(fnv1a32('foobar'));
    expect(fnv1a32('xxfoobaryy', fnv1a32('w'), 2, 8)).toBe(fnv1a32('wfoobar'));
  });
});
