// A request's artifacts acquired from the engine tier ahead of its admission (Assembler.prefetch): the
// reads run while the request waits, and each handle pins its artifact in engine memory until place()
// takes it or the request ends and release() lets go.
import type { AcquiredKV } from '../kv/engine-tier.ts';
import type { Prefetch } from './types.ts';

export /** Tier handles acquired ahead, per artifact key (a chunk given twice holds two). */
class ArtifactPrefetch implements Prefetch {
  private readonly held = new Map<string, Promise<AcquiredKV | null>[]>();

  add(key: string, got: Promise<AcquiredKV | null>): void {
    got.catch(() => {}); // a failed read surfaces where place() awaits it
    const list = this.held.get(key) ?? [];
    list.push(got);
    this.held.set(key, list);
  }

  /** The next held handle for `key` (now the taker's to release), or undefined. */
  take(key: string): Promise<AcquiredKV | null> | undefined {
    return this.held.get(key)?.shift();
  }

  release(): void {
    for (const list of this.held.values())
      for (const p of list.splice(0))
        p.then(
          (g) => g?.release(),
          () => {},
        );
  }
}
