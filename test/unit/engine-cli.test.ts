// `kvrag generate` and `kvrag bench engine` run as the real CLI process.
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { loadEngine } from '../../gpu-runner/engine/engine.ts';
import { run as benchEngine } from '../../bench/engine.ts';
import { expectNativeWhereExpected, native } from '../helpers/native.ts';
import { tinyModels } from '../helpers/tiny-model.ts';

const run = promisify(execFile);
const bin = join(import.meta.dirname, '../../bin/kvrag.js');
const models = tinyModels();
afterAll(() => models.cleanup());

describe('kvrag generate', () => {
  it('streams the same text the engine generates for the chat-templated prompt', async () => {
    const dir = models.make('llama', { arch: 'llama', seed: 8 });
    const { stdout, stderr } = await run(process.execPath, [
      bin,
      'generate',
      '--model',
      dir,
      '--prompt',
      'Say hi',
      '--max-tokens',
      '12',
      '--backend',
      'reference',
    ]);
    const engine = await loadEngine(dir);
    const [r] = await engine.generate([
      { prompt: engine.encodeChat([{ role: 'user', content: 'Say hi' }]), maxTokens: 12 },
    ]);
    expect(stdout).toBe(`${r.text}\n`);
    expect(stderr).toMatch(
      new RegExp(`\\[${r.finishReason}\\] prompt \\d+ tokens, generated ${r.tokens.length}`),
    );
  });

  it('fails with the file and the problem for a broken model, and with usage errors', async () => {
    const missing = join(models.root, 'nope');
    await expect(
      run(process.execPath, [bin, 'generate', '--model', missing, '--prompt', 'x']),
    ).rejects.toMatchObject({
      code: 1,
      stderr: expect.stringContaining(`${missing}: not a model directory (no config.json)`),
    });
    await expect(run(process.execPath, [bin, 'generate', '--prompt', 'x'])).rejects.toMatchObject({
      code: 2,
      stderr: expect.stringContaining('--model DIR is required'),
    });
  });
});

describe('kvrag bench engine', () => {
  it('prints one JSON object with prefill and decode tokens/s', async () => {
    const dir = models.make('qwen2', { arch: 'qwen2', seed: 9 });
    const { stdout } = await run(process.execPath, [
      bin,
      'bench',
      'engine',
      '--json',
      '--model',
      dir,
      '--backend',
      'reference',
      '--prompt-tokens',
      '8',
      '--decode-tokens',
      '3',
      '--batch',
      '2',
    ]);
    const out = JSON.parse(stdout);
    expect(out.results).toHaveLength(1);
    expect(out.results[0].backend).toBe('reference');
    expect(out.config).toMatchObject({ hidden: 64, layers: 2, heads: 4, kvHeads: 2, vocab: 272 });
    for (const k of ['prefillTokensPerS', 'decodeTokensPerS', 'batchDecodeTokensPerS']) {
      expect(out.results[0][k]).toBeGreaterThan(0);
    }
  });

  it('decodes after a --context-token prompt on the native backend, once per --huge-pages setting', async () => {
    expectNativeWhereExpected();
    if (!native.ok) return;
    const dir = models.make('llama-ctx', { seed: 4, maxPositions: 128 });
    const { stdout } = await run(process.execPath, [
      bin,
      'bench',
      'engine',
      '--json',
      '--model',
      dir,
      '--backend',
      'native',
      '--prompt-tokens',
      '8',
      '--decode-tokens',
      '3',
      '--batch',
      '2',
      '--context',
      '40',
      '--kv-cache',
      'f16,int8',
      '--huge-pages',
      'off,on',
      '--threads',
      '1',
    ]);
    const out = JSON.parse(stdout);
    expect(out).toMatchObject({ context: 40, kvCache: 'f16,int8', batch: 2 });
    // each page setting once per cache type, side by side
    const linux = process.platform === 'linux';
    expect(out.results.map((r: { hugePages: boolean }) => r.hugePages)).toEqual([false, false, linux, linux]);
    expect(out.results.map((r: { kvCache: string }) => r.kvCache)).toEqual(['f16', 'int8', 'f16', 'int8']);
    for (const r of out.results) {
      expect(r.backend).toBe('native');
      expect(r.batchStepMs).toBeGreaterThan(0);
      expect(r.decodeStepMs).toBeGreaterThan(0);
      // ms per step and tokens/s are two views of the same timing
      expect(r.batchDecodeTokensPerS).toBeCloseTo((2 * 1000) / r.batchStepMs, 6);
    }
  });

  it('refuses a bad --kv-cache, --huge-pages or --context, and a cache type for a non-native backend', async () => {
    await expect(benchEngine(['--backend', 'native', '--kv-cache', 'f8'])).rejects.toThrow(
      /--kv-cache: "f8" is not f32, f16, int8/,
    );
    await expect(benchEngine(['--backend', 'reference', '--kv-cache', 'f16'])).rejects.toThrow(
      /--kv-cache f16: only the native backend/,
    );
    await expect(benchEngine(['--backend', 'native', '--huge-pages', 'maybe'])).rejects.toThrow(
      /--huge-pages: "maybe" is not on, off or on,off/,
    );
    await expect(benchEngine(['--backend', 'reference', '--context', '0'])).rejects.toThrow(/--context/);
  });
});
