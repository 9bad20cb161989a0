// "Same question with reuse off": the planned answer's TTFT after retrieval beside the same question's in
// full mode (every chunk prefilled live), and their ratio, as the server measured them (and this browser).
import type { QueryDone } from '../api.ts';
import { ms } from '../format.ts';
import { Bars } from './bars.tsx';
import type { Run } from './query-run.ts';
import { ErrorLine } from './form-bits.tsx';

/** TTFT after retrieval (ms): what the reuse mode changes (the split's parts but retrieval). */
function afterRetrieval(d: QueryDone): number {
  return d.ttft_split_ms ? d.timings.ttft_ms - d.ttft_split_ms.retrieval : d.timings.ttft_ms;
}

export function ReuseOffCompare(props: { run: Run; compare: Run | null; onCompare: () => void }) {
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
      <ErrorLine error={props.compare?.error} />
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
