import { describe, expect, it } from 'vitest';
import { reciprocalRankFusion } from '../../../src/retrieval/rrf.ts';

describe('reciprocal rank fusion', () => {
  it('sums 1/(k + rank) over the lists an item appears in, k = 60 by default', () => {
    const fused = reciprocalRankFusion([
      ['a', 'b', 'c'],
      ['c', 'a', 'd'],
    ]);
    const score = Object.fromEntries(fused.map((r) => [r.key, r.score]));
    expect(score.a).toBeCloseTo(1 / 61 + 1 / 62, 15);
    expect(score.c).toBeCloseTo(1 / 63 + 1 / 61, 15);
    expect(score.b).toBeCloseTo(1 / 62, 15);
    expect(score.d).toBeCloseTo(1 / 63, 15);
    expect(fused.map((r) => r.key)).toEqual(['a', 'c', 'b', 'd']);
    expect(fused.find((r) => r.key === 'd')?.ranks).toEqual([null, 3]);
  });

  it('k changes how much the head of a list dominates', () => {
    // x: rank 1 in list A only; y: rank 3 in both lists
    const lists = [
      ['x', 'p', 'y'],
      ['q', 'r', 'y'],
    ];
    expect(reciprocalRankFusion(lists, { k: 1 })[0].key).toBe('x'); // 1/2 > 2/4
    expect(reciprocalRankFusion(lists, { k: 60 })[0].key).toBe('y'); // 2/63 > 1/61
  });

  it('applies per-list weights', () => {
    const lists = [['sem'], ['fts']];
    expect(reciprocalRankFusion(lists).map((r) => r.key)).toEqual(['sem', 'fts']); // tie: first seen
    expect(reciprocalRankFusion(lists, { weights: [1, 5] }).map((r) => r.key)).toEqual(['fts', 'sem']);
    expect(reciprocalRankFusion(lists, { weights: [1, 5] })[0].score).toBeCloseTo(5 / 61, 15);
    expect(reciprocalRankFusion(lists, { weights: [0, 1] }).find((r) => r.key === 'sem')?.score).toBe(0);
  });

  it('breaks ties by best rank, then by first appearance, independent of insertion into maps', () => {
    // b and c tie on score (ranks 2 and 2 in mirrored positions); a is alone at rank 1 → best rank 1
    const lists = [
      ['a', 'b', 'x'],
      ['y', 'c', 'z'],
    ];
    const keys = reciprocalRankFusion(lists).map((r) => r.key);
    expect(keys).toEqual(['a', 'y', 'b', 'c', 'x', 'z']);
    // the same input in another order of lists gives the mirrored, still deterministic order
    expect(reciprocalRankFusion([lists[1], lists[0]]).map((r) => r.key)).toEqual([
      'y',
      'a',
      'c',
      'b',
      'z',
      'x',
    ]);
    // an exact score tie is won by the item with the better best rank:
    const tie = reciprocalRankFusion(
      [
        ['m', 'n1', 'n2'],
        ['n', 'o'],
      ],
      { weights: [2, 1], k: 1 },
    );
    // m: 2/2 = 1; n: 1/2; n1: 2/3; o: 1/3; n2: 2/4 = 0.5 ties n (0.5): n has best rank 1 → n before n2
    expect(tie.map((r) => r.key)).toEqual(['m', 'n1', 'n', 'n2', 'o']);
  });

  it('counts a repeated item once per list at its best rank, and honours key and limit', () => {
    const rows = [
      { id: 7, src: 'vec' },
      { id: 8, src: 'vec' },
      { id: 7, src: 'vec-dup' },
    ];
    const fts = [{ id: 8, src: 'fts' }];
    const fused = reciprocalRankFusion([rows, fts], { key: (r) => r.id });
    expect(fused.map((r) => [r.key, r.item.src])).toEqual([
      [8, 'vec'],
      [7, 'vec'],
    ]);
    expect(fused[1].score).toBeCloseTo(1 / 61, 15);
    expect(fused[1].ranks).toEqual([1, null]);
    expect(reciprocalRankFusion([rows, fts], { key: (r) => r.id, limit: 1 }).map((r) => r.key)).toEqual([8]);
  });

  it('rejects a bad k or weights', () => {
    expect(() => reciprocalRankFusion([['a']], { k: 0 })).toThrow(RangeError);
    expect(() => reciprocalRankFusion([['a']], { weights: [1, 2] })).toThrow(RangeError);
    expect(() => reciprocalRankFusion([['a']], { weights: [-1] })).toThrow(RangeError);
    expect(reciprocalRankFusion([])).toEqual([]);
  });
});
