// API key material: shape, uniqueness, the stored forms, and the comparison used for hashes.
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  constantTimeEqual,
  generateApiKey,
  looksLikeApiKey,
  sha256Hex,
  VISIBLE_PREFIX_LENGTH,
  visiblePrefix,
} from '../../src/routes/keys.ts';

describe('API keys', () => {
  it('generates distinct well-formed keys whose stored forms are sha256 and the visible prefix', async () => {
    const keys = await Promise.all(Array.from({ length: 50 }, () => generateApiKey()));
    expect(new Set(keys.map((k) => k.key)).size).toBe(50);
    expect(new Set(keys.map((k) => k.prefix)).size).toBe(50);
    for (const { key, prefix, hash } of keys) {
      expect(looksLikeApiKey(key)).toBe(true);
      expect(prefix).toBe(key.slice(0, VISIBLE_PREFIX_LENGTH));
      expect(visiblePrefix(key)).toBe(prefix);
      expect(hash).toBe(createHash('sha256').update(key).digest('hex'));
    }
  });

  it('sha256Hex matches node:crypto on text and bytes', async () => {
    for (const s of ['', 'abc', 'ünïcødé 🔑', 'x'.repeat(10_000)]) {
      const want = createHash('sha256').update(s).digest('hex');
      expect(await sha256Hex(s)).toBe(want);
      expect(await sha256Hex(new TextEncoder().encode(s))).toBe(want);
    }
  });

  it('rejects tokens of the wrong shape before any lookup', () => {
    for (const t of [
      '',
      'kvrag_',
      `kvrag_${'a'.repeat(42)}`,
      `kvrag_${'a'.repeat(44)}`,
      `sk-${'a'.repeat(46)}`,
      `kvrag_${'a'.repeat(42)}!`,
    ]) {
      expect(looksLikeApiKey(t), t).toBe(false);
    }
  });

  it('constantTimeEqual is plain equality on every input', () => {
    const a = 'f'.repeat(64);
    expect(constantTimeEqual(a, a)).toBe(true);
    expect(constantTimeEqual(a, `${'f'.repeat(63)}e`)).toBe(false);
    expect(constantTimeEqual(a, `e${'f'.repeat(63)}`)).toBe(false);
    expect(constantTimeEqual(a, a.slice(1))).toBe(false);
    expect(constantTimeEqual('', '')).toBe(true);
    expect(constantTimeEqual('', 'a')).toBe(false);
  });
});
