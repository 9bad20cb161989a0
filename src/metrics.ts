// Prometheus text exposition (format 0.0.4) for the API and the workers: labelled counters and
// histograms that code updates, gauges read at scrape time, and a registry that renders them all.
// Plain TypeScript (no Node imports): the Workers build serves it too. The runner has its own
// (gpu-runner/server/metrics.ts); names here start with kvrag_api_ or kvrag_worker_.

export const LATENCY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

type Labels = Record<string, string>;

interface Metric {
  readonly name: string;
  /** `# HELP`/`# TYPE` header and sample lines; gauges may read their value asynchronously. */
  render(): string[] | Promise<string[]>;
}

/** `{a="x",b="y"}` with label values escaped as the format requires; '' when there are no labels. */
export function labelText(labels: Labels): string {
  const parts = Object.entries(labels).map(
    ([k, v]) => `${k}="${v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"')}"`,
  );
  return parts.length === 0 ? '' : `{${parts.join(',')}}`;
}

const header = (name: string, type: string, help: string) => [
  `# HELP ${name} ${help}`,
  `# TYPE ${name} ${type}`,
];

export class Counter implements Metric {
  readonly name: string;
  private readonly help: string;
  /** labelText → value */
  private readonly values = new Map<string, number>();

  constructor(name: string, help: string) {
    this.name = name;
    this.help = help;
  }

  inc(labels: Labels = {}, n = 1): void {
    const k = labelText(labels);
    this.values.set(k, (this.values.get(k) ?? 0) + n);
  }

  render(): string[] {
    return [
      ...header(this.name, 'counter', this.help),
      ...[...this.values].map(([l, v]) => `${this.name}${l} ${v}`),
    ];
  }
}

export class Histogram implements Metric {
  readonly name: string;
  private readonly help: string;
  private readonly buckets: readonly number[];
  /** labelText → per-bucket counts (not cumulative), sum, count */
  private readonly series = new Map<
    string,
    { labels: Labels; counts: number[]; sum: number; count: number }
  >();

  constructor(name: string, help: string, buckets: readonly number[] = LATENCY_BUCKETS) {
    this.name = name;
    this.help = help;
    this.buckets = buckets;
  }

  observe(labels: Labels, v: number): void {
    const k = labelText(labels);
    let s = this.series.get(k);
    if (!s) {
      s = { labels, counts: this.buckets.map(() => 0), sum: 0, count: 0 };
      this.series.set(k, s);
    }
    s.sum += v;
    s.count++;
    const i = this.buckets.findIndex((b) => v <= b);
    if (i >= 0) s.counts[i]++;
  }

  render(): string[] {
    const out = header(this.name, 'histogram', this.help);
    for (const [l, s] of this.series) {
      let cum = 0;
      for (const [i, b] of this.buckets.entries()) {
        cum += s.counts[i];
        out.push(`${this.name}_bucket${labelText({ ...s.labels, le: String(b) })} ${cum}`);
      }
      out.push(
        `${this.name}_bucket${labelText({ ...s.labels, le: '+Inf' })} ${s.count}`,
        `${this.name}_sum${l} ${s.sum}`,
        `${this.name}_count${l} ${s.count}`,
      );
    }
    return out;
  }
}

/** A gauge whose samples are read when scraped (queue depth, outbox backlog). */
export class Gauge implements Metric {
  readonly name: string;
  private readonly help: string;
  private readonly read: () => Promise<[Labels, number][]>;

  constructor(name: string, help: string, read: () => Promise<[Labels, number][]>) {
    this.name = name;
    this.help = help;
    this.read = read;
  }

  async render(): Promise<string[]> {
    const samples = await this.read();
    return [
      ...header(this.name, 'gauge', this.help),
      ...samples.map(([l, v]) => `${this.name}${labelText(l)} ${v}`),
    ];
  }
}

/** The metrics one process exposes on GET /metrics. */
export class MetricsRegistry {
  private readonly metrics = new Map<string, Metric>();

  /** Registers `m`, or returns the one already registered under its name (several apps, one process). */
  add<M extends Metric>(m: M): M {
    const have = this.metrics.get(m.name);
    if (have) return have as M;
    this.metrics.set(m.name, m);
    return m;
  }

  /** The exposition text. A gauge that cannot be read is left out (and its error listed as a comment). */
  async render(): Promise<string> {
    const out: string[] = [];
    for (const m of this.metrics.values()) {
      try {
        out.push(...(await m.render()));
      } catch (e) {
        out.push(`# ${m.name} unavailable: ${String((e as Error).message ?? e).replace(/\n/g, ' ')}`);
      }
    }
    return `${out.join('\n')}\n`;
  }
}

export const PROMETHEUS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';
