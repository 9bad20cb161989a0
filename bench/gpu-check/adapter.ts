// Step 2 of the GPU check (bench/gpu-check.sh): the adapter Dawn picks for KVRAG_WEBGPU_ADAPTER (default
// auto) and what it offers — features (subgroups, subgroup matrices, shader-f16), limits, the subgroup
// matrix configurations — then what the webgpu backend makes of it: the device it opens, and whether its
// subgroup-matrix kernel passed its start-up check (compiles, agrees with the tiled kernel). One JSON
// object on stdout; a non-zero exit when no adapter opens, or with --hardware when the adapter is a CPU
// rasteriser (llvmpipe, SwiftShader): then no GPU is in use and the later steps would not measure one.
//
//   node bench/gpu-check/adapter.ts [--hardware]
import {
  createWebGPUBackend,
  probeAdapter,
  type WebGPUMode,
} from '../../gpu-runner/engine/backends/webgpu/index.ts';

const mode = (process.env.KVRAG_WEBGPU_ADAPTER ?? 'auto') as WebGPUMode;
const hardware = process.argv.includes('--hardware');
const adapter = await probeAdapter(mode);
const has = (f: string) => adapter.features.includes(f);
const backend = await createWebGPUBackend({ mode });
const { info } = backend.kernels;
try {
  const report = {
    mode,
    adapter,
    features: {
      'shader-f16': has('shader-f16'),
      subgroups: has('subgroups'),
      'chromium-experimental-subgroup-matrix': has('chromium-experimental-subgroup-matrix'),
    },
    backend: {
      device: info.description,
      featureLevel: info.featureLevel,
      software: info.software,
      f16: info.f16,
      subgroups: info.subgroups,
      subgroupMatrixConfig: info.subgroupMatrix,
      subgroupMatrix: backend.kernels.subgroupMatrix,
    },
  };
  process.stdout.write(`${JSON.stringify(report)}\n`);
  if (hardware && info.software) {
    console.error(`Dawn picked a CPU rasteriser (${info.description}), not a GPU`);
    process.exitCode = 1;
  }
} finally {
  backend.dispose();
}
