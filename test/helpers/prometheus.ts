// A strict reader of the Prometheus text exposition format (0.0.4) for tests: every line must be a
// HELP/TYPE comment or a well-formed sample of a declared metric; histograms must have cumulative,
// non-decreasing buckets ending in +Inf equal to _count. Throws on anything else.

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export interface Exposition {
  types: Map<string, string>;
  samples: Sample[];
  /** The value of the one sample of `name` whose labels include `labels` (undefined when none). */
  value(name: string, labels?: Record<string, string>): number | undefined;
  /** Sum over the samples of `name` whose labels include `labels`. */
  sum(name: string, labels?: Record<string, string>): number;
}

const SAMPLE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (-?[0-9.e+-]+|\+Inf|-Inf|NaN)$/;
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(,|$)/y;

export function parseExposition(text: string): Exposition {
  const types = new Map<string, string>();
  const samples: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line === '') continue;
    if (line.startsWith('# HELP ')) continue;
    const t = /^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram|summary|untyped)$/.exec(line);
    if (t) {
      if (types.has(t[1])) throw new Error(`metric ${t[1]} declared twice`);
      types.set(t[1], t[2]);
      continue;
    }
    if (line.startsWith('#')) continue;
    const m = SAMPLE.exec(line);
    if (!m) throw new Error(`not a sample line: ${line}`);
    const labels: Record<string, string> = {};
    if (m[3]) {
      LABEL.lastIndex = 0;
      while (LABEL.lastIndex < m[3].length) {
        const l = LABEL.exec(m[3]);
        if (!l) throw new Error(`bad labels in: ${line}`);
        labels[l[1]] = l[2].replace(/\\n/g, '\n').replace(/\\"/g, '"').replace(/\\\\/g, '\\');
      }
    }
    const base = m[1].replace(/_(bucket|sum|count)$/, '');
    if (!types.has(m[1]) && !(types.get(base) === 'histogram'))
      throw new Error(`sample of undeclared metric: ${line}`);
    samples.push({ name: m[1], labels, value: Number(m[4].replace('+Inf', 'Infinity')) });
  }
  checkHistograms(types, samples);
  const matches = (s: Sample, name: string, labels: Record<string, string>) =>
    s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v);
  return {
    types,
    samples,
    value(name, labels = {}) {
      const found = samples.filter((s) => matches(s, name, labels));
      if (found.length > 1)
        throw new Error(`${found.length} samples of ${name} match ${JSON.stringify(labels)}`);
      return found[0]?.value;
    },
    sum(name, labels = {}) {
      return samples.filter((s) => matches(s, name, labels)).reduce((a, s) => a + s.value, 0);
    },
  };
}

function checkHistograms(types: Map<string, string>, samples: Sample[]): void {
  for (const [name, type] of types) {
    if (type !== 'histogram') continue;
    const series = new Map<string, { buckets: [number, number][]; count?: number }>();
    for (const s of samples) {
      if (!s.name.startsWith(`${name}_`)) continue;
      const { le, ...rest } = s.labels;
      const key = JSON.stringify(rest);
      const e = series.get(key) ?? { buckets: [] };
      series.set(key, e);
      if (s.name === `${name}_bucket`) e.buckets.push([Number(le.replace('+Inf', 'Infinity')), s.value]);
      if (s.name === `${name}_count`) e.count = s.value;
    }
    for (const [key, e] of series) {
      const last = e.buckets[e.buckets.length - 1];
      if (!last || last[0] !== Infinity) throw new Error(`${name}${key}: no +Inf bucket`);
      if (last[1] !== e.count) throw new Error(`${name}${key}: +Inf bucket ${last[1]} != count ${e.count}`);
      for (let i = 1; i < e.buckets.length; i++) {
        if (e.buckets[i][0] <= e.buckets[i - 1][0] || e.buckets[i][1] < e.buckets[i - 1][1])
          throw new Error(`${name}${key}: buckets not cumulative and increasing`);
      }
    }
  }
}
