// The OpenBLAS peer for `bench kernels`: a long-lived /usr/bin/python3 + numpy process (Debian's numpy
// calls the system BLAS, libopenblas0-pthread here) that times y = x · wᵀ at a requested shape and
// answers with GFLOP/s, so the same shapes are measured side by side in one run.
import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createInterface, type Interface } from 'node:readline';

const PY = `
import json, os, sys, time
import numpy as np
lib = os.path.realpath('/usr/lib/x86_64-linux-gnu/libblas.so.3')
print(json.dumps({"ready": True, "numpy": np.__version__, "blas": lib}), flush=True)
for line in sys.stdin:
    q = json.loads(line)
    m, k, n, secs = q["M"], q["K"], q["N"], q["seconds"]
    rng = np.random.default_rng(1)
    x = rng.standard_normal((m, k), dtype=np.float32)
    w = rng.standard_normal((n, k), dtype=np.float32)
    y = x @ w.T
    best = 0.0
    best_cpu = 0.0
    end = time.perf_counter() + secs
    calls = 0
    while calls < 5 or time.perf_counter() < end:
        t = time.perf_counter()
        c = time.thread_time()
        np.matmul(x, w.T, out=y)
        dc = time.thread_time() - c
        dt = time.perf_counter() - t
        best = max(best, 2.0 * m * k * n / dt / 1e9)
        if dc > 0:
            best_cpu = max(best_cpu, 2.0 * m * k * n / dc / 1e9)
        calls += 1
    print(json.dumps({"gflops": best, "cpuGflops": best_cpu}), flush=True)
`;

export interface BlasPeer {
  /** numpy version and the BLAS library numpy's libblas.so.3 resolves to */
  readonly info: { numpy: string; blas: string };
  /**
   * Best GFLOP/s of x[M,K] · w[N,K]ᵀ over `seconds` (and at least 5 calls) of repetitions: wall clock,
   * and per CPU-second of the calling thread (meaningful with 1 BLAS thread, which runs in that thread).
   */
  gflops(M: number, K: number, N: number, seconds: number): Promise<{ wall: number; cpu: number }>;
  close(): void;
}

/** Starts the peer with `threads` BLAS threads; null when python3 or numpy is missing. */
export async function startBlasPeer(threads: number): Promise<BlasPeer | null> {
  if (!existsSync('/usr/bin/python3')) return null;
  const env = {
    ...process.env,
    OPENBLAS_NUM_THREADS: String(threads),
    OMP_NUM_THREADS: String(threads),
  };
  const proc: ChildProcessWithoutNullStreams = spawn('/usr/bin/python3', ['-u', '-c', PY], { env });
  const lines: Interface = createInterface({ input: proc.stdout });
  const it = lines[Symbol.asyncIterator]();
  const next = async (): Promise<Record<string, unknown> | null> => {
    const r = await it.next();
    return r.done ? null : (JSON.parse(r.value) as Record<string, unknown>);
  };
  proc.stderr.resume();
  const hello = await next().catch(() => null);
  if (!hello?.ready) {
    proc.kill();
    return null;
  }
  return {
    info: { numpy: String(hello.numpy), blas: String(hello.blas) },
    async gflops(M, K, N, seconds) {
      proc.stdin.write(`${JSON.stringify({ M, K, N, seconds })}\n`);
      const r = await next();
      if (!r || typeof r.gflops !== 'number') throw new Error('BLAS peer stopped answering');
      return { wall: r.gflops, cpu: Number(r.cpuGflops) };
    },
    close() {
      lines.close();
      proc.stdin.end();
      proc.kill();
    },
  };
}
