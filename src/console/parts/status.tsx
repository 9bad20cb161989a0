// Where a document stands in ingestion, as a labelled step list: queued → parsing → chunking → embedding
// → precomputing → ready, or failed with the reason. Colour is never the only signal: the step is named.
import { DOCUMENT_STATUSES, type DocumentStatus } from '../api.ts';

const STEPS = DOCUMENT_STATUSES.filter((s) => s !== 'failed');

export function StatusSteps(props: { status: DocumentStatus; error?: string | null }) {
  if (props.status === 'failed')
    return (
      <span class="status failed">
        <span class="badge">failed</span> {props.error ?? 'no reason recorded'}
      </span>
    );
  // ready: every step done
  const at = props.status === 'ready' ? STEPS.length : STEPS.indexOf(props.status);
  return (
    <span class={`status ${props.status === 'ready' ? 'ready' : 'working'}`}>
      <span class="badge">{props.status}</span>
      <span class="steps" aria-hidden="true">
        {STEPS.map((s, i) => (
          <span key={s} class={i < at ? 'step done' : i === at ? 'step now' : 'step'} title={s} />
        ))}
      </span>
      {props.status !== 'ready' && (
        <span class="sr-only">
          step {at + 1} of {STEPS.length}
        </span>
      )}
    </span>
  );
}
