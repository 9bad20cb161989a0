// The console's one way to talk to the API: same-origin requests with the signed-in key as a Bearer
// header (the key lives in session storage, never in a URL), the error envelope as ApiError, multipart
// uploads with progress (XMLHttpRequest: fetch reports no upload progress), and /v1/query's SSE stream.
import type { z } from 'zod';
import type { Plan } from '../planning/plan.ts';
import type * as S from '../routes/openapi-schemas.ts';
import type { Citation } from '../answer/services.ts';

export class ApiError extends Error {
  readonly status: number;
  readonly code: string;
  constructor(status: number, code: string, message: string) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

const KEY = 'kvrag.key';

/** The signed-in key of this tab (session storage: gone with the tab, never sent anywhere but here). */
export const session = {
  key: (): string | null => sessionStorage.getItem(KEY),
  set: (key: string) => sessionStorage.setItem(KEY, key),
  clear: () => sessionStorage.removeItem(KEY),
};

/** Fired on window when the API refuses the session's key (revoked meanwhile): the shell signs out. */
export const UNAUTHORIZED_EVENT = 'kvrag:unauthorized';

function refused(status: number, key: string | null): void {
  if (status === 401 && key !== null && key === session.key()) dispatchEvent(new Event(UNAUTHORIZED_EVENT));
}

async function errorOf(res: Response): Promise<ApiError> {
  try {
    const body = (await res.json()) as { error?: { code?: string; message?: string } };
    if (body.error?.message) return new ApiError(res.status, body.error.code ?? 'error', body.error.message);
  } catch {
    // not an envelope
  }
  return new ApiError(res.status, 'error', `HTTP ${res.status}`);
}

function headers(key: string | null, json: boolean): Record<string, string> {
  return {
    ...(key ? { authorization: `Bearer ${key}` } : {}),
    ...(json ? { 'content-type': 'application/json' } : {}),
  };
}

/** A JSON call with the session's key (or `key`); throws ApiError for any non-2xx answer. */
export async function call<T>(method: string, path: string, body?: unknown, key = session.key()): Promise<T> {
  const res = await fetch(path, {
    method,
    headers: headers(key, body !== undefined),
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!res.ok) {
    refused(res.status, key);
    throw await errorOf(res);
  }
  return (await res.json()) as T;
}

/** Who a key is: a tenant's key, the admin key, or refused (ApiError 401/429). */
export async function whoIs(key: string): Promise<'tenant' | 'admin'> {
  try {
    await call('GET', '/v1/collections?limit=1', undefined, key);
    return 'tenant';
  } catch (e) {
    if (!(e instanceof ApiError) || e.status !== 403) throw e;
  }
  // the admin key acts on no tenant's data (403 above) but lists tenants
  await call('GET', '/v1/admin/tenants?limit=1', undefined, key);
  return 'admin';
}

export interface Upload {
  done: Promise<{ status: number; document: DocumentObject }>;
  abort(): void;
}

/** Uploads one file as multipart; `onProgress` gets the sent fraction (0..1) as the body goes out. */
export function uploadFile(collection: string, file: File, onProgress: (sent: number) => void): Upload {
  const xhr = new XMLHttpRequest();
  const done = new Promise<{ status: number; document: DocumentObject }>((resolve, reject) => {
    xhr.open('POST', `/v1/collections/${encodeURIComponent(collection)}/documents`);
    const key = session.key();
    if (key) xhr.setRequestHeader('authorization', `Bearer ${key}`);
    xhr.responseType = 'json';
    xhr.upload.onprogress = (e) => {
      if (e.lengthComputable && e.total > 0) onProgress(e.loaded / e.total);
    };
    xhr.onload = () => {
      const body = xhr.response as { error?: { code: string; message: string } } | DocumentObject | null;
      if (xhr.status >= 200 && xhr.status < 300) {
        onProgress(1);
        resolve({ status: xhr.status, document: body as DocumentObject });
      } else {
        refused(xhr.status, key);
        const err = (body as { error?: { code: string; message: string } } | null)?.error;
        reject(new ApiError(xhr.status, err?.code ?? 'error', err?.message ?? `HTTP ${xhr.status}`));
      }
    };
    xhr.onerror = () => reject(new ApiError(0, 'network', 'the upload failed (network error)'));
    xhr.onabort = () => reject(new ApiError(0, 'aborted', 'upload cancelled'));
    const form = new FormData();
    form.append('file', file, file.name);
    xhr.send(form);
  });
  return { done, abort: () => xhr.abort() };
}

export interface QueryHandlers {
  plan?(plan: Plan): void;
  citations?(c: Citation[]): void;
  token(text: string): void;
  done(d: QueryDone): void;
}

/** POST /v1/query with stream=true, calling the handlers as the SSE events arrive. */
export async function streamQuery(body: Record<string, unknown>, on: QueryHandlers, signal?: AbortSignal) {
  const res = await fetch('/v1/query', {
    method: 'POST',
    headers: { ...headers(session.key(), true), accept: 'text/event-stream' },
    body: JSON.stringify({ ...body, stream: true }),
    signal,
  });
  if (!res.ok || !res.body) {
    refused(res.status, session.key());
    throw await errorOf(res);
  }
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = '';
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    buf += value.replace(/\r\n/g, '\n');
    for (let i = buf.indexOf('\n\n'); i >= 0; i = buf.indexOf('\n\n')) {
      const block = buf.slice(0, i);
      buf = buf.slice(i + 2);
      let event = 'message';
      const data: string[] = [];
      for (const line of block.split('\n')) {
        if (line.startsWith('event:')) event = line.slice(6).trim();
        else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
      }
      const payload = JSON.parse(data.join('\n'));
      if (event === 'plan') on.plan?.(payload);
      else if (event === 'citations') on.citations?.(payload);
      else if (event === 'token') on.token(payload.text);
      else if (event === 'done') on.done(payload);
      else if (event === 'error')
        throw new ApiError(502, payload.code ?? 'error', payload.message ?? 'error');
    }
  }
}

// The API's shapes, from the schemas it documents itself with (type-only: nothing of the server is bundled).
export type CollectionObject = z.infer<typeof S.Collection>;
export type DocumentObject = z.infer<typeof S.Document>;
export type ChunkObject = z.infer<typeof S.Chunk>;
export type SearchHit = z.infer<typeof S.SearchPage>['data'][number];
export type QueryDone = z.infer<typeof S.QueryAnswer>;
export type TtftPart = keyof NonNullable<QueryDone['ttft_split_ms']>;
export type RunnerObject = z.infer<typeof S.Runner>;
export type TenantObject = z.infer<typeof S.Tenant>;
export type ApiKeyObject = z.infer<typeof S.ApiKey>;
export type NewApiKeyObject = z.infer<typeof S.NewApiKey>;
export interface Page<T> {
  object: 'list';
  data: T[];
  has_more: boolean;
}

/** Ingestion's statuses in the order a document moves through them (the API's list, checked below). */
export const DOCUMENT_STATUSES = [
  'queued',
  'parsing',
  'chunking',
  'embedding',
  'precomputing',
  'ready',
  'failed',
] as const;
export type DocumentStatus = (typeof DOCUMENT_STATUSES)[number];
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
export const STATUSES_MATCH_API: Same<DocumentStatus, DocumentObject['status']> = true;
