// Python's `random.Random` (CPython 3.11, MT19937) for exactly the calls the episode generator makes:
// seeding from a string (version 2: the UTF-8 bytes followed by their SHA-512, read as one big-endian
// integer), random(), getrandbits(k ≤ 32), randrange(n), randint(a, b) and choice(seq). The eval's
// held-out episodes must be byte-identical to gpu-runner/tools/train/episodes.py, so nothing here may
// drift from CPython's Modules/_randommodule.c and Lib/random.py.
import { createHash } from 'node:crypto';

const N = 624;
const M = 397;

export class PyRandom {
  private readonly mt = new Uint32Array(N);
  private mti = N + 1;

  constructor(seed: string) {
    const bytes = Buffer.from(seed, 'utf8');
    const all = Buffer.concat([bytes, createHash('sha512').update(bytes).digest()]);
    this.initByArray(bigEndianToWords(all));
  }

  private initGenrand(s: number): void {
    const mt = this.mt;
    mt[0] = s >>> 0;
    for (let i = 1; i < N; i++) {
      const prev = mt[i - 1] ^ (mt[i - 1] >>> 30);
      mt[i] = (Math.imul(1812433253, prev) + i) >>> 0;
    }
    this.mti = N;
  }

  private initByArray(key: Uint32Array): void {
    const mt = this.mt;
    this.initGenrand(19650218);
    let i = 1;
    let j = 0;
    for (let k = Math.max(N, key.length); k > 0; k--) {
      const prev = mt[i - 1] ^ (mt[i - 1] >>> 30);
      mt[i] = ((mt[i] ^ Math.imul(prev, 1664525)) + key[j] + j) >>> 0;
      i++;
      j++;
      if (i >= N) {
        mt[0] = mt[N - 1];
        i = 1;
      }
      if (j >= key.length) j = 0;
    }
    for (let k = N - 1; k > 0; k--) {
      const prev = mt[i - 1] ^ (mt[i - 1] >>> 30);
      mt[i] = ((mt[i] ^ Math.imul(prev, 1566083941)) - i) >>> 0;
      i++;
      if (i >= N) {
        mt[0] = mt[N - 1];
        i = 1;
      }
    }
    mt[0] = 0x80000000;
  }

  /** genrand_uint32: the next 32-bit output. */
  uint32(): number {
    const mt = this.mt;
    if (this.mti >= N) {
      let kk = 0;
      for (; kk < N - M; kk++) {
        const y = (mt[kk] & 0x80000000) | (mt[kk + 1] & 0x7fffffff);
        mt[kk] = mt[kk + M] ^ (y >>> 1) ^ (y & 1 ? 0x9908b0df : 0);
      }
      for (; kk < N - 1; kk++) {
        const y = (mt[kk] & 0x80000000) | (mt[kk + 1] & 0x7fffffff);
        mt[kk] = mt[kk + (M - N)] ^ (y >>> 1) ^ (y & 1 ? 0x9908b0df : 0);
      }
      const y = (mt[N - 1] & 0x80000000) | (mt[0] & 0x7fffffff);
      mt[N - 1] = mt[M - 1] ^ (y >>> 1) ^ (y & 1 ? 0x9908b0df : 0);
      this.mti = 0;
    }
    let y = mt[this.mti++];
    y ^= y >>> 11;
    y ^= (y << 7) & 0x9d2c5680;
    y ^= (y << 15) & 0xefc60000;
    y ^= y >>> 18;
    return y >>> 0;
  }

  /** random(): 53-bit float in [0, 1). */
  random(): number {
    const a = this.uint32() >>> 5;
    const b = this.uint32() >>> 6;
    return (a * 67108864 + b) / 9007199254740992;
  }

  /** getrandbits(k) for 1 ≤ k ≤ 32. */
  getrandbits(k: number): number {
    if (!Number.isInteger(k) || k < 1 || k > 32) throw new RangeError(`getrandbits: k=${k} outside 1..32`);
    return this.uint32() >>> (32 - k);
  }

  /** _randbelow_with_getrandbits(n): uniform in [0, n), n ≥ 1 (rejection on n.bit_length() bits). */
  randbelow(n: number): number {
    if (!Number.isInteger(n) || n < 1 || n > 0xffffffff) throw new RangeError(`randbelow: n=${n}`);
    const k = 32 - Math.clz32(n);
    let r = this.getrandbits(k);
    while (r >= n) r = this.getrandbits(k);
    return r;
  }

  /** randrange(n): [0, n). */
  randrange(n: number): number {
    return this.randbelow(n);
  }

  /** randint(a, b): [a, b], both ends included. */
  randint(a: number, b: number): number {
    if (b < a) throw new RangeError(`randint: empty range ${a}..${b}`);
    return a + this.randbelow(b - a + 1);
  }

  choice<T>(seq: readonly T[]): T {
    if (seq.length === 0) throw new RangeError('choice: empty sequence');
    return seq[this.randbelow(seq.length)];
  }
}

/**
 * The 32-bit key words CPython's random_seed() hands init_by_array for a non-negative integer given as
 * big-endian bytes: least significant word first, as many words as the integer's bit length needs.
 */
function bigEndianToWords(bytes: Uint8Array): Uint32Array {
  let start = 0;
  while (start < bytes.length && bytes[start] === 0) start++;
  const n = bytes.length - start;
  const words = new Uint32Array(Math.max(1, Math.ceil(n / 4)));
  for (let i = 0; i < n; i++) {
    const byte = bytes[bytes.length - 1 - i]; // i-th least significant byte
    words[i >> 2] |= byte << ((i & 3) * 8);
  }
  return words;
}
