// The start-up gate of the subgroup-matrix matmul (kernels/subgroup-matrix.ts): it is turned on only if
// it compiles on this device and agrees with the tiled kernel on an f16-weight product (5e-3 relative:
// activations are rounded to f16 on that path). It cannot run on llvmpipe, so this gate is its test on
// every GPU it meets.
import type { Backend } from '../types.ts';
import type { DeviceInfo } from './device.ts';
import { matmulSubgroupMatrix } from './kernels/subgroup-matrix.ts';

type Config = NonNullable<DeviceInfo['subgroupMatrix']>;

/** 'on', or 'off (why)'. `use(true)` routes the backend's f16 matmuls to the kernel, `use(false)` back. */
export async function checkSubgroupMatrix(
  b: Backend,
  device: GPUDevice,
  cfg: Config,
  use: (on: boolean) => void,
): Promise<string> {
  const kernel = matmulSubgroupMatrix('f16', cfg);
  try {
    const module = device.createShaderModule({ code: kernel.wgsl });
    await device.createComputePipelineAsync({ layout: 'auto', compute: { module, entryPoint: 'main' } });
  } catch (err) {
    return `off (does not compile: ${(err as Error).message.split('\n')[0]})`;
  }
  const [M, K, N] = [40, 96, 72];
  let seed = 1;
  const r = () => {
    seed = (seed * 1103515245 + 12345) >>> 0;
    return seed / 2 ** 32 - 0.5;
  };
  const x = b.upload({ dtype: 'f32', shape: [M, K], data: Float32Array.from({ length: M * K }, r) });
  // halves in ±[2^-3, 2^-2): normal values of both signs
  const wh = Uint16Array.from(
    { length: N * K },
    () => 0x3000 + Math.floor((r() + 0.5) * 0x3ff) + (r() < 0 ? 0x8000 : 0),
  );
  const w = b.upload({ dtype: 'f16', shape: [N, K], data: wh });
  use(false);
  const tiled = b.matmul(x, w);
  use(true);
  const sgm = b.matmul(x, w);
  use(false);
  const [want, got] = [await b.read(tiled), await b.read(sgm)];
  for (const t of [x, w, tiled, sgm]) b.free(t);
  let num = 0;
  let den = 0;
  for (let i = 0; i < want.length; i++) {
    num = Math.max(num, Math.abs(want[i] - got[i]));
    den = Math.max(den, Math.abs(want[i]));
  }
  return num <= 5e-3 * den ? 'on' : `off (disagrees with the tiled kernel: ${(num / den).toExponential(2)})`;
}
