// What a runner is doing, for people: its load and KV memory, and per artifact tier (engine, host, disk,
// object) occupancy and hit rate — read from the runner's own Prometheus /metrics (the kvrag_runner_*
// series of gpu-runner/server/metrics.ts), through the same fetch the router uses to reach it.
// Workers-safe (fetch only).
import type { RunnerEndpoint } from './runner-client.ts';

export interface TierView {
  name: string;
  hits: number;
  misses: number;
  /** hits / (hits + misses); null before the first read. */
  hitRate: number | null;
  residentBytes: number;
  /** null: unbounded (the object store). */
  capacityBytes: number | null;
}

export interface RunnerMetricsView {
  running: number;
  waiting: number;
  kvBytesInUse: number;
  kvBytesCapacity: number;
  tokensPerSecond: number;
  /** Requests finished since the runner started, and their mean time to first token (s; null: none). */
  requests: number;
  meanTtftSeconds: number | null;
  cachedTokens: number;
  promptTokens: number;
  tiers: TierView[];
}

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

const SAMPLE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/;
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;

/** The samples of a Prometheus text exposition (comments and lines it cannot read are skipped). */
export function readExposition(text: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = SAMPLE.exec(line);
    if (!m) continue;
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(LABEL)) labels[l[1]] = l[2];
    const value = m[3] === '+Inf' ? Infinity : m[3] === '-Inf' ? -Infinity : Number(m[3]);
    out.push({ name: m[1], labels, value });
  }
  return out;
}

/** The view of one runner's /metrics text. */
export function runnerMetricsView(text: string): RunnerMetricsView {
  const samples = readExposition(text);
  const one = (name: string) => samples.find((s) => s.name === name)?.value ?? 0;
  const tierNames = [...new Set(samples.filter((s) => s.labels.tier).map((s) => s.labels.tier))];
  const tier = (name: string, t: string) =>
    samples.find((s) => s.name === name && s.labels.tier === t)?.value ?? 0;
  const ttftCount = one('kvrag_runner_ttft_seconds_count');
  return {
    running: one('kvrag_runner_running_sequences'),
    waiting: one('kvrag_runner_queue_depth'),
    kvBytesInUse: one('kvrag_runner_kv_bytes_in_use'),
    kvBytesCapacity: one('kvrag_runner_kv_bytes_capacity'),
    tokensPerSecond: one('kvrag_runner_tokens_per_second'),
    requests: samples
      .filter((s) => s.name === 'kvrag_runner_requests_total')
      .reduce((a, s) => a + s.value, 0),
    meanTtftSeconds: ttftCount > 0 ? one('kvrag_runner_ttft_seconds_sum') / ttftCount : null,
    cachedTokens: one('kvrag_runner_cached_tokens_total'),
    promptTokens: one('kvrag_runner_prompt_tokens_total'),
    tiers: tierNames.map((t) => {
      const hits = tier('kvrag_runner_tier_hits_total', t);
      const misses = tier('kvrag_runner_tier_misses_total', t);
      const capacity = tier('kvrag_runner_tier_capacity_bytes', t);
      return {
        name: t,
        hits,
        misses,
        hitRate: hits + misses > 0 ? hits / (hits + misses) : null,
        residentBytes: tier('kvrag_runner_tier_resident_bytes', t),
        capacityBytes: Number.isFinite(capacity) && capacity > 0 ? capacity : null,
      };
    }),
  };
}

/** GET <runner>/metrics through the runner's fetch; the view, or why it could not be read. */
export async function scrapeRunner(
  runner: Pick<RunnerEndpoint, 'url' | 'fetch'>,
  timeoutMs = 2000,
): Promise<{ metrics: RunnerMetricsView } | { error: string }> {
  try {
    const res = await runner.fetch(
      new Request(`${runner.url.replace(/\/+$/, '')}/metrics`, { signal: AbortSignal.timeout(timeoutMs) }),
    );
    if (!res.ok) {
      await res.body?.cancel();
      return { error: `metrics answered HTTP ${res.status}` };
    }
    return { metrics: runnerMetricsView(await res.text()) };
  } catch (e) {
    return { error: `metrics unreachable: ${(e as Error).message}` };
  }
}
