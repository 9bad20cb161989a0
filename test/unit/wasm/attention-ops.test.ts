// The wasm attention kernel's gathered / per-head-range / merge modes and k-means (test/helpers/attention-ops-suite.ts), threads 1 and 2
// with every op split into parts.
import { createWasmBackend } from '../../../gpu-runner/engine/backends/wasm/index.ts';
import { WasmAttentionOps } from '../../helpers/attention-ops/wasm.ts';
import { attentionOpsSuite } from '../../helpers/attention-ops-suite.ts';

for (const threads of [1, 2]) {
  attentionOpsSuite(`wasm (${threads} thread(s))`, async () => {
    const backend = await createWasmBackend({ threads, splitAll: true });
    return { backend, ops: new WasmAttentionOps(backend) };
  });
}
