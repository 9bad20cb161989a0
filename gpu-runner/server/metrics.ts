// Prometheus text exposition (format 0.0.4), written by hand: a few histograms and counters the
// scheduler feeds, plus gauges read at scrape time (queue, running sequences, KV memory, tier stats).
import type { TierStats } from '../engine/kv/tiers.ts';
import type { SchedulerObserver, SchedulerStats } from '../engine/generate/scheduler.ts';
import type { RunnerUsage } from '../../contracts/runner-api.ts';

const LATENCY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

export class Histogram {
  readonly buckets: readonly number[];
  /** counts[i]: observations ≤ buckets[i] (not cumulative; summed when written). */
  private readonly counts: number[];
  private sum = 0;
  private count = 0;

  constructor(buckets: readonly number[] = LATENCY_BUCKETS) {
    this.buckets = buckets;
    this.counts = buckets.map(() => 0);
  }

  observe(v: number): void {
    this.sum += v;
    this.count++;
    const i = this.buckets.findIndex((b) => v <= b);
    if (i >= 0) this.counts[i]++;
  }

  lines(name: string): string[] {
    let cum = 0;
    const out = this.buckets.map((b, i) => {
      cum += this.counts[i];
      return `${name}_bucket{le="${b}"} ${cum}`;
    });
    out.push(
      `${name}_bucket{le="+Inf"} ${this.count}`,
      `${name}_sum ${this.sum}`,
      `${name}_count ${this.count}`,
    );
    return out;
  }
}

export interface MetricsSources {
  scheduler(): SchedulerStats;
  /** Artifact tiers by name (engine, host, disk, object). */
  tiers(): Record<string, TierStats>;
}

export class RunnerMetrics implements SchedulerObserver {
  readonly ttft = new Histogram();
  readonly interTokenHist = new Histogram();
  private generated = 0;
  private prompt = 0;
  private cached = 0;
  private readonly finishes = new Map<string, number>();
  private readonly precomputed = new Map<string, number>();
  /** Generated tokens per recent second, for the tokens/s gauge: [second, tokens]. */
  private readonly recent: [number, number][] = [];

  firstToken(sec: number): void {
    this.ttft.observe(sec);
    this.countToken();
  }

  interToken(sec: number): void {
    this.interTokenHist.observe(sec);
    this.countToken();
  }

  finished(u: RunnerUsage): void {
    this.prompt += u.promptTokens;
    this.cached += u.cachedTokens;
    this.finishes.set(u.finishReason, (this.finishes.get(u.finishReason) ?? 0) + 1);
  }

  precompute(result: 'stored' | 'skipped' | 'failed', n: number): void {
    this.precomputed.set(result, (this.precomputed.get(result) ?? 0) + n);
  }

  private countToken(): void {
    this.generated++;
    const sec = Math.floor(Date.now() / 1000);
    const last = this.recent[this.recent.length - 1];
    if (last && last[0] === sec) last[1]++;
    else this.recent.push([sec, 1]);
    while (this.recent.length > 0 && this.recent[0][0] < sec - 10) this.recent.shift();
  }

  /** Generated tokens per second over the last 10 whole seconds. */
  tokensPerSecond(): number {
    const now = Math.floor(Date.now() / 1000);
    return this.recent.filter(([s]) => s >= now - 10 && s < now).reduce((a, [, n]) => a + n, 0) / 10;
  }

  render(src: MetricsSources): string {
    const s = src.scheduler();
    const out: string[] = [];
    const metric = (name: string, type: string, help: string, lines: string[]) => {
      out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`, ...lines);
    };
    metric(
      'kvrag_runner_ttft_seconds',
      'histogram',
      'Time from request arrival to first token.',
      this.ttft.lines('kvrag_runner_ttft_seconds'),
    );
    metric(
      'kvrag_runner_inter_token_seconds',
      'histogram',
      'Time between consecutive tokens of a sequence.',
      this.interTokenHist.lines('kvrag_runner_inter_token_seconds'),
    );
    metric('kvrag_runner_generated_tokens_total', 'counter', 'Tokens generated.', [
      `kvrag_runner_generated_tokens_total ${this.generated}`,
    ]);
    metric('kvrag_runner_prompt_tokens_total', 'counter', 'Prompt tokens of finished requests.', [
      `kvrag_runner_prompt_tokens_total ${this.prompt}`,
    ]);
    metric('kvrag_runner_cached_tokens_total', 'counter', 'Prompt tokens served from KV artifacts.', [
      `kvrag_runner_cached_tokens_total ${this.cached}`,
    ]);
    metric('kvrag_runner_tokens_per_second', 'gauge', 'Generated tokens per second over the last 10 s.', [
      `kvrag_runner_tokens_per_second ${this.tokensPerSecond()}`,
    ]);
    metric(
      'kvrag_runner_requests_total',
      'counter',
      'Finished requests by finish reason.',
      [...this.finishes].map(([r, n]) => `kvrag_runner_requests_total{finish_reason="${r}"} ${n}`),
    );
    metric(
      'kvrag_runner_precompute_artifacts_total',
      'counter',
      'Precompute results per chunk.',
      [...this.precomputed].map(([r, n]) => `kvrag_runner_precompute_artifacts_total{result="${r}"} ${n}`),
    );
    metric('kvrag_runner_queue_depth', 'gauge', 'Requests waiting for admission.', [
      `kvrag_runner_queue_depth ${s.waiting}`,
    ]);
    metric('kvrag_runner_running_sequences', 'gauge', 'Sequences holding KV memory.', [
      `kvrag_runner_running_sequences ${s.running}`,
    ]);
    metric('kvrag_runner_kv_bytes_in_use', 'gauge', 'Sequence KV cache bytes reserved.', [
      `kvrag_runner_kv_bytes_in_use ${s.kvBytesInUse}`,
    ]);
    metric('kvrag_runner_kv_bytes_capacity', 'gauge', 'Sequence KV cache byte cap.', [
      `kvrag_runner_kv_bytes_capacity ${s.kvBytesCapacity}`,
    ]);
    metric('kvrag_runner_preemptions_total', 'counter', 'Sequences preempted (recomputed later).', [
      `kvrag_runner_preemptions_total ${s.preemptions}`,
    ]);
    const tiers = Object.entries(src.tiers());
    const per = (field: keyof TierStats, name: string, type: string, help: string) =>
      metric(
        name,
        type,
        help,
        tiers.map(([t, st]) => `${name}{tier="${t}"} ${finite(st[field])}`),
      );
    per('hits', 'kvrag_runner_tier_hits_total', 'counter', 'Artifact reads served by the tier.');
    per('misses', 'kvrag_runner_tier_misses_total', 'counter', 'Artifact reads the tier could not serve.');
    per('bytesRead', 'kvrag_runner_tier_read_bytes_total', 'counter', 'Bytes read from the tier.');
    per('bytesWritten', 'kvrag_runner_tier_written_bytes_total', 'counter', 'Bytes written to the tier.');
    per('residentBytes', 'kvrag_runner_tier_resident_bytes', 'gauge', 'Bytes the tier holds.');
    return `${out.join('\n')}\n`;
  }
}

/** Prometheus spells infinity +Inf. */
function finite(v: number): string {
  return Number.isFinite(v) ? String(v) : v > 0 ? '+Inf' : '-Inf';
}
