// Files in: drop them on the zone or choose them (a real file input, so the keyboard works); each file
// uploads on its own with a progress bar for the bytes sent, then says what the API answered.
import { useId, useState } from 'preact/hooks';
import { type DocumentObject, uploadFile } from '../api.ts';
import { errorText } from '../shell.ts';
import { bytes } from '../format.ts';

interface Item {
  key: string;
  name: string;
  size: number;
  sent: number;
  state: 'uploading' | 'queued' | 'duplicate' | 'failed';
  message?: string;
}

const ACCEPT = '.txt,.md,.markdown,.html,.htm,.json,.jsonl,.pdf,text/*,application/json,application/pdf';

export function UploadZone(props: {
  collectionId: string;
  onUploaded: (doc: DocumentObject, status: number) => Promise<void>;
}) {
  const [items, setItems] = useState<Item[]>([]);
  const [over, setOver] = useState(false);
  const inputId = useId();
  const patch = (key: string, p: Partial<Item>) =>
    setItems((xs) => xs.map((x) => (x.key === key ? { ...x, ...p } : x)));

  const start = (files: FileList | File[]) => {
    for (const file of Array.from(files)) {
      const key = `${file.name}-${crypto.randomUUID()}`;
      const item: Item = { key, name: file.name, size: file.size, sent: 0, state: 'uploading' };
      setItems((xs) => [item, ...xs].slice(0, 50));
      uploadFile(props.collectionId, file, (sent) => patch(key, { sent }))
        .done.then(async ({ status, document }) => {
          patch(key, { state: status === 201 ? 'queued' : 'duplicate', sent: 1 });
          await props.onUploaded(document, status);
        })
        .catch((e) => patch(key, { state: 'failed', message: errorText(e) }));
    }
  };

  return (
    <div class="card">
      <h2 id={`${inputId}-h`}>Upload</h2>
      <fieldset
        class={over ? 'drop over' : 'drop'}
        onDragOver={(e) => {
          e.preventDefault();
          setOver(true);
        }}
        onDragLeave={() => setOver(false)}
        onDrop={(e) => {
          e.preventDefault();
          setOver(false);
          if (e.dataTransfer?.files.length) start(e.dataTransfer.files);
        }}
      >
        <legend class="sr-only">Drop files to upload</legend>
        <p>Drop text, Markdown, HTML, JSON or PDF files here, or</p>
        <label for={inputId} class="button primary">
          Choose files
        </label>
        <input
          id={inputId}
          class="file-input"
          type="file"
          multiple
          accept={ACCEPT}
          aria-describedby={`${inputId}-h`}
          onChange={(e) => {
            const files = e.currentTarget.files;
            if (files?.length) start(files);
            e.currentTarget.value = '';
          }}
        />
      </fieldset>
      {items.length > 0 && (
        <ul class="uploads" aria-label="Uploads">
          {items.map((it) => (
            <li key={it.key} data-state={it.state}>
              <span class="filename">{it.name}</span>
              <span class="size">{bytes(it.size)}</span>
              <progress
                max={1}
                value={it.sent}
                aria-label={`Upload of ${it.name}`}
                aria-valuetext={`${Math.round(it.sent * 100)}% sent`}
              />
              <span class="state">
                {it.state === 'uploading'
                  ? `${Math.round(it.sent * 100)}%`
                  : it.state === 'queued'
                    ? 'uploaded'
                    : it.state === 'duplicate'
                      ? 'already in the collection'
                      : `failed: ${it.message}`}
              </span>
            </li>
          ))}
        </ul>
      )}
    </div>
  );
}
