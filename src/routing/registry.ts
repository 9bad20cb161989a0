// The runner registry: runners publish heartbeats with a TTL; routers list the live ones. A runner that
// stops heartbeating disappears when its TTL runs out, so a dead runner is never chosen after that.
// Implementations: Redis (registry-redis.ts, distributed mode) and in-memory (embedded mode, unit tests).
import { type RunnerHeartbeat, runnerHeartbeatSchema } from './heartbeat.ts';

export interface RunnerRegistry {
  publish(hb: RunnerHeartbeat, ttlMs: number): Promise<void>;
  /** Deregisters at once (graceful shutdown). */
  remove(id: string): Promise<void>;
  /** Heartbeats of every runner whose TTL has not run out. */
  list(): Promise<RunnerHeartbeat[]>;
  close(): Promise<void>;
}

/** Parses a stored heartbeat; null for anything malformed (never trust the registry's contents). */
export function parseHeartbeat(raw: string | null): RunnerHeartbeat | null {
  if (!raw) return null;
  try {
    const r = runnerHeartbeatSchema.safeParse(JSON.parse(raw));
    return r.success ? r.data : null;
  } catch {
    return null;
  }
}

export class MemoryRegistry implements RunnerRegistry {
  private readonly entries = new Map<string, { json: string; expires: number }>();
  private readonly now: () => number;

  constructor(now: () => number = Date.now) {
    this.now = now;
  }

  async publish(hb: RunnerHeartbeat, ttlMs: number): Promise<void> {
    this.entries.set(hb.id, {
      json: JSON.stringify(runnerHeartbeatSchema.parse(hb)),
      expires: this.now() + ttlMs,
    });
  }

  async remove(id: string): Promise<void> {
    this.entries.delete(id);
  }

  async list(): Promise<RunnerHeartbeat[]> {
    const t = this.now();
    const out: RunnerHeartbeat[] = [];
    for (const [id, e] of this.entries) {
      if (e.expires <= t) this.entries.delete(id);
      else {
        const hb = parseHeartbeat(e.json);
        if (hb) out.push(hb);
      }
    }
    return out.sort((a, b) => a.id.localeCompare(b.id));
  }

  async close(): Promise<void> {}
}
