// wasm kv_unpack (chunk KV artifact section → cache rows, keys re-rotated) against the reference decoder,
// threads 1 and 2, on the cases and tolerances every kv_unpack kernel is held to (helpers/kv-unpack-cases.ts).
import { afterAll, beforeAll, describe, it } from 'vitest';
import { WasmRuntime } from '../../../gpu-runner/engine/backends/wasm/runtime.ts';
import { checkUnpackCase, KV_UNPACK_CASES } from '../../helpers/kv-unpack-cases.ts';
import { getF32, putF32 } from '../../helpers/wasm-runtime.ts';

describe.each([1, 2])('wasm kv_unpack, %i thread(s)', (threads) => {
  let rt: WasmRuntime;
  beforeAll(async () => {
    rt = await WasmRuntime.create({ threads, splitAll: true });
  });
  afterAll(async () => {
    await rt.close();
  });

  it.each(KV_UNPACK_CASES)(
    '%s, head_dim %i, key transform %s, %i tokens: values exact, keys re-rotated',
    (dtype, d, transform, n) =>
      checkUnpackCase(dtype, d, transform, n, (bytes, cache, inv, { dstOffset, ...args }) => {
        const src = rt.mem.alloc(bytes.byteLength);
        rt.mem.u8.set(bytes, src);
        const dst = putF32(rt, cache);
        const freq = putF32(rt, inv);
        rt.kvUnpack({ ...args, src, dst: dst + dstOffset, invFreq: freq });
        const got = getF32(rt, dst, cache.length);
        for (const p of [src, dst, freq]) rt.mem.release(p);
        return got;
      }),
  );
});
