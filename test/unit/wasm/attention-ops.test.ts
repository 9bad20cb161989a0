// The wasm backend's squeezed/sparse attention ops (test/helpers/attention-ops-suite.ts), threads 1 and 2
// with every op split into parts.
import { createWasmBackend, WasmAttentionOps } from '../../../gpu-runner/engine/backends/wasm/index.ts';
import { attentionOpsSuite } from '../../helpers/attention-ops-suite.ts';

for (const threads of [1, 2]) {
  attentionOpsSuite(`wasm (${threads} thread(s))`, async () => {
    const backend = await createWasmBackend({ threads, splitAll: true });
    return { backend, ops: new WasmAttentionOps(backend) };
  });
}
