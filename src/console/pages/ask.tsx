// Ask: a question over chosen collections, answered as a stream. Numbered citations open the cited chunk;
// the plan and timings are drawn (parts/plan-picture.tsx); "same question with reuse off" asks again with
// every chunk prefilled live and shows the TTFT ratio measured here, now.
import type { Plan } from '../../planning/plan.ts';
import type { Citation } from '../../answer/services.ts';
import { useEffect, useRef, useState } from 'preact/hooks';
import { type ChunkObject, call, type QueryDone, streamQuery } from '../api.ts';
import { errorText } from '../shell.ts';
import { ms } from '../format.ts';
import { Bars } from '../parts/bars.tsx';
import { Dialog } from '../parts/dialog.tsx';
import { Highlight, queryTerms } from '../parts/highlight.tsx';
import { PlanDecisions, TierBytesPicture, TokensPicture, TtftPicture } from '../parts/plan-picture.tsx';
import { useCollections } from './collections.tsx';

const QUALITIES = ['balanced', 'fast', 'exact'] as const;
const REUSE = ['auto', 'independent', 'blend', 'link', 'prefix', 'full'] as const;

interface Run {
  body: Record<string, unknown>;
  text: string;
  /** token events received so far */
  tokens: number;
  citations: Citation[];
  plan?: Plan;
  done?: QueryDone;
  error?: string;
  /** ms, performance.now(): request sent, first token event here */
  sentAt: number;
  firstTokenAt?: number;
  streaming: boolean;
}

/** Streams one /v1/query into a Run, calling `update` with each new state. */
async function runQuery(body: Record<string, unknown>, update: (r: Run) => void, signal: AbortSignal) {
  let run: Run = { body, text: '', tokens: 0, citations: [], sentAt: performance.now(), streaming: true };
  const set = (p: Partial<Run>) => update((run = { ...run, ...p }));
  set({});
  try {
    await streamQuery(
      body,
      {
        plan: (plan) => set({ plan }),
        citations: (citations) => set({ citations }),
        token: (t) =>
          set({
            text: run.text + t,
            tokens: run.tokens + 1,
            firstTokenAt: run.firstTokenAt ?? performance.now(),
          }),
        done: (done) => set({ done, text: done.text }),
      },
      signal,
    );
    set({ streaming: false });
  } catch (e) {
    set({ streaming: false, error: errorText(e) });
  }
}

export function AskPage(props: { collectionId?: string }) {
  const { list } = useCollections(30_000);
  const [picked, setPicked] = useState<string[]>(props.collectionId ? [props.collectionId] : []);
  const [question, setQuestion] = useState('');
  const [quality, setQuality] = useState<(typeof QUALITIES)[number]>('balanced');
  const [reuse, setReuse] = useState<(typeof REUSE)[number]>('auto');
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
        <div class="field full">
          <label for="ask-question">Question</label>
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
        </div>
        <div class="field">
          <label for="ask-quality">Quality</label>
          <select
            id="ask-quality"
            value={quality}
            onChange={(e) => setQuality(e.currentTarget.value as typeof quality)}
          >
            {QUALITIES.map((q) => (
              <option key={q} value={q}>
                {q}
              </option>
            ))}
          </select>
        </div>
        <div class="field">
          <label for="ask-reuse">Reuse mode</label>
          <select
            id="ask-reuse"
            value={reuse}
            onChange={(e) => setReuse(e.currentTarget.value as typeof reuse)}
          >
            {REUSE.map((m) => (
              <option key={m} value={m}>
                {m === 'auto' ? 'auto (planner decides)' : m}
              </option>
            ))}
          </select>
        </div>
        <div class="field">
          <label for="ask-max">Max tokens</label>
          <input
            id="ask-max"
            type="number"
            min={1}
            max={4096}
            value={maxTokens}
            onInput={(e) => setMaxTokens(Number(e.currentTarget.value))}
          />
        </div>
        <div class="field">
          <label for="ask-k">Chunks per collection (k)</label>
          <input
            id="ask-k"
            type="number"
            min={1}
            max={50}
            placeholder="planner"
            value={k}
            onInput={(e) => setK(e.currentTarget.value)}
          />
        </div>
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
      {run.error && (
        <p class="error" role="alert">
          {run.error}
        </p>
      )}
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
          <Compare run={run} compare={props.compare} onCompare={props.onCompare} />
        </section>
      )}
    </section>
  );
}

