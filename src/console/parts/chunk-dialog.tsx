// A cited chunk in a dialog: its text (GET /v1/chunks/:chunk) with the question's terms marked.
import { useEffect, useState } from 'preact/hooks';
import type { Citation } from '../../answer/services.ts';
import { type ChunkObject, call } from '../api.ts';
import { errorText } from '../shell.ts';
import { Dialog } from './dialog.tsx';
import { Highlight } from './highlight.tsx';
import { ErrorLine } from './form-bits.tsx';

export function ChunkDialog(props: { citation: Citation; terms: string[]; onClose: () => void }) {
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
      <ErrorLine error={error} />
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
