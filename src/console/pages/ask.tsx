// Ask: a question over chosen collections, answered as a stream (parts/query-run.ts). Numbered citations
// open the cited chunk (parts/chunk-dialog.tsx); the plan and timings are drawn (parts/plan-picture.tsx);
// "same question with reuse off" asks again with every chunk prefilled live and shows the TTFT ratio
// measured here, now (parts/reuse-compare.tsx).
import { useRef, useState } from 'preact/hooks';
import type { Citation } from '../../answer/services.ts';
import type { REUSE_MODES } from '../../../contracts/reuse.ts';
import type { QUALITY } from '../../planning/plan.ts';
import { ms } from '../format.ts';
import { ChunkDialog } from '../parts/chunk-dialog.tsx';
import { queryTerms } from '../parts/highlight.tsx';
import { PlanDecisions, TierBytesPicture, TokensPicture, TtftPicture } from '../parts/plan-picture.tsx';
import { type Run, runQuery } from '../parts/query-run.ts';
import { ReuseOffCompare } from '../parts/reuse-compare.tsx';
import { useCollections } from './collections.tsx';
import { ErrorLine, Field, Select } from '../parts/form-bits.tsx';

type Quality = (typeof QUALITY)[number];
type ReuseChoice = (typeof REUSE_MODES)[number] | 'auto';
// keyed by the API's own lists (types only), so tsc fails here when one gains a member; in menu order
const QUALITY_SET: Record<Quality, true> = { balanced: true, fast: true, exact: true };
const REUSE_SET: Record<ReuseChoice, true> = {
  auto: true,
  independent: true,
  blend: true,
  link: true,
  prefix: true,
  full: true,
};
const QUALITIES = Object.keys(QUALITY_SET) as Quality[];
const REUSE = Object.keys(REUSE_SET) as ReuseChoice[];

export function AskPage(props: { collectionId?: string }) {
  const { list } = useCollections(30_000);
  const [picked, setPicked] = useState<string[]>(props.collectionId ? [props.collectionId] : []);
  const [question, setQuestion] = useState('');
  const [quality, setQuality] = useState<Quality>('balanced');
  const [reuse, setReuse] = useState<ReuseChoice>('auto');
  const [maxTokens, setMaxTokens] = useState(32);
  const [k, setK] = useState('');
  const [run, setRun] = useState<Run | null>(null);
  const [compare, setCompare] = useState<Run | null>(null);
  const [chunk, setChunk] = useState<Citation | null>(null);
  const abort = useRef<AbortController | null>(null);
  const chosen = picked.length > 0 ? picked : list?.[0] ? [list[0].id] : [];

  const ask = (e: Event) => {
    e.preventDefault();
    abort.current?.abort();
    abort.current = new AbortController();
    setCompare(null);
    void runQuery(
      {
        question,
        collection_ids: chosen,
        quality,
        ...(reuse !== 'auto' ? { reuse } : {}),
        max_tokens: maxTokens,
        ...(k.trim() ? { k: Number(k) } : {}),
      },
      setRun,
      abort.current.signal,
    );
  };
  const withoutReuse = () => {
    if (!run) return;
    abort.current = new AbortController();
    void runQuery({ ...run.body, reuse: 'full' }, setCompare, abort.current.signal);
  };

  return (
    <section aria-labelledby="ask-h">
      <h1 id="ask-h" tabIndex={-1}>
        Ask
      </h1>
      <form class="card form-grid" onSubmit={ask}>
        <fieldset class="full collections-pick">
          <legend>Collections</legend>
          {(list ?? []).length === 0 && <p>No collections yet.</p>}
          {(list ?? []).map((c) => (
            <label key={c.id} class="check">
              <input
                type="checkbox"
                checked={chosen.includes(c.id)}
                onChange={(e) =>
                  setPicked(e.currentTarget.checked ? [...chosen, c.id] : chosen.filter((x) => x !== c.id))
                }
              />{' '}
              {c.name}
            </label>
          ))}
        </fieldset>
        <Field id="ask-question" label="Question" class="full">
          <textarea
            id="ask-question"
            required
            rows={2}
            value={question}
            onInput={(e) => setQuestion(e.currentTarget.value)}
            onKeyDown={(e) => {
              if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) e.currentTarget.form?.requestSubmit();
            }}
          />
        </Field>
        <Field id="ask-quality" label="Quality">
          <Select id="ask-quality" value={quality} options={QUALITIES} onChange={setQuality} />
        </Field>
        <Field id="ask-reuse" label="Reuse mode">
          <Select
            id="ask-reuse"
            value={reuse}
            options={REUSE}
            onChange={setReuse}
            text={(m) => (m === 'auto' ? 'auto (planner decides)' : m)}
          />
        </Field>
        <Field id="ask-max" label="Max tokens">
          <input
            id="ask-max"
            type="number"
            min={1}
            max={4096}
            value={maxTokens}
            onInput={(e) => setMaxTokens(Number(e.currentTarget.value))}
          />
        </Field>
        <Field id="ask-k" label="Chunks per collection (k)">
          <input
            id="ask-k"
            type="number"
            min={1}
            max={50}
            placeholder="planner"
            value={k}
            onInput={(e) => setK(e.currentTarget.value)}
          />
        </Field>
        <div class="field end">
          <button type="submit" class="primary" disabled={chosen.length === 0 || run?.streaming}>
            {run?.streaming ? 'Answering…' : 'Ask'}
          </button>
        </div>
      </form>
      {run && (
        <Answer
          run={run}
          question={String(run.body.question)}
          onOpen={setChunk}
          compare={compare}
          onCompare={withoutReuse}
        />
      )}
      {chunk && (
        <ChunkDialog
          citation={chunk}
          terms={queryTerms(String(run?.body.question ?? ''))}
          onClose={() => setChunk(null)}
        />
      )}
    </section>
  );
}

