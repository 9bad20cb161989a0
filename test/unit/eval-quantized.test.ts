// `kvrag eval --weights q8_0` on the bundled model (its matrices quantized to Q8_0 at load, multiplied by
// the integer kernels) scores what the f32 weights score on the same held-out episodes: every cell's
// exact match within 1 point (with a few episodes per cell: the same count correct).
import { describe, expect, it } from 'vitest';
import type { EvalResult } from '../../gpu-runner/eval/run.ts';
import { command } from '../../cli/commands/eval.ts';
import { captureStdout } from '../helpers/capture-stdout.ts';

async function evalWith(weights: string): Promise<EvalResult> {
  const args = ['--suite', 'passkey,kv', '--context', '512', '--n', '2', '--modes', 'full'];
  const rest = ['--budgets', 'none', '--patterns', 'none', '--backend', 'wasm', '--threads', '2'];
  const r = await captureStdout(() => command.run([...args, ...rest, '--weights', weights, '--json']));
  expect(r.code).toBe(0);
  return JSON.parse(r.out) as EvalResult;
}

describe('kvrag eval with Q8_0 weights of the bundled model', () => {
  it('scores within 1 point of f32 in every cell', async () => {
    const f32 = await evalWith('f32');
    const q8 = await evalWith('q8_0');
    expect([f32.weights, q8.weights]).toEqual(['f32', 'q8_0']);
    expect(q8.cells.map((c) => [c.suite, c.context, c.variant])).toEqual(
      f32.cells.map((c) => [c.suite, c.context, c.variant]),
    );
    q8.cells.forEach((c, i) => {
      expect(Math.abs(c.accuracy - f32.cells[i].accuracy)).toBeLessThanOrEqual(0.01);
    });
  });

  it('refuses an unknown weight dtype', async () => {
    await expect(command.run(['--weights', 'q6_k'])).rejects.toThrow(/--weights: unknown "q6_k"/);
  });
});
