// The scheduler's KV memory budget counts a cache's real element size: on the native backend with f16
// caches (a runner's default) the bytes it reserves are the device bytes its sequences' caches take (not
// twice that, as counting 4 bytes per value did), so the same budget admits twice the sequences.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createNativeBackend,
  type NativeBackend,
} from '../../../gpu-runner/engine/backends/native/backend.ts';
import { type Engine, loadEngine } from '../../../gpu-runner/engine/engine.ts';
import type { SeqRequest } from '../../../gpu-runner/engine/generate/request.ts';
import { kvBytesPerPosition, Scheduler } from '../../../gpu-runner/engine/generate/scheduler.ts';
import { expectNativeWhereExpected, native } from '../../helpers/native.ts';
import { tinyModels } from '../../helpers/tiny-model.ts';

it('native addon loaded where expected', () => expectNativeWhereExpected());

describe.skipIf(!native.ok)('scheduler KV budget on f16 caches', () => {
  const models = tinyModels();
  let engine: Engine;
  beforeAll(async () => {
    const backend = await createNativeBackend({ threads: 1, kvDType: 'f16' });
    engine = await loadEngine(models.make('kv-bytes', { arch: 'llama', seed: 2 }), { backend });
  });
  afterAll(() => {
    engine.backend.dispose();
    models.cleanup();
  });

  const req = (q: string): SeqRequest => ({
    system: [],
    chunks: [],
    question: engine.encode(q),
    mode: 'full',
    maxTokens: 4,
    stopTokenIds: [],
  });

  it('reserves the bytes the f16 caches take, and a budget of two f16 sequences admits both', async () => {
    expect(engine.backend.caps.kvDType).toBe('f16');
    const f16 = kvBytesPerPosition(engine.config, 'f16');
    expect(kvBytesPerPosition(engine.config, 'f32')).toBe(2 * f16);
    const reqs = [req('first question?'), req('second question!')];
    // capacity each: its prompt + one growth block (4 positions), as the scheduler reserves
    const caps = reqs.map((r) => r.question.length + 4);
    const s = new Scheduler(engine, {
      background: false,
      growBlock: 4,
      kvBytes: (caps[0] + caps[1]) * f16,
    });
    expect(s.bytesPerPosition).toBe(f16);
    const mem = (engine.backend as NativeBackend).kernels.rt.mem;
    const before = mem.used;
    const seqs = reqs.map((r) => s.enqueue(r));
    await s.step();
    // both admitted in the first step (counted at 4 bytes a value, the second would not fit)
    expect(s.stats().running).toBe(2);
    expect(s.stats().kvBytesInUse).toBe((caps[0] + caps[1]) * f16);
    // and what the scheduler counts is what the caches hold on the device (allocations round up to 64 bytes
    // per layer's K and V)
    const held = mem.used - before;
    expect(held).toBeGreaterThanOrEqual(s.stats().kvBytesInUse);
    expect(held).toBeLessThan(s.stats().kvBytesInUse + 2 * 2 * engine.config.layers * 64);
    await s.run();
    for (const q of seqs) expect((await q.done).completionTokens).toBe(4);
    expect(s.stats().kvBytesInUse).toBe(0);
  });
});
