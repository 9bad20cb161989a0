// Timing helpers of the kernel benchmarks (bench kernels and its native/int8 section).

/**
 * Shortest time (s) of one call of fn over at least `seconds` and at least `minCalls` calls: on a shared
 * machine the best call is the one that ran uninterrupted, and long calls need several tries to get one.
 */
export function bestTime(fn: () => void, seconds: number, minCalls = 5): number {
  let best = Number.POSITIVE_INFINITY;
  const end = performance.now() + seconds * 1000;
  for (let i = 0; i < minCalls || performance.now() < end; i++) {
    const t = performance.now();
    fn();
    best = Math.min(best, (performance.now() - t) / 1000);
  }
  return best;
}

/**
 * Best GFLOP per CPU-second of a single-threaded call (process CPU time; run when no pool worker is
 * awake): unlike wall time it does not depend on how often the shared machine preempts the thread.
 */
export function bestCpuGflops(fn: () => void, flops: number, calls: number): number {
  let best = 0;
  for (let i = 0; i < calls; i++) {
    const c = process.cpuUsage();
    fn();
    const u = process.cpuUsage(c);
    const s = (u.user + u.system) / 1e6;
    if (s > 0) best = Math.max(best, flops / s / 1e9);
  }
  return best;
}

/** Lets pool workers that are still polling for a next op go to sleep (they poll ~2 ms). */
export function settle(): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 10);
}