/** The answer's text with its [n] markers as buttons that open source n. */
function AnswerText(props: { text: string; citations: Citation[]; onOpen: (c: Citation) => void }) {
  const parts = props.text.split(/(\[\d{1,3}\])/);
  return (
    <>
      {parts.map((p, i) => {
        const c = /^\[(\d+)\]$/.exec(p) && props.citations.find((x) => `[${x.n}]` === p);
        return c ? (
          <button key={i} type="button" class="cite-inline" onClick={() => props.onOpen(c)}>
            {p}
          </button>
        ) : (
          p
        );
      })}
    </>
  );
}

function Answer(props: {
  run: Run;
  question: string;
  onOpen: (c: Citation) => void;
  compare: Run | null;
  onCompare: () => void;
}) {
  const { run } = props;
  const d = run.done;
  return (
    <section class="answer" aria-labelledby="answer-h">
      <h2 id="answer-h">Answer</h2>
      <ErrorLine error={run.error} />
      <p
        class="answer-text"
        aria-busy={run.streaming}
        data-tokens={run.tokens}
        data-streaming={run.streaming}
      >
        <AnswerText text={run.text} citations={run.citations} onOpen={props.onOpen} />
        {run.streaming && <span class="cursor" aria-hidden="true" />}
      </p>
      <p class="hint" role="status">
        {run.streaming
          ? `Streaming… ${run.tokens} tokens`
          : d
            ? `${run.tokens} tokens streamed · first token after ${ms(d.timings.ttft_ms)} · done in ${ms(d.timings.total_ms)}${d.cached ? ' · from the answer cache' : ''}`
            : ''}
      </p>
      {run.citations.length > 0 && (
        <>
          <h3>Sources</h3>
          <ol class="citations">
            {run.citations.map((c) => (
              <li key={c.n}>
                <button type="button" class="cite" onClick={() => props.onOpen(c)}>
                  <span class="cite-n">[{c.n}]</span> {c.filename}
                  <span class="hint">
                    &nbsp;· chunk {c.ordinal} · score {c.score.toFixed(3)}
                    {d?.cited.includes(c.n) ? ' · cited' : ''}
                  </span>
                </button>
              </li>
            ))}
          </ol>
        </>
      )}
      {d && (
        <section class="plan" aria-labelledby="plan-h">
          <h3 id="plan-h">Plan and timings</h3>
          <PlanDecisions done={d} chunks={run.citations.length} />
          <div class="pictures">
            <TtftPicture done={d} />
            <TokensPicture done={d} />
            <TierBytesPicture done={d} />
          </div>
          <ReuseOffCompare run={run} compare={props.compare} onCompare={props.onCompare} />
        </section>
      )}
    </section>
  );
}