/** TTFT after retrieval (ms): what the reuse mode changes (the split's parts but retrieval). */
function afterRetrieval(d: QueryDone): number {
  return d.ttft_split_ms ? d.timings.ttft_ms - d.ttft_split_ms.retrieval : d.timings.ttft_ms;
}

function Compare(props: { run: Run; compare: Run | null; onCompare: () => void }) {
  const a = props.run.done!;
  const b = props.compare?.done;
  const mode = a.plan.generation.reuse.mode;
  const ratio = b ? afterRetrieval(b) / afterRetrieval(a) : null;
  const browser = (r: Run) => (r.firstTokenAt !== undefined ? r.firstTokenAt - r.sentAt : null);
  return (
    <div class="compare">
      <button
        type="button"
        onClick={props.onCompare}
        disabled={props.compare?.streaming || mode === 'full'}
        aria-describedby="compare-hint"
      >
        Same question with reuse off
      </button>
      <p id="compare-hint" class="hint">
        {mode === 'full'
          ? 'This answer already ran without reuse.'
          : 'Asks again in full mode: every chunk is prefilled live instead of loaded from its stored KV.'}
      </p>
      {props.compare?.error && (
        <p class="error" role="alert">
          {props.compare.error}
        </p>
      )}
      {b && ratio !== null && (
        <div data-testid="ttft-compare">
          <Bars
            id="compare"
            label={`Time to first token after retrieval: reuse off takes ${ratio.toFixed(2)}× as long as ${mode}`}
            parts={[
              {
                key: 'planned',
                label: `${mode}${a.cached ? ' (cached)' : ''}`,
                value: afterRetrieval(a),
                text: ms(afterRetrieval(a)),
                color: 2,
              },
              {
                key: 'full',
                label: `full${b.cached ? ' (cached)' : ''}`,
                value: afterRetrieval(b),
                text: ms(afterRetrieval(b)),
                color: 6,
              },
            ]}
          />
          <p class="hint">
            Measured by the server, without the retrieval both share. With it: {ms(a.timings.ttft_ms)} vs{' '}
            {ms(b.timings.ttft_ms)}
            {browser(props.run) !== null && browser(props.compare!) !== null
              ? `; in this browser ${ms(browser(props.run))} vs ${ms(browser(props.compare!))}`
              : ''}
            .
            {a.cached || b.cached
              ? ' An answer from the answer cache ran no prefill: ask a new question to compare.'
              : ''}
          </p>
        </div>
      )}
    </div>
  );
}

function ChunkDialog(props: { citation: Citation; terms: string[]; onClose: () => void }) {
  const [chunk, setChunk] = useState<ChunkObject | null>(null);
  const [error, setError] = useState('');
  const c = props.citation;
  useEffect(() => {
    call<ChunkObject>('GET', `/v1/chunks/${encodeURIComponent(c.chunk_id)}`)
      .then(setChunk)
      .catch((e) => setError(errorText(e)));
  }, [c.chunk_id]);
  return (
    <Dialog title={`[${c.n}] ${c.filename}`} onClose={props.onClose} wide>
      <p class="hint">
        chunk {c.ordinal}
        {chunk ? ` · ${chunk.token_count} tokens` : ''} · score {c.score.toFixed(3)}
      </p>
      {error && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
      {chunk ? (
        <p class="chunk-text" data-chunk-id={chunk.id}>
          <Highlight text={chunk.text} terms={props.terms} />
        </p>
      ) : (
        !error && <p>Loading…</p>
      )}
    </Dialog>
  );
}
