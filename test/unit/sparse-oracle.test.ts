// The oracle bound of sparse prefill (attention/sparse/oracle.ts) on constructed attention: uniform
// attention needs 95% of the keys; one dominant key per row needs one key per row; a shared column
// is cheap per block while per-row scattered keys are not.
import { describe, expect, it } from 'vitest';
import { oracleDensity } from '../../gpu-runner/engine/attention/sparse/oracle.ts';

function inputs(
  rows: number,
  heads: number,
  kvHeads: number,
  q: (r: number, h: number) => number[],
  k: (j: number) => number[],
  D = 4,
) {
  const qa = new Float32Array(rows * heads * D);
  for (let r = 0; r < rows; r++) for (let h = 0; h < heads; h++) qa.set(q(r, h), (r * heads + h) * D);
  const ka = new Float32Array(kvHeads * rows * D);
  for (let g = 0; g < kvHeads; g++) for (let j = 0; j < rows; j++) ka.set(k(j), (g * rows + j) * D);
  return { q: qa, k: ka, rows, pos: 0, positions: rows, heads, kvHeads, headDim: D, scale: 1 };
}

describe('oracle density', () => {
  it('uniform attention needs the target share of keys at both granularities', () => {
    const r = oracleDensity(
      inputs(
        256,
        2,
        1,
        () => [0, 0, 0, 0],
        () => [1, 0, 0, 0],
      ),
      { target: 0.95, blockSize: 16, sampleEvery: 1, minRow: 128 },
    );
    // each row keeps ceil(0.95·visible) of its visible keys
    expect(r.rowDensity[0]).toBeGreaterThan(0.95);
    expect(r.rowDensity[0]).toBeLessThan(0.96);
    expect(r.blockDensity[0]).toBeGreaterThan(0.94);
    expect(r.blockDensity[0]).toBeLessThan(0.97);
  });

  it('a shared column (an attention sink) is one key per row and per block', () => {
    // every query matches key 0 only, strongly
    const r = oracleDensity(
      inputs(
        512,
        3,
        1,
        () => [20, 0, 0, 0],
        (j) => (j === 0 ? [1, 0, 0, 0] : [0, 1, 0, 0]),
      ),
      { sampleEvery: 1, minRow: 256 },
    );
    expect(r.rowDensity[0]).toBeLessThan(1 / 256);
    expect(r.blockDensity[0]).toBeLessThan(1 / 256);
  });

  it('per-row scattered keys are cheap per row but not per block', () => {
    // row r attends to key r/2 (random near-orthogonal keys, one per row pair): per row one key, per
    // 16-row block 8 distinct keys each needed by only two rows, so the block plan keeps ~8× the pairs
    const rows = 512;
    const D = 64;
    let seed = 7;
    const rand = () => {
      seed = (seed * 1103515245 + 12345) % 2147483648;
      return seed / 2147483648 - 0.5;
    };
    const keys = Array.from({ length: rows }, () => {
      const v = Array.from({ length: D }, rand);
      const n = Math.hypot(...v);
      return v.map((x) => (6 * x) / n);
    });
    const r = oracleDensity(
      inputs(
        rows,
        1,
        1,
        (i) => keys[i >> 1].map((x) => 5 * x),
        (j) => keys[j],
        D,
      ),
      { sampleEvery: 1, minRow: 256 },
    );
    expect(r.rowDensity[0]).toBeLessThan(2 / 256);
    expect(r.blockDensity[0]).toBeGreaterThan(5 * r.rowDensity[0]);
  });

  it('rejects shapes that do not match', () => {
    const bad = {
      ...inputs(
        16,
        2,
        1,
        () => [0, 0, 0, 0],
        () => [0, 0, 0, 0],
      ),
      heads: 3,
    };
    expect(() => oracleDensity(bad)).toThrow(/q is not/);
  });
});
