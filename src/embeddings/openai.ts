// Embeddings from any OpenAI-compatible server: POST {baseUrl}/embeddings (OpenAI, Azure-style proxies,
// vLLM, llama.cpp server, TEI, Ollama's /v1). Batches by input count and estimated tokens, retries
// 429/408/5xx/network failures with bounded exponential backoff, fails at once with a clear message on
// other 4xx, checks every vector's length against the collection's dimension, restores input order from
// `index`. Web APIs only (global fetch): this file also runs on Workers.
import { z } from 'zod';
import { AppError } from '../../contracts/errors.ts';
import type { EmbeddingKind, EmbeddingProvider } from './types.ts';

export interface OpenAiEmbeddingOptions {
  /** API root including the version segment, as the OpenAI SDKs take it: `https://api.openai.com/v1`. */
  baseUrl: string;
  /** Sent as `Authorization: Bearer …` when present (local servers often need none). */
  apiKey?: string;
  model: string;
  /** The collection's dimension; every returned vector must have exactly this length. */
  dimension: number;
  /** Also send `dimensions` in the request (text-embedding-3-* can shorten vectors; others reject it). */
  sendDimensions?: boolean;
  /** Most inputs in one request (default 96; OpenAI allows 2048, small local servers far fewer). */
  maxBatchInputs?: number;
  /** Most estimated tokens in one request (default 100 000; OpenAI's limit is 300 000). */
  maxBatchTokens?: number;
  /** Token estimate used for batching; default ceil(utf8 bytes / 3), deliberately pessimistic. */
  countTokens?: (text: string) => number;
  /** Retries after the first try on 429/408/5xx/network errors (default 5). */
  maxRetries?: number;
  /** First backoff delay in ms, doubled each retry, with jitter (default 500). */
  initialBackoffMs?: number;
  /** Cap on one backoff delay, also on a server's Retry-After (default 20 000). */
  maxBackoffMs?: number;
  /** Per-request timeout in ms; a timeout counts as a network error (default 60 000). */
  timeoutMs?: number;
  /** Prepended to queries / documents for instruction-tuned models (e5: 'query: ', 'passage: '). */
  queryPrefix?: string;
  documentPrefix?: string;
  /** Defaults to the global fetch. */
  fetch?: typeof fetch;
}

const responseSchema = z.object({
  data: z.array(
    z.object({
      index: z.number().int().nonnegative(),
      // float array, or base64 of little-endian f32 when a server answers encoding_format=base64
      embedding: z.union([z.array(z.number()), z.string()]),
    }),
  ),
});

/** UTF-8 byte length of s without encoding it. */
export function utf8Length(s: string): number {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length && (s.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
      n += 4;
      i++;
    } else n += 3;
  }
  return n;
}

const estimateTokens = (text: string): number => Math.max(1, Math.ceil(utf8Length(text) / 3));

/**
 * Splits inputs into consecutive batches of at most maxInputs items and maxTokens estimated tokens;
 * an input larger than maxTokens goes alone (the server decides whether it is too long).
 */
export function planBatches(
  texts: string[],
  maxInputs: number,
  maxTokens: number,
  count: (t: string) => number,
): [number, number][] {
  const out: [number, number][] = [];
  let start = 0;
  let tokens = 0;
  for (let i = 0; i < texts.length; i++) {
    const t = count(texts[i]);
    if (i > start && (i - start >= maxInputs || tokens + t > maxTokens)) {
      out.push([start, i]);
      start = i;
      tokens = 0;
    }
    tokens += t;
  }
  if (texts.length > start) out.push([start, texts.length]);
  return out;
}

function decodeBase64F32(b64: string): number[] {
  const bin = atob(b64);
  const bytes = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
  if (bytes.length % 4 !== 0) throw new Error('base64 embedding is not a whole number of f32 values');
  return Array.from(new Float32Array(bytes.buffer, 0, bytes.length / 4));
}

/** The error message a server put in its body ({error: {message}} / {error: "…"} / text), shortened. */
async function serverMessage(res: Response): Promise<string> {
  const text = await res.text().catch(() => '');
  let msg = text;
  try {
    const j = JSON.parse(text) as { error?: { message?: unknown } | string; message?: unknown };
    if (typeof j.error === 'string') msg = j.error;
    else if (j.error && typeof j.error.message === 'string') msg = j.error.message;
    else if (typeof j.message === 'string') msg = j.message;
  } catch {
    // not JSON: keep the text
  }
  msg = msg.trim();
  return msg.length > 500 ? `${msg.slice(0, 500)}…` : msg || res.statusText || 'no message';
}

