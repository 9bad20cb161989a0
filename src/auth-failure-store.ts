// Windowed counters of failed authentications by subject (`ip:<address>`, `key:<visible prefix>`):
// the interface, and the in-memory implementation (embedded mode, Workers isolates, tests). The Redis one
// is src/auth-failures-redis.ts; the middleware that uses them is src/routes/auth-failures.ts.

export interface FailureWindow {
  /** Failures counted in the current window. */
  count: number;
  /** Milliseconds until the window ends (0 when there is none). */
  resetMs: number;
}

/** Windowed failure counters by subject (`ip:<address>`, `key:<visible prefix>`). */
export interface AuthFailureStore {
  get(subject: string): Promise<FailureWindow>;
  /** Counts one failure; the first failure of a subject opens its window of `windowMs`. */
  add(subject: string, windowMs: number): Promise<FailureWindow>;
  close?(): Promise<void>;
}

/** Subjects kept at most; expired windows are dropped first, then the oldest. */
const MEMORY_MAX_SUBJECTS = 100_000;

export class MemoryAuthFailures implements AuthFailureStore {
  readonly #windows = new Map<string, { count: number; until: number }>();
  readonly #now: () => number;
  constructor(now: () => number = Date.now) {
    this.#now = now;
  }

  async get(subject: string): Promise<FailureWindow> {
    const w = this.#windows.get(subject);
    const now = this.#now();
    if (!w || w.until <= now) return { count: 0, resetMs: 0 };
    return { count: w.count, resetMs: w.until - now };
  }

  async add(subject: string, windowMs: number): Promise<FailureWindow> {
    const now = this.#now();
    let w = this.#windows.get(subject);
    if (!w || w.until <= now) {
      if (this.#windows.size >= MEMORY_MAX_SUBJECTS) this.#evict(now);
      w = { count: 0, until: now + windowMs };
      this.#windows.set(subject, w);
    }
    w.count++;
    return { count: w.count, resetMs: w.until - now };
  }

  #evict(now: number): void {
    for (const [k, w] of this.#windows) if (w.until <= now) this.#windows.delete(k);
    // still full: drop the oldest tenth (Map iterates in insertion order)
    let drop = this.#windows.size >= MEMORY_MAX_SUBJECTS ? MEMORY_MAX_SUBJECTS / 10 : 0;
    for (const k of this.#windows.keys()) {
      if (drop-- <= 0) break;
      this.#windows.delete(k);
    }
  }
}
