// A collection's documents: drop or choose files (each upload with its own progress bar), then watch each
// document move through ingestion live (the list is re-read every second while any is in progress),
// with its chunk count and stored artifact bytes; filter by status; delete after confirmation.
import { useState } from 'preact/hooks';
import {
  type CollectionObject,
  call,
  DOCUMENT_STATUSES,
  type DocumentObject,
  type DocumentStatus,
  type Page,
} from '../api.ts';
import { errorText, useShell } from '../shell.ts';
import { bytes, when } from '../format.ts';
import { DataTable, Loaded } from '../parts/data-table.tsx';
import { Confirm } from '../parts/dialog.tsx';
import { DangerButton, ErrorLine, Field, Select } from '../parts/form-bits.tsx';
import { StatusSteps } from '../parts/status.tsx';
import { UploadZone } from '../parts/upload-zone.tsx';
import { usePoll } from '../parts/use-poll.ts';

const SETTLED: readonly DocumentStatus[] = ['ready', 'failed'];
/** The status filter's choices: '' is all. */
const FILTERS: readonly (DocumentStatus | '')[] = ['', ...DOCUMENT_STATUSES];

export function DocumentsPage(props: { collectionId: string }) {
  const id = props.collectionId;
  const { announce } = useShell();
  const [collection, setCollection] = useState<CollectionObject | null>(null);
  const [docs, setDocs] = useState<Page<DocumentObject> | null>(null);
  const [filter, setFilter] = useState<DocumentStatus | ''>('');
  const [error, setError] = useState('');
  const [deleting, setDeleting] = useState<DocumentObject | null>(null);
  const busy = docs?.data.some((d) => !SETTLED.includes(d.status)) ?? true;

  const reload = usePoll(
    async () => {
      try {
        const q = `limit=100${filter ? `&status=${filter}` : ''}`;
        const [c, page] = await Promise.all([
          call<CollectionObject>('GET', `/v1/collections/${encodeURIComponent(id)}`),
          call<Page<DocumentObject>>('GET', `/v1/collections/${encodeURIComponent(id)}/documents?${q}`),
        ]);
        setCollection(c);
        setDocs(page);
        setError('');
      } catch (e) {
        setError(errorText(e));
      }
    },
    // live while something is in progress; a slow heartbeat otherwise (another tab may upload)
    busy ? 1000 : 5000,
  );

  return (
    <section aria-labelledby="documents-h">
      <p class="crumbs">
        <a href="#/collections">Collections</a> /
      </p>
      <h1 id="documents-h" tabIndex={-1}>
        {collection ? collection.name : 'Documents'}
      </h1>
      {collection && (
        <p class="hint">
          {collection.embedding.provider} embeddings ({collection.embedding.dimension}), chunks of{' '}
          {collection.chunking.size} tokens with {collection.chunking.overlap} overlap ·{' '}
          <a href={`#/ask/${id}`}>Ask this collection</a> · <a href={`#/search/${id}`}>Search it</a>
        </p>
      )}
      <ErrorLine error={error} />
      <UploadZone
        collectionId={id}
        onUploaded={async (doc, status) => {
          announce(
            status === 201
              ? `${doc.filename} uploaded, queued for ingestion.`
              : `${doc.filename} was already here.`,
          );
          await reload();
        }}
      />
      <div class="row between">
        <h2>Documents</h2>
        <Field id="doc-filter" label="Status" class="inline">
          <Select
            id="doc-filter"
            value={filter}
            options={FILTERS}
            text={(s) => s || 'all'}
            onChange={(s) => {
              setFilter(s);
              setDocs(null);
            }}
          />
        </Field>
      </div>
      <Loaded
        rows={docs?.data ?? null}
        empty={filter ? `No ${filter} documents.` : 'No documents yet: drop files above.'}
      >
        {(rows) => (
          <DataTable
            class="documents"
            caption={`Documents${filter ? ` with status ${filter}` : ''}, newest first${busy ? ', updating live' : ''}`}
            hiddenCaption
            rows={rows}
            rowKey={(d) => d.id}
            rowAttrs={(d) => ({ 'data-status': d.status })}
            header={{ head: 'File', class: 'filename', cell: (d) => d.filename }}
            columns={[
              {
                head: 'Status',
                cell: (d) => <StatusSteps status={d.status} error={d.last_error?.message} />,
              },
              { head: 'Chunks', num: true, cell: (d) => d.chunk_count },
              { head: 'Artifacts', num: true, cell: (d) => bytes(d.artifact_bytes) },
              { head: 'Size', num: true, cell: (d) => bytes(d.bytes) },
              { head: 'Updated', cell: (d) => when(d.updated_at) },
            ]}
            actions={(d) => <DangerButton label={`Delete ${d.filename}`} onClick={() => setDeleting(d)} />}
          >
            {docs?.has_more && <p class="hint">Showing the newest 100; filter by status to narrow.</p>}
          </DataTable>
        )}
      </Loaded>
      {deleting && (
        <Confirm
          title={`Delete ${deleting.filename}?`}
          confirmLabel="Delete document"
          onClose={() => setDeleting(null)}
          onConfirm={async () => {
            try {
              await call('DELETE', `/v1/collections/${encodeURIComponent(id)}/documents/${deleting.id}`);
              announce(`${deleting.filename} deleted.`);
            } catch (e) {
              announce(`Could not delete ${deleting.filename}: ${errorText(e)}`);
            }
            await reload();
          }}
        >
          <p>
            Its {deleting.chunk_count} chunks leave search at once; their KV artifacts are collected
            afterwards.
          </p>
        </Confirm>
      )}
    </section>
  );
}
