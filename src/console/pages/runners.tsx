// Runners, live: each runner's models, load, KV memory and, per artifact tier, occupancy and hit rate
// (GET /v1/runners, from each runner's own /metrics and its registry heartbeat), re-read every 2 s.
import { useState } from 'preact/hooks';
import { call, type RunnerObject } from '../api.ts';
import type { Role } from '../shell.ts';
import { errorText } from '../shell.ts';
import { bytes, ms, percent } from '../format.ts';
import { usePoll } from '../parts/use-poll.ts';
import { DataTable } from '../parts/data-table.tsx';
import { ErrorLine } from '../parts/form-bits.tsx';

export function RunnersPage(props: { role: Role }) {
  const [runners, setRunners] = useState<RunnerObject[] | null>(null);
  const [error, setError] = useState('');
  const [live, setLive] = useState(true);
  const [at, setAt] = useState<Date | null>(null);
  usePoll(
    async () => {
      try {
        setRunners((await call<{ data: RunnerObject[] }>('GET', '/v1/runners')).data);
        setAt(new Date());
        setError('');
      } catch (e) {
        setError(errorText(e));
      }
    },
    2000,
    live,
  );
  return (
    <section aria-labelledby="runners-h">
      <h1 id="runners-h" tabIndex={-1}>
        Runners
      </h1>
      <div class="row between">
        <p class="hint">
          {at ? `Updated ${at.toLocaleTimeString()}` : 'Loading…'}
          {props.role === 'admin' ? '' : ' · runner addresses are shown to the admin key only'}
        </p>
        <label class="check">
          <input type="checkbox" checked={live} onChange={(e) => setLive(e.currentTarget.checked)} /> Refresh
          every 2 s
        </label>
      </div>
      <ErrorLine error={error} />
      {runners?.length === 0 && <p>No runner is live.</p>}
      <div class="runners">
        {(runners ?? []).map((r) => (
          <RunnerCard key={r.id} runner={r} />
        ))}
      </div>
    </section>
  );
}

function Meter(props: { label: string; value: number; max: number | null; text: string }) {
  return (
    <div class="meter-row">
      <span class="meter-label">{props.label}</span>
      {props.max !== null && props.max > 0 ? (
        <meter min={0} max={props.max} value={props.value} aria-label={props.label} />
      ) : (
        <span class="meter-none">unbounded</span>
      )}
      <span class="meter-value">{props.text}</span>
    </div>
  );
}

function RunnerCard(props: { runner: RunnerObject }) {
  const r = props.runner;
  const m = r.metrics;
  return (
    <article class="card runner" aria-labelledby={`runner-${r.id}`}>
      <h2 id={`runner-${r.id}`}>{r.id}</h2>
      {r.url && <p class="hint">{r.url}</p>}
      <p>
        Serves{' '}
        {r.models.map((x) => (
          <span key={x.fingerprint} class="model" title={x.fingerprint}>
            {x.id ?? `${x.fingerprint.slice(0, 12)}…`}
          </span>
        ))}
      </p>
      <ErrorLine error={r.metrics_error} />
      <dl class="facts">
        <div>
          <dt>Load</dt>
          <dd>
            {m ? `${m.running} running, ${m.waiting} waiting` : `${r.load} requests`}
            {r.heartbeat ? ` (max ${r.heartbeat.max_running}; heartbeat ${ms(r.heartbeat.age_ms)} ago)` : ''}
          </dd>
        </div>
        {m && (
          <>
            <div>
              <dt>Tokens/s</dt>
              <dd>{m.tokens_per_second.toFixed(1)}</dd>
            </div>
            <div>
              <dt>Requests</dt>
              <dd>
                {m.requests} · mean TTFT {ms(m.mean_ttft_ms)}
              </dd>
            </div>
            <div>
              <dt>Prompt tokens from stored KV</dt>
              <dd>{percent(m.prompt_tokens > 0 ? m.cached_tokens / m.prompt_tokens : null)}</dd>
            </div>
          </>
        )}
      </dl>
      {m && (
        <>
          <Meter
            label="Sequence KV memory"
            value={m.kv_bytes_in_use}
            max={m.kv_bytes_capacity}
            text={`${bytes(m.kv_bytes_in_use)} of ${bytes(m.kv_bytes_capacity)}`}
          />
          <DataTable
            class="tiers"
            caption="Artifact tiers"
            rows={m.tiers}
            rowKey={(t) => t.name}
            rowAttrs={(t) => ({ 'data-tier': t.name })}
            header={{ head: 'Tier', cell: (t) => t.name }}
            columns={[
              {
                head: 'Occupancy',
                cell: (t) => (
                  <Meter
                    label={`${t.name} tier occupancy`}
                    value={t.resident_bytes}
                    max={t.capacity_bytes}
                    text={
                      t.capacity_bytes
                        ? `${bytes(t.resident_bytes)} of ${bytes(t.capacity_bytes)}`
                        : bytes(t.resident_bytes)
                    }
                  />
                ),
              },
              { head: 'Hits', num: true, cell: (t) => t.hits },
              { head: 'Misses', num: true, cell: (t) => t.misses },
              { head: 'Hit rate', num: true, cell: (t) => percent(t.hit_rate) },
            ]}
          />
        </>
      )}
    </article>
  );
}
