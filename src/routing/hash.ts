// Fast, stable (process-independent) 32-bit hashes for routing: FNV-1a over UTF-16 code units, finished
// with a murmur3-style avalanche so that nearby strings spread evenly. Never seeded randomly: every API
// instance must compute the same ranking for the same runner and artifact.

export function hash32(s: string, seed = 0x811c9dc5): number {
  let h = seed >>> 0;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** Rendezvous (highest-random-weight) score of `node` for `key`, in [0, 1). */
export function rendezvousScore(node: string, key: string): number {
  return hash32(key, hash32(node)) / 4294967296;
}
