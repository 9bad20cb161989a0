// `kvrag bench engine --peer llamacpp` end to end on the tiny generated model: one JSON object with both
// engines measured on the same project-written GGUF files (F32 and Q8_0), the llama.cpp build variant,
// and the greedy tokens of both on one prompt — which agree for f32.
import { describe, expect, it } from 'vitest';
import { run } from '../../bench/engine.ts';
import { UsageError } from '../../cli/args.ts';
import { captureStdout } from '../helpers/capture-stdout.ts';

describe('bench engine --peer llamacpp', () => {
  it('measures kvrag and llama.cpp side by side on the same weights', { timeout: 240_000 }, async () => {
    const { code, out } = await captureStdout(() =>
      run([
        '--peer',
        'llamacpp',
        '--json',
        '--shape',
        'tiny',
        '--backend',
        'reference',
        '--threads',
        '1',
        '--prefill',
        '16,32',
        '--ttft',
        '32',
        '--decode-prompt',
        '12',
        '--decode-tokens',
        '10',
      ]),
    );
    expect(code).toBe(0);
    const r = JSON.parse(out);
    expect(r.config).toMatchObject({ hidden: 64, layers: 2, vocab: 272 });
    expect(r.llamacpp.build).toBe('prebuilt');
    expect(typeof r.llamacpp.variant).toBe('string');
    expect(r.llamacpp.systemInfo).toMatch(/CPU/);
    expect(r.formats.map((f: { format: string }) => f.format)).toEqual(['F32', 'Q8_0']);
    for (const f of r.formats) {
      for (const side of [f.kvrag, f.llamacpp]) {
        expect(Object.keys(side.ttftMs).sort()).toEqual(['16', '32']);
        for (const ms of Object.values(side.ttftMs)) expect(ms).toBeGreaterThan(0);
        expect(side.decodeTokensPerS).toBeGreaterThan(0);
        expect(side.tokens).toHaveLength(10);
      }
    }
    const [f32, q8] = r.formats;
    expect(f32.kvragWeights).toBe('f32');
    expect(q8.kvragWeights).toBe('q8_0 blocks as stored');
    expect(f32.llamacpp.tokens).toEqual(f32.kvrag.tokens);
    expect(f32.greedyAgree).toBe(10);
  });

  it('refuses an unknown peer and format', async () => {
    await expect(run(['--peer', 'vllm'])).rejects.toThrow(UsageError);
    await expect(run(['--peer', 'llamacpp', '--formats', 'q5_k'])).rejects.toThrow(/--formats: "Q5_K"/);
  });
});
