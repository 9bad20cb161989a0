// `kvrag bench ttft` end to end on a tiny model (reference backend, small contexts): one JSON object with
// a row per (context, mode, artifact temperature), each from a real assembly — full prefills everything,
// independent prefills only the question with artifacts from the tier the row names, and the ratios are
// full's TTFT over the row's.
import { afterAll, describe, expect, it } from 'vitest';
import { MODEL_SHAPES } from '../../bench/_shapes.ts';
import { run, type TtftResult, ttftTable } from '../../bench/ttft.ts';
import { captureStdout } from '../helpers/capture-stdout.ts';
import { tinyModels } from '../helpers/tiny-model.ts';

const models = tinyModels();
afterAll(() => models.cleanup());

describe('bench ttft', () => {
  it('measures every mode at every context, warm, cold and hot, in one JSON object', async () => {
    const model = models.make('bench', { layers: 3, seed: 2 });
    const { code, out } = await captureStdout(() =>
      run([
        '--json',
        '--model',
        model,
        '--backend',
        'reference',
        '--context',
        '64,128',
        '--chunk-tokens',
        '32',
        '--question',
        '4',
        '--system',
        '8',
        '--runs',
        '1',
        '--link-tokens',
        '4',
        '--temps',
        'hot,warm,cold',
      ]),
    );
    expect(code).toBe(0);
    const r = JSON.parse(out) as TtftResult;
    expect(r.rows.map((x) => `${x.context} ${x.mode} ${x.temp}`)).toEqual(
      [64, 128].flatMap((c) => [
        `${c} full live`,
        ...['prefix', 'independent', 'blend', 'link'].flatMap((m) =>
          ['hot', 'warm', 'cold'].map((t) => `${c} ${m} ${t}`),
        ),
      ]),
    );
    for (const row of r.rows) {
      const full = r.rows.find((x) => x.context === row.context && x.mode === 'full');
      expect(row.speedup).toBeCloseTo((full?.ttftMs ?? 0) / row.ttftMs, 9);
      expect(row.report.tokens).toBe(row.context + 8 + 4);
      const tier = { live: null, hot: 'engine', warm: 'host', cold: 'object' }[row.temp];
      if (tier) expect(Object.keys(row.report.artifactsByTier)).toEqual([tier]);
      if (row.mode === 'independent') {
        expect(row.report.cachedTokens).toBe(row.context + 8);
        expect(row.report.recomputedTokens).toBe(0);
        expect(row.report.artifactsByTier[tier ?? '']).toBe(1 + row.context / 32);
      }
      if (row.mode === 'link') expect(row.report.recomputedTokens).toBe(4 * (row.context / 32));
      if (row.mode === 'full') expect(row.report.recomputedTokens).toBe(row.context + 8);
    }
    expect(r.precompute.map((p) => [p.dtype, p.tokens])).toEqual([['f16', 8 + 128]]);
    const table = ttftTable(r);
    expect(table).toContain('| 128     | independent |   f16 |    object |');
  });

  it('--shape generates a model of that shape, its context raised to fit', async () => {
    const { code, out } = await captureStdout(() =>
      run([
        ...['--json', '--shape', 'tiny', '--backend', 'reference', '--context', '1024'],
        ...['--chunk-tokens', '512', '--question', '2', '--system', '0', '--runs', '1'],
        ...['--modes', 'independent', '--temps', 'warm'],
      ]),
    );
    expect(code).toBe(0);
    const r = JSON.parse(out) as TtftResult;
    const { label, hidden, layers, heads, kvHeads, headDim, intermediate } = MODEL_SHAPES.tiny;
    expect(r.model).toBe(`generated ${label}`);
    expect(r.config).toMatchObject({ hidden, layers, heads, kvHeads, headDim, intermediate });
    expect(r.kvCache).toBe('f32'); // only the native backend keeps f16 / int8 caches (int8 a runner's default there)
    // 1026 tokens: past the tiny shape's own 512 positions
    expect(r.rows.map((x) => [x.mode, x.report.tokens])).toEqual([
      ['full', 1026],
      ['independent', 1026],
    ]);
  });

  it('refuses an unknown mode, artifact dtype or shape, and --shape with --model', async () => {
    await expect(run(['--modes', 'full,turbo'])).rejects.toThrow(/unknown mode "turbo"/);
    await expect(run(['--artifact-dtype', 'f16,int2'])).rejects.toThrow(/unknown dtype "int2"/);
    await expect(run(['--shape', 'gpt5'])).rejects.toThrow(/--shape: unknown shape "gpt5"/);
    await expect(run(['--shape', 'tiny', '--model', '/nonexistent'])).rejects.toThrow(/exclude each other/);
    await expect(run(['--kv-cache', 'f8'])).rejects.toThrow(/--kv-cache must be f32, f16 or int8, not "f8"/);
    await expect(run(['--backend', 'reference', '--kv-cache', 'f16'])).rejects.toThrow(
      /--kv-cache f16: only the native backend/,
    );
  });
});
