// Reuse-mode identities on the reference backend (the oracle), f32 artifacts: ≤ 1e-5.
import { reuseIdentitySuite } from '../helpers/kv-reuse-suite.ts';

reuseIdentitySuite('reference', async () => 'reference', 1e-5);
