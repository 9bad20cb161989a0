// Collections: the tenant's list (documents per status), create one (embedding provider and size,
// chunking), delete one after confirmation. Opening a collection goes to its documents.
import { useState } from 'preact/hooks';
import type { z } from 'zod';
import type { SupportedDimension } from '../../db/schema.ts';
import type { embeddingChoiceSchema } from '../../routes/collections.ts';
import { type CollectionObject, call, type Page } from '../api.ts';
import { errorText, useShell } from '../shell.ts';
import { when } from '../format.ts';
import { DataTable, Loaded } from '../parts/data-table.tsx';
import { Confirm } from '../parts/dialog.tsx';
import { DangerButton, ErrorLine, Field, Select } from '../parts/form-bits.tsx';
import { usePoll } from '../parts/use-poll.ts';

type Provider = z.output<typeof embeddingChoiceSchema>['provider'];
// keyed by the API's own lists (types only), so tsc fails here when one gains a member
const PROVIDER_SET: Record<Provider, true> = { hash: true, openai: true, 'workers-ai': true };
const DIMENSION_SET: Record<SupportedDimension, true> = {
  256: true,
  384: true,
  512: true,
  768: true,
  1024: true,
  1536: true,
};
const PROVIDERS = Object.keys(PROVIDER_SET) as Provider[];
const DIMENSIONS = Object.keys(DIMENSION_SET).map(Number);

/** The tenant's collections (first 100), refreshed every few seconds while shown. */
export function useCollections(everyMs = 5000) {
  const [list, setList] = useState<CollectionObject[] | null>(null);
  const [error, setError] = useState('');
  const reload = usePoll(async () => {
    try {
      setList((await call<Page<CollectionObject>>('GET', '/v1/collections?limit=100')).data);
      setError('');
    } catch (e) {
      setError(errorText(e));
    }
  }, everyMs);
  return { list, error, reload };
}

export function CollectionsPage() {
  const { list, error, reload } = useCollections();
  const { announce } = useShell();
  const [deleting, setDeleting] = useState<CollectionObject | null>(null);
  return (
    <section aria-labelledby="collections-h">
      <h1 id="collections-h" tabIndex={-1}>
        Collections
      </h1>
      <CreateCollection
        onCreated={async (c) => {
          announce(`Collection ${c.name} created.`);
          await reload();
          location.hash = `#/documents/${c.id}`;
        }}
      />
      <h2>Your collections</h2>
      <ErrorLine error={error} />
      <Loaded rows={list} empty="No collections yet: create one above.">
        {(rows) => (
          <DataTable
            rows={rows}
            rowKey={(c) => c.id}
            header={{ head: 'Name', cell: (c) => <a href={`#/documents/${c.id}`}>{c.name}</a> }}
            columns={[
              { head: 'Embedding', cell: (c) => `${c.embedding.provider} · ${c.embedding.dimension}` },
              { head: 'Chunking', cell: (c) => `${c.chunking.size} / ${c.chunking.overlap} overlap` },
              {
                head: 'Documents',
                cell: (c) =>
                  `${c.document_counts.ready} ready of ${c.document_counts.total}` +
                  (c.document_counts.failed > 0 ? `, ${c.document_counts.failed} failed` : ''),
              },
              { head: 'Created', cell: (c) => when(c.created_at) },
            ]}
            actions={(c) => (
              <DangerButton label={`Delete collection ${c.name}`} onClick={() => setDeleting(c)} />
            )}
          />
        )}
      </Loaded>
      {deleting && (
        <Confirm
          title={`Delete collection ${deleting.name}?`}
          confirmLabel="Delete collection"
          onClose={() => setDeleting(null)}
          onConfirm={async () => {
            try {
              await call('DELETE', `/v1/collections/${deleting.id}`);
              announce(`Collection ${deleting.name} deleted.`);
            } catch (e) {
              announce(`Could not delete ${deleting.name}: ${errorText(e)}`);
            }
            await reload();
          }}
        >
          <p>
            Its {deleting.document_counts.total} documents, their chunks and stored KV artifacts go with it.
            This cannot be undone.
          </p>
        </Confirm>
      )}
    </section>
  );
}

function CreateCollection(props: { onCreated: (c: CollectionObject) => Promise<void> }) {
  const [name, setName] = useState('');
  const [provider, setProvider] = useState<Provider>('hash');
  const [dimension, setDimension] = useState(384);
  const [size, setSize] = useState(512);
  const [overlap, setOverlap] = useState(64);
  const [error, setError] = useState('');
  const [busy, setBusy] = useState(false);
  const submit = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setError('');
    try {
      const c = await call<CollectionObject>('POST', '/v1/collections', {
        name: name.trim(),
        embedding: { provider, dimension },
        chunking: { size, overlap },
      });
      setName('');
      await props.onCreated(c);
    } catch (err) {
      setError(errorText(err));
    } finally {
      setBusy(false);
    }
  };
  return (
    <form class="card form-grid" onSubmit={submit} aria-labelledby="create-collection-h">
      <h2 id="create-collection-h">New collection</h2>
      <Field id="col-name" label="Name">
        <input
          id="col-name"
          required
          maxLength={200}
          value={name}
          onInput={(e) => setName(e.currentTarget.value)}
        />
      </Field>
      <Field id="col-provider" label="Embedding provider">
        <Select id="col-provider" value={provider} options={PROVIDERS} onChange={setProvider} />
      </Field>
      <Field id="col-dim" label="Dimension">
        <Select id="col-dim" value={dimension} options={DIMENSIONS} onChange={setDimension} />
      </Field>
      <Field id="col-size" label="Chunk size (tokens)">
        <input
          id="col-size"
          type="number"
          min={1}
          required
          value={size}
          onInput={(e) => setSize(Number(e.currentTarget.value))}
        />
      </Field>
      <Field id="col-overlap" label="Overlap (tokens)">
        <input
          id="col-overlap"
          type="number"
          min={0}
          required
          value={overlap}
          onInput={(e) => setOverlap(Number(e.currentTarget.value))}
        />
      </Field>
      <div class="field end">
        <button type="submit" class="primary" disabled={busy}>
          {busy ? 'Creating…' : 'Create collection'}
        </button>
      </div>
      <ErrorLine error={error} full />
    </form>
  );
}
