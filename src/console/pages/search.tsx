// The search playground: a query over one collection, attribute filters (key, operator, value; all must
// hold), result count and score threshold; results ranked with their fused score and the matched chunk
// text, the query's terms marked.
import { useState } from 'preact/hooks';
import { call, type SearchHit } from '../api.ts';
import { errorText } from '../shell.ts';
import { Highlight, queryTerms } from '../parts/highlight.tsx';
import { useCollections } from './collections.tsx';
import { ErrorLine, Field } from '../parts/form-bits.tsx';

const OPS = ['eq', 'ne', 'gt', 'gte', 'lt', 'lte'] as const;
interface FilterRow {
  key: string;
  op: (typeof OPS)[number];
  value: string;
}

/** A typed filter value: numbers and true/false as such, anything else as text. */
function typed(v: string): string | number | boolean {
  if (v === 'true' || v === 'false') return v === 'true';
  return v.trim() !== '' && Number.isFinite(Number(v)) ? Number(v) : v;
}

export function filterOf(rows: FilterRow[]): unknown {
  const fs = rows
    .filter((r) => r.key.trim())
    .map((r) => ({ type: r.op, key: r.key.trim(), value: typed(r.value) }));
  return fs.length === 0 ? undefined : fs.length === 1 ? fs[0] : { type: 'and', filters: fs };
}

export function SearchPage(props: { collectionId?: string }) {
  const { list } = useCollections(30_000);
  const [collection, setCollection] = useState(props.collectionId ?? '');
  const [query, setQuery] = useState('');
  const [max, setMax] = useState(10);
  const [threshold, setThreshold] = useState(0);
  const [rows, setRows] = useState<FilterRow[]>([]);
  const [hits, setHits] = useState<{ query: string; data: SearchHit[]; ms: number } | null>(null);
  const [error, setError] = useState('');
  const [busy, setBusy] = useState(false);
  const chosen = collection || list?.[0]?.id || '';

  const submit = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setError('');
    const t0 = performance.now();
    try {
      const page = await call<{ data: SearchHit[] }>(
        'POST',
        `/v1/collections/${encodeURIComponent(chosen)}/search`,
        {
          query,
          max_num_results: max,
          ranking_options: { score_threshold: threshold },
          ...(filterOf(rows) ? { filters: filterOf(rows) } : {}),
        },
      );
      setHits({ query, data: page.data, ms: performance.now() - t0 });
    } catch (err) {
      setError(errorText(err));
      setHits(null);
    } finally {
      setBusy(false);
    }
  };
  const terms = hits ? queryTerms(hits.query) : [];

  return (
    <section aria-labelledby="search-h">
      <h1 id="search-h" tabIndex={-1}>
        Search
      </h1>
      <form class="card form-grid" onSubmit={submit}>
        <Field id="search-collection" label="Collection">
          <select
            id="search-collection"
            value={chosen}
            onChange={(e) => setCollection(e.currentTarget.value)}
          >
            {(list ?? []).map((c) => (
              <option key={c.id} value={c.id}>
                {c.name}
              </option>
            ))}
          </select>
        </Field>
        <Field id="search-query" label="Query" class="wide">
          <input
            id="search-query"
            type="search"
            required
            value={query}
            onInput={(e) => setQuery(e.currentTarget.value)}
          />
        </Field>
        <Field id="search-max" label="Results">
          <input
            id="search-max"
            type="number"
            min={1}
            max={50}
            value={max}
            onInput={(e) => setMax(Number(e.currentTarget.value))}
          />
        </Field>
        <Field id="search-threshold" label="Score threshold">
          <input
            id="search-threshold"
            type="number"
            min={0}
            max={1}
            step={0.01}
            value={threshold}
            onInput={(e) => setThreshold(Number(e.currentTarget.value))}
          />
        </Field>
        <fieldset class="full filters">
          <legend>Attribute filters (all must hold)</legend>
          {rows.map((r, i) => (
            <div class="filter-row" key={i}>
              <label>
                <span class="sr-only">Filter {i + 1} attribute</span>
                <input
                  placeholder="attribute"
                  value={r.key}
                  onInput={(e) =>
                    setRows(rows.map((x, j) => (j === i ? { ...x, key: e.currentTarget.value } : x)))
                  }
                />
              </label>
              <label>
                <span class="sr-only">Filter {i + 1} operator</span>
                <select
                  value={r.op}
                  onChange={(e) =>
                    setRows(
                      rows.map((x, j) =>
                        j === i ? { ...x, op: e.currentTarget.value as FilterRow['op'] } : x,
                      ),
                    )
                  }
                >
                  {OPS.map((o) => (
                    <option key={o} value={o}>
                      {o}
                    </option>
                  ))}
                </select>
              </label>
              <label>
                <span class="sr-only">Filter {i + 1} value</span>
                <input
                  placeholder="value"
                  value={r.value}
                  onInput={(e) =>
                    setRows(rows.map((x, j) => (j === i ? { ...x, value: e.currentTarget.value } : x)))
                  }
                />
              </label>
              <button type="button" class="ghost" onClick={() => setRows(rows.filter((_, j) => j !== i))}>
                Remove<span class="sr-only"> filter {i + 1}</span>
              </button>
            </div>
          ))}
          <button type="button" onClick={() => setRows([...rows, { key: '', op: 'eq', value: '' }])}>
            Add filter
          </button>
        </fieldset>
        <div class="field end">
          <button type="submit" class="primary" disabled={busy || !chosen}>
            {busy ? 'Searching…' : 'Search'}
          </button>
        </div>
      </form>
      <ErrorLine error={error} />
      {hits && (
        <section aria-labelledby="results-h" aria-live="polite">
          <h2 id="results-h">
            {hits.data.length} result{hits.data.length === 1 ? '' : 's'} for “{hits.query}”{' '}
            <span class="hint">({Math.round(hits.ms)} ms)</span>
          </h2>
          <ol class="hits">
            {hits.data.map((h) => (
              <li key={h.chunk_id} class="hit">
                <div class="hit-head">
                  <span class="filename">{h.filename}</span>
                  <span class="score">
                    <meter min={0} max={1} value={h.score} aria-label={`score of ${h.filename}`} />{' '}
                    {h.score.toFixed(3)}
                  </span>
                </div>
                {Object.keys(h.attributes).length > 0 && (
                  <p class="attrs">
                    {Object.entries(h.attributes).map(([k, v]) => (
                      <code key={k}>
                        {k}={String(v)}
                      </code>
                    ))}
                  </p>
                )}
                <p class="chunk-text">
                  <Highlight text={h.content.map((c) => c.text).join('\n')} terms={terms} />
                </p>
              </li>
            ))}
          </ol>
        </section>
      )}
    </section>
  );
}
