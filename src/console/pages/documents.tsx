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
import { Confirm } from '../parts/dialog.tsx';
import { StatusSteps } from '../parts/status.tsx';
import { UploadZone } from '../parts/upload-zone.tsx';
import { usePoll } from '../parts/use-poll.ts';

const SETTLED: readonly DocumentStatus[] = ['ready', 'failed'];

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
      {error && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
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
        <div class="field inline">
          <label for="doc-filter">Status</label>
          <select
            id="doc-filter"
            value={filter}
            onChange={(e) => {
              setFilter(e.currentTarget.value as DocumentStatus | '');
              setDocs(null);
            }}
          >
            <option value="">all</option>
            {DOCUMENT_STATUSES.map((s) => (
              <option key={s} value={s}>
                {s}
              </option>
            ))}
          </select>
        </div>
      </div>
      {docs === null ? (
        <p>Loading…</p>
      ) : docs.data.length === 0 ? (
        <p>{filter ? `No ${filter} documents.` : 'No documents yet: drop files above.'}</p>
      ) : (
        <div class="table-wrap">
          <table class="documents">
            <caption class="sr-only">
              Documents{filter ? ` with status ${filter}` : ''}, newest first{busy ? ', updating live' : ''}
            </caption>
            <thead>
              <tr>
                <th scope="col">File</th>
                <th scope="col">Status</th>
                <th scope="col" class="num">
                  Chunks
                </th>
                <th scope="col" class="num">
                  Artifacts
                </th>
                <th scope="col" class="num">
                  Size
                </th>
                <th scope="col">Updated</th>
                <th scope="col">
                  <span class="sr-only">Actions</span>
                </th>
              </tr>
            </thead>
            <tbody>
              {docs.data.map((d) => (
                <tr key={d.id} data-status={d.status}>
                  <th scope="row" class="filename">
                    {d.filename}
                  </th>
                  <td>
                    <StatusSteps status={d.status} error={d.last_error?.message} />
                  </td>
                  <td class="num">{d.chunk_count}</td>
                  <td class="num">{bytes(d.artifact_bytes)}</td>
                  <td class="num">{bytes(d.bytes)}</td>
                  <td>{when(d.updated_at)}</td>
                  <td>
                    <button
                      type="button"
                      class="danger small"
                      onClick={() => setDeleting(d)}
                      aria-label={`Delete ${d.filename}`}
                    >
                      Delete
                    </button>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
          {docs.has_more && <p class="hint">Showing the newest 100; filter by status to narrow.</p>}
        </div>
      )}
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
