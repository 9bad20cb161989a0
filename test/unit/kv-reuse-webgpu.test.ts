// The reuse-mode identities on the webgpu backend (Dawn; llvmpipe in CI), with decode attention split
// every 32 keys so the flash-decoding path carries them too. Tolerance 1e-4, as on wasm.
import { reuseIdentitySuite } from '../helpers/kv-reuse-suite.ts';
import { makeWebGPU } from '../helpers/webgpu.ts';

reuseIdentitySuite('webgpu', () => makeWebGPU({ keysPerSplit: 32 }), 1e-4);
