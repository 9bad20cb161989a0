// `kvrag bench kv-load` on a tiny shape: one row per dtype, the kvUnpack path and the path it replaced
// put the same keys and values in the cache, the object-store paths (layer-wise into device memory, and
// whole into a fresh buffer as before) both run, and the int8/int4 contexts weigh about a half / a quarter
// of f16's.
import { describe, expect, it } from 'vitest';
import { type KvLoadResult, kvLoadTable, run } from '../../bench/kv-load.ts';
import { captureStdout } from '../helpers/capture-stdout.ts';
import { native } from '../helpers/native.ts';

describe('bench kv-load', () => {
  // wasm's kv_unpack, and the native backend's where the addon is built
  it.each(native.ok ? ['wasm', 'native'] : ['wasm'])(
    '%s: times every dtype side by side and checks both paths agree',
    async (backend) => {
      const { code, out } = await captureStdout(() =>
        run([
          ...['--json', '--tokens', '96', '--chunk-tokens', '32', '--layers', '2', '--kv-heads', '2'],
          ...['--head-dim', '64', '--runs', '2', '--threads', '2', '--backend', backend],
        ]),
      );
      expect(code).toBe(0);
      const r = JSON.parse(out) as KvLoadResult;
      expect(r.backend).toBe(backend);
      expect(r.rows.map((x) => x.dtype)).toEqual(['f16', 'int8', 'int4']);
      for (const x of r.rows) {
        // keys: the two paths rotate with f32 sin/cos of their own; values are identical
        expect(x.maxDiff).toBeLessThan(1e-4);
        expect(x.msPerMiB).toBeCloseTo(x.loadMs / (x.bytes / 2 ** 20), 9);
        // both object-store paths ran; the layer-wise one reads no more than the whole objects (these
        // artifacts carry no index: only the tail padding differs)
        expect(x.objectMs).toBeGreaterThan(0);
        expect(x.objectBeforeMs).toBeGreaterThan(0);
        expect(x.objectMs / x.objectMsPerMiB).toBeLessThanOrEqual(
          x.objectBeforeMs / x.objectBeforeMsPerMiB + 1e-9,
        );
      }
      const [f16, int8, int4] = r.rows.map((x) => x.bytes);
      expect(int8 / f16).toBeLessThan(0.56);
      expect(int4 / f16).toBeLessThan(0.32);
      expect(kvLoadTable(r)).toContain('| int4  |');
    },
  );

  it('refuses an unknown dtype and a backend without the packed-KV kernels', async () => {
    await expect(run(['--artifact-dtype', 'f16,int3'])).rejects.toThrow(/unknown dtype "int3"/);
    await expect(run(['--backend', 'reference'])).rejects.toThrow(/--backend: "reference"/);
  });
});
