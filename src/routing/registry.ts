// Implementations of the runner registry (contracts/heartbeat.ts RunnerRegistry): Redis (registry-redis.ts,
// distributed mode) and in-memory (this file: embedded mode, unit tests).
import {
  parseHeartbeat,
  type RunnerHeartbeat,
  type RunnerRegistry,
  runnerHeartbeatSchema,
} from '../../contracts/heartbeat.ts';

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
