// A Bloom filter over artifact keys: the compact "which artifacts do I hold" summary a runner puts in its
// heartbeat. m bits, k probes by double hashing; serialised as base64 so it travels in JSON.
import { hash32 } from './hash.ts';

export interface BloomJson {
  /** Number of bits (a multiple of 8). */
  m: number;
  /** Number of probes per key. */
  k: number;
  /** base64 of the bit array. */
  bits: string;
  /** Keys added (for the false-positive estimate). */
  n: number;
}

export class BloomFilter {
  readonly m: number;
  readonly k: number;
  readonly bits: Uint8Array;
  n = 0;

  constructor(m: number, k: number, bits?: Uint8Array) {
    if (!Number.isInteger(m) || m <= 0 || m % 8 !== 0)
      throw new Error(`bloom size must be a positive multiple of 8, got ${m}`);
    if (!Number.isInteger(k) || k < 1 || k > 16) throw new Error(`bloom probes must be 1..16, got ${k}`);
    this.m = m;
    this.k = k;
    this.bits = bits ?? new Uint8Array(m / 8);
    if (this.bits.length !== m / 8) throw new Error('bloom bit array has the wrong length');
  }

  /** Sized for `capacity` keys at false-positive rate `fp`. */
  static forCapacity(capacity: number, fp = 0.01): BloomFilter {
    const n = Math.max(1, capacity);
    const m = Math.max(64, Math.ceil((-n * Math.log(fp)) / Math.LN2 ** 2 / 8) * 8);
    const k = Math.min(16, Math.max(1, Math.round((m / n) * Math.LN2)));
    return new BloomFilter(m, k);
  }

  private probes(key: string): number[] {
    const h1 = hash32(key);
    const h2 = hash32(key, 0x9747b28c) | 1;
    const out: number[] = [];
    for (let i = 0; i < this.k; i++) out.push(((h1 + Math.imul(i, h2)) >>> 0) % this.m);
    return out;
  }

  add(key: string): void {
    for (const p of this.probes(key)) this.bits[p >> 3] |= 1 << (p & 7);
    this.n++;
  }

  has(key: string): boolean {
    return this.probes(key).every((p) => (this.bits[p >> 3] & (1 << (p & 7))) !== 0);
  }

  toJSON(): BloomJson {
    return { m: this.m, k: this.k, n: this.n, bits: toBase64(this.bits) };
  }

  static fromJSON(j: BloomJson): BloomFilter {
    const f = new BloomFilter(j.m, j.k, fromBase64(j.bits));
    f.n = j.n;
    return f;
  }
}

// btoa/atob exist on Node and Workers alike (no Buffer: this module is reachable from the Workers entry).
function toBase64(bytes: Uint8Array): string {
  let s = '';
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(s);
}

function fromBase64(b64: string): Uint8Array {
  const s = atob(b64);
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out;
}
