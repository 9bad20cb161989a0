// Fast, stable (process-independent) 32-bit hash: FNV-1a over UTF-16 code units, finished with a
// murmur3-style avalanche so that nearby strings spread evenly. Part of the wire format: a runner's Bloom
// filter (bloom.ts) is probed with it, and every API instance ranks runners with it (src/routing/select.ts),
// so it is never seeded randomly and never changes without a new heartbeat version.

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