/** Retry-After in ms (delta-seconds or HTTP date), or undefined. */
function retryAfterMs(res: Response): number | undefined {
  const h = res.headers.get('retry-after');
  if (!h) return undefined;
  const secs = Number(h);
  if (Number.isFinite(secs)) return Math.max(0, secs * 1000);
  const at = Date.parse(h);
  return Number.isFinite(at) ? Math.max(0, at - Date.now()) : undefined;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export class OpenAiEmbeddingProvider implements EmbeddingProvider {
  readonly id = 'openai' as const;
  readonly model: string;
  readonly dimension: number;
  readonly #url: string;
  readonly #opts: Required<
    Pick<
      OpenAiEmbeddingOptions,
      'maxBatchInputs' | 'maxBatchTokens' | 'maxRetries' | 'initialBackoffMs' | 'maxBackoffMs' | 'timeoutMs'
    >
  >;
  readonly #o: OpenAiEmbeddingOptions;

  constructor(opts: OpenAiEmbeddingOptions) {
    this.model = opts.model;
    this.dimension = opts.dimension;
    this.#url = `${opts.baseUrl.replace(/\/+$/, '')}/embeddings`;
    this.#o = opts;
    this.#opts = {
      maxBatchInputs: opts.maxBatchInputs ?? 96,
      maxBatchTokens: opts.maxBatchTokens ?? 100_000,
      maxRetries: opts.maxRetries ?? 5,
      initialBackoffMs: opts.initialBackoffMs ?? 500,
      maxBackoffMs: opts.maxBackoffMs ?? 20_000,
      timeoutMs: opts.timeoutMs ?? 60_000,
    };
  }

  async embed(texts: string[], kind: EmbeddingKind): Promise<Float32Array[]> {
    const prefix = (kind === 'query' ? this.#o.queryPrefix : this.#o.documentPrefix) ?? '';
    const inputs = prefix ? texts.map((t) => prefix + t) : texts;
    const count = this.#o.countTokens ?? estimateTokens;
    const out: Float32Array[] = [];
    for (const [a, b] of planBatches(inputs, this.#opts.maxBatchInputs, this.#opts.maxBatchTokens, count)) {
      out.push(...(await this.#embedBatch(inputs.slice(a, b))));
    }
    return out;
  }

  async #embedBatch(input: string[]): Promise<Float32Array[]> {
    const body: Record<string, unknown> = { model: this.model, input };
    if (this.#o.sendDimensions) body.dimensions = this.dimension;
    const headers: Record<string, string> = { 'content-type': 'application/json' };
    if (this.#o.apiKey) headers.authorization = `Bearer ${this.#o.apiKey}`;
    // called through a closure: Workers refuse a detached `fetch` invoked with a foreign `this`
    const doFetch = this.#o.fetch ?? ((url: string, init: RequestInit) => fetch(url, init));
    const { maxRetries, initialBackoffMs, maxBackoffMs, timeoutMs } = this.#opts;
    let lastProblem = '';
    for (let attempt = 0; ; attempt++) {
      let res: Response | undefined;
      let hint: number | undefined;
      try {
        res = await doFetch(this.#url, {
          method: 'POST',
          headers,
          body: JSON.stringify(body),
          signal: AbortSignal.timeout(timeoutMs),
        });
      } catch (err) {
        lastProblem = `network error: ${(err as Error).message}`;
      }
      if (res) {
        if (res.ok) return this.#parse(res, input.length);
        const retryable = res.status === 429 || res.status === 408 || res.status >= 500;
        const msg = await serverMessage(res);
        if (!retryable) throw this.#clientError(res.status, msg);
        hint = retryAfterMs(res);
        lastProblem = `HTTP ${res.status}: ${msg}`;
      }
      if (attempt >= maxRetries) {
        throw new AppError(
          'upstream_unavailable',
          `embedding provider at ${this.#url} failed after ${attempt + 1} tries (${lastProblem})`,
          { provider: this.id, model: this.model },
        );
      }
      const backoff = Math.min(maxBackoffMs, initialBackoffMs * 2 ** attempt) * (0.5 + Math.random() * 0.5);
      await sleep(Math.min(maxBackoffMs, Math.max(backoff, hint ?? 0)));
    }
  }

  #clientError(status: number, msg: string): AppError {
    const details = { provider: this.id, model: this.model, status };
    // 400/413/422: the provider will not take these inputs; 401/403/404…: our settings are wrong
    if (status === 400 || status === 413 || status === 422) {
      return new AppError(
        'bad_request',
        `embedding provider rejected the input (HTTP ${status}): ${msg}`,
        details,
      );
    }
    return new AppError(
      'invalid_config',
      `embedding provider at ${this.#url} refused the request (HTTP ${status}): ${msg}; check the base URL, API key and model "${this.model}"`,
      details,
    );
  }

  async #parse(res: Response, n: number): Promise<Float32Array[]> {
    let json: unknown;
    try {
      json = await res.json();
    } catch (err) {
      throw new AppError(
        'upstream_unavailable',
        `embedding provider returned invalid JSON: ${(err as Error).message}`,
      );
    }
    const parsed = responseSchema.safeParse(json);
    if (!parsed.success) {
      throw new AppError('upstream_unavailable', 'embedding provider returned an unexpected response shape', {
        issues: parsed.error.issues.slice(0, 5),
      });
    }
    const out: (Float32Array | undefined)[] = new Array(n);
    for (const { index, embedding } of parsed.data.data) {
      if (index >= n || out[index]) {
        throw new AppError(
          'upstream_unavailable',
          `embedding provider returned a bad or repeated index ${index}`,
        );
      }
      const values = typeof embedding === 'string' ? decodeBase64F32(embedding) : embedding;
      if (values.length !== this.dimension) {
        throw new AppError(
          'invalid_config',
          `embedding model "${this.model}" returned vectors of length ${values.length}, but the collection's dimension is ${this.dimension}`,
          { provider: this.id, model: this.model, expected: this.dimension, got: values.length },
        );
      }
      out[index] = Float32Array.from(values);
    }
    for (let i = 0; i < n; i++) {
      if (!out[i])
        throw new AppError('upstream_unavailable', `embedding provider returned no vector for input ${i}`);
    }
    return out as Float32Array[];
  }
}
