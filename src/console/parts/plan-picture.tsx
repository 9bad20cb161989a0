// An answer's plan and timings as pictures: the planner's choices (chunks, reuse mode, squeezed attention,
// sparse prefill) with its reasons; where the time to first token went (retrieval, queue, artifact load,
// re-rotation, recompute, squeeze, question prefill, the rest); cached vs recomputed prompt tokens; and
// the KV bytes read from each artifact tier.
import type { QueryDone, TtftPart } from '../api.ts';
import { bytes, ms, percent } from '../format.ts';
import { Bars, type Part, StackedBar } from './bars.tsx';

const TTFT_PARTS: { key: TtftPart; label: string }[] = [
  { key: 'retrieval', label: 'retrieval' },
  { key: 'queue', label: 'runner queue' },
  { key: 'load', label: 'artifact load' },
  { key: 'rotate', label: 're-rotation' },
  { key: 'recompute', label: 'recompute' },
  { key: 'squeeze', label: 'squeeze' },
  { key: 'prefill', label: 'question prefill' },
  { key: 'other', label: 'other' },
];
const TIERS = ['engine', 'host', 'disk', 'object'];

function Decision(props: { title: string; value: string; why?: string; detail?: string }) {
  return (
    <div class="decision">
      <dt>{props.title}</dt>
      <dd>
        <strong>{props.value}</strong>
        {props.detail && <span class="detail"> · {props.detail}</span>}
        {props.why && <span class="why">{props.why}</span>}
      </dd>
    </div>
  );
}

export function PlanDecisions(props: { done: QueryDone; chunks: number }) {
  const g = props.done.plan.generation;
  const why = g.why;
  const r = props.done.reuse;
  const sq = g.squeezed;
  const sp = g.sparse;
  return (
    <dl class="decisions">
      <Decision
        title="Chunks (k)"
        value={`${props.chunks} in the prompt`}
        detail={`${props.done.plan.retrieval.steps.map((s) => `k ${s.k}`).join(', ')} asked per step`}
        why={why?.k}
      />
      <Decision
        title="Reuse mode"
        value={g.reuse.mode}
        detail={
          g.reuse.blendRatio !== undefined
            ? `recompute ratio ${g.reuse.blendRatio}`
            : g.reuse.linkTokens !== undefined
              ? `${g.reuse.linkTokens} link tokens`
              : undefined
        }
        why={why?.reuse}
      />
      <Decision
        title="Squeezed attention"
        value={
          sq.mode === 'budget'
            ? `budget ${percent(sq.budget, 1)} of keys`
            : sq.mode === 'off'
              ? 'off (dense)'
              : sq.mode
        }
        detail={
          r.squeezed?.fraction !== undefined
            ? `attended ${percent(r.squeezed.fraction, 1)} of fixed keys`
            : r.squeezed?.note
        }
        why={why?.squeezed}
      />
      <Decision
        title="Sparse prefill"
        value={sp.mode === 'pattern' ? sp.pattern : sp.mode === 'off' ? 'off (dense)' : sp.mode}
        detail={
          r.sparse?.density !== undefined
            ? `${r.sparse.pattern}, density ${percent(r.sparse.density, 1)}`
            : r.sparse?.note
        }
        why={why?.sparse}
      />
    </dl>
  );
}

export function TtftPicture(props: { done: QueryDone }) {
  const split = props.done.ttft_split_ms;
  if (!split)
    return (
      <p class="note" data-testid="ttft-cached">
        Answered from the answer cache in {ms(props.done.timings.ttft_ms)}: no prefill ran, so there is no
        split.
      </p>
    );
  const parts: Part[] = TTFT_PARTS.map((p, i) => ({
    key: p.key,
    label: p.label,
    value: split[p.key],
    text: ms(split[p.key]),
    color: i,
  })).filter((p) => p.value > 0 || ['retrieval', 'load', 'rotate', 'prefill'].includes(p.key));
  return (
    <StackedBar id="ttft" label={`Time to first token: ${ms(props.done.timings.ttft_ms)}`} parts={parts} />
  );
}

export function TokensPicture(props: { done: QueryDone }) {
  const r = props.done.reuse;
  const prompt = props.done.usage.prompt_tokens;
  return (
    <StackedBar
      id="tokens"
      label={`Prompt tokens: ${prompt} (${percent(prompt > 0 ? r.cached_tokens / prompt : 0)} from stored KV)`}
      parts={[
        {
          key: 'cached',
          label: 'cached (from artifacts)',
          value: r.cached_tokens,
          text: `${r.cached_tokens}`,
          color: 2,
        },
        {
          key: 'computed',
          label: 'computed live',
          value: r.prefill_tokens,
          text: `${r.prefill_tokens}`,
          color: 6,
        },
      ]}
    />
  );
}

export function TierBytesPicture(props: { done: QueryDone }) {
  const loaded = props.done.reuse.bytes_loaded;
  const tiers = [...TIERS, ...Object.keys(loaded).filter((t) => !TIERS.includes(t))];
  const total = Object.values(loaded).reduce((a, b) => a + b, 0);
  return (
    <Bars
      id="tiers"
      label={`KV bytes read per tier: ${bytes(total)}`}
      parts={tiers.map((t, i) => ({
        key: t,
        label: t,
        value: loaded[t] ?? 0,
        text: bytes(loaded[t] ?? 0),
        color: 2 + (i % 2),
      }))}
    />
  );
}
