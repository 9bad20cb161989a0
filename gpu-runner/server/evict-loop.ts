// Deleted data leaves the runners too (issue 19 §5): gc deletes an artifact from the object store once no
// chunk references it (its document was deleted), but a runner may still hold copies in engine memory,
// host memory and on its local disk. Every `intervalMs` this sweep asks the object store (HEAD) about each
// key held locally and drops the local copies of those it no longer has. Every local copy was written
// after its object (ArtifactStore.put writes the durable tier first), so a missing object means deleted.
// An object store that does not answer ends the pass early; nothing is dropped on a guess.
import type { Log } from '../../contracts/log.ts';
import { type RunnerCore, residentKeys } from './core.ts';

export interface EvictionSweep {
  /** One pass now; resolves with the number of keys dropped. */
  sweep(): Promise<number>;
  stop(): Promise<void>;
}

export function startEvictionSweep(core: RunnerCore, opts: { intervalMs: number; log?: Log }): EvictionSweep {
  let running: Promise<number> | null = null;
  const pass = async (): Promise<number> => {
    let dropped = 0;
    const keys = [...new Set([...residentKeys(core), ...core.engineTier.keys()])];
    for (const key of keys) {
      let present: boolean | null;
      try {
        present = await core.store.durable(key);
      } catch (err) {
        opts.log?.('warn', 'eviction sweep: object store unavailable, pass ended', { err: String(err) });
        break;
      }
      if (present !== false) continue;
      await core.store.evictLocal(key);
      core.engineTier.forget(key);
      dropped++;
    }
    if (dropped > 0) opts.log?.('info', 'evicted artifacts deleted from the object store', { dropped });
    return dropped;
  };
  const sweep = () => {
    running ??= pass().finally(() => {
      running = null;
    });
    return running;
  };
  const timer = opts.intervalMs > 0 ? setInterval(() => void sweep(), opts.intervalMs) : null;
  timer?.unref();
  return {
    sweep,
    async stop() {
      if (timer) clearInterval(timer);
      await running;
    },
  };
}
