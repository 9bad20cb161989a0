// The default embedding provider: no model, no network. Signed feature hashing (Weinberger et al.) of
// word unigrams, word bigrams and character 3–5-grams inside words, sublinear tf, L2-normalised.
// Lexical, not semantic: it ranks texts sharing words and word pieces, which with full-text search and
// RRF makes a usable embedded-mode retriever and a deterministic one for tests.
import { fmix32, fnv1a32 } from './hashing.ts';
import { type EmbeddingProvider, l2Normalize } from './types.ts';

export const HASH_MODEL = 'kvrag-hash-v1';
export const HASH_DEFAULT_DIMENSION = 384;

/** Weight of each feature family before tf scaling: whole words carry the most evidence. */
const WEIGHT = { word: 1, bigram: 0.5, char: 0.25 } as const;
const CHAR_NGRAM_MIN = 3;
const CHAR_NGRAM_MAX = 5;

/** Letters (with their combining marks), digits and underscore form words; everything else separates. */
const WORD = /[\p{L}\p{M}\p{N}_]+/gu;

/** NFKC, lowercase, then words: what both the hash embedding and its tests mean by "tokens". */
export function hashTokens(text: string): string[] {
  return text.normalize('NFKC').toLowerCase().match(WORD) ?? [];
}

/**
 * Features of one text with their weights, accumulated by feature string; families are kept apart by a
 * prefix so the word "abc" and the trigram "abc" are different features.
 */
function countFeatures(text: string): Map<string, { count: number; weight: number }> {
  const out = new Map<string, { count: number; weight: number }>();
  const add = (f: string, weight: number) => {
    const e = out.get(f);
    if (e) e.count++;
    else out.set(f, { count: 1, weight });
  };
  const words = hashTokens(text);
  for (let i = 0; i < words.length; i++) {
    const w = words[i];
    add(`w\u0001${w}`, WEIGHT.word);
    if (i > 0) add(`b\u0001${words[i - 1]}\u0002${w}`, WEIGHT.bigram);
    // n-grams over code points of the word padded with boundary marks ("<cat>" → "<ca", "cat", "at>", …)
    const cps = Array.from(`<${w}>`);
    for (let n = CHAR_NGRAM_MIN; n <= CHAR_NGRAM_MAX; n++) {
      for (let s = 0; s + n <= cps.length; s++) add(`c\u0001${cps.slice(s, s + n).join('')}`, WEIGHT.char);
    }
  }
  return out;
}

/**
 * Each feature's value before hashing: family weight × (1 + ln tf). Keys are `w\u0001word`,
 * `b\u0001prev\u0002word` and `c\u0001ngram`.
 */
export function hashFeatureValues(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const [f, { count, weight }] of countFeatures(text)) out.set(f, weight * (1 + Math.log(count)));
  return out;
}

const SEED_WORD = fnv1a32('w\u0001');
const SEED_BIGRAM = fnv1a32('b\u0001');
const SEED_CHAR = fnv1a32('c\u0001');
const SURROGATE = /[\ud800-\udfff]/;

const bump = (m: Map<number, number>, h: number) => m.set(h, (m.get(h) ?? 0) + 1);

/**
 * The hash embedding of one text: dimension buckets, signed, (1 + ln tf)-weighted, unit length.
 * Same features as hashFeatureValues, but hashed incrementally (FNV continues over the prefix) and
 * counted by hash instead of by string: no per-n-gram strings on the common path.
 */
export function hashEmbed(text: string, dimension: number): Float32Array {
  const words = hashTokens(text);
  const families: [Map<number, number>, number][] = [
    [new Map(), WEIGHT.word],
    [new Map(), WEIGHT.bigram],
    [new Map(), WEIGHT.char],
  ];
  const [[wordCounts], [bigramCounts], [charCounts]] = families;
  for (let i = 0; i < words.length; i++) {
    const w = words[i];
    bump(wordCounts, fnv1a32(w, SEED_WORD));
    if (i > 0) bump(bigramCounts, fnv1a32(w, fnv1a32('\u0002', fnv1a32(words[i - 1], SEED_BIGRAM))));
    const padded = `<${w}>`;
    if (!SURROGATE.test(padded)) {
      for (let n = CHAR_NGRAM_MIN; n <= CHAR_NGRAM_MAX; n++) {
        for (let s = 0; s + n <= padded.length; s++) bump(charCounts, fnv1a32(padded, SEED_CHAR, s, s + n));
      }
    } else {
      // astral characters: n-grams over code points, as in countFeatures
      const cps = Array.from(padded);
      for (let n = CHAR_NGRAM_MIN; n <= CHAR_NGRAM_MAX; n++) {
        for (let s = 0; s + n <= cps.length; s++)
          bump(charCounts, fnv1a32(cps.slice(s, s + n).join(''), SEED_CHAR));
      }
    }
  }
  const v = new Float32Array(dimension);
  for (const [counts, weight] of families) {
    for (const [f, count] of counts) {
      const h = fmix32(f);
      const value = weight * (1 + Math.log(count));
      // bucket from the hash modulo the dimension, sign from its top bit (independent of the bucket)
      v[h % dimension] += h >>> 31 ? -value : value;
    }
  }
  return l2Normalize(v);
}

export interface HashEmbeddingOptions {
  /** Number of buckets (default 384). */
  dimension?: number;
}

export class HashEmbeddingProvider implements EmbeddingProvider {
  readonly id = 'hash' as const;
  readonly model = HASH_MODEL;
  readonly dimension: number;

  constructor(opts: HashEmbeddingOptions = {}) {
    const d = opts.dimension ?? HASH_DEFAULT_DIMENSION;
    if (!Number.isInteger(d) || d < 2 || d > 16384)
      throw new RangeError(`hash dimension must be 2..16384, got ${d}`);
    this.dimension = d;
  }

  /** Documents and queries share one space: the kind does not change a hash embedding. */
  async embed(texts: string[], _kind: 'document' | 'query'): Promise<Float32Array[]> {
    return texts.map((t) => hashEmbed(t, this.dimension));
  }
}
