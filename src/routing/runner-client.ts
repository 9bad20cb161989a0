// Calling runners from the edge (Workers-safe: fetch only, no Node imports). A runner is reached through a
// fetch function — global fetch for remote runners, or the in-process runner's `app.fetch` in embedded
// mode — and answers POST /v1/generate with SSE `token` {text} events and one final `done` (its usage) or
// `error` (an envelope's error object). RunnerPool lists candidates, ranks them with rankRunners and fails
// over to the next one when a runner fails before its first token, so the client never sees it. Each
// source also says what model a runner serves (its profile: heartbeat, GET /v1/model, or the in-process
// engine's), which is what the API plans from. Callers hand in a fetch that carries the runner credential
// (contracts/runner-api.ts withRunnerToken).
import { AppError } from '../../contracts/errors.ts';
import { BloomFilter } from '../../contracts/bloom.ts';
import type { RunnerHeartbeat, RunnerRegistry } from '../../contracts/heartbeat.ts';
import { type ModelProfile, modelProfileSchema } from '../../contracts/model-profile.ts';
import {
  type FetchFn,
  type GenerateRequest,
  generateEventSchemas,
  type RunnerEvent,
} from '../../contracts/runner-api.ts';
import { type HeartbeatTrust, heartbeatRefusal } from './heartbeat-trust.ts';
import { rankRunners } from './select.ts';

/** A runner as the router sees it at one moment. */
export interface RunnerEndpoint {
  id: string;
  url: string;
  /** Model fingerprints it serves. */
  models: readonly string[];
  /** Running + waiting requests (heartbeat); the pool adds what it has in flight there. */
  load: number;
  holds(artifactKey: string): boolean;
  fetch: FetchFn;
  /** From its registry heartbeat (distributed mode): what it reported, and when (ms since the epoch). */
  heartbeat?: Pick<RunnerHeartbeat, 'load' | 'kvFreeBytes' | 'sentAt'>;
  /** The model it serves, when the runner has said (older runners' heartbeats do not carry it). */
  profile?: ModelProfile;
}

/** Where candidates come from: registry heartbeats, static URLs, or the in-process runner. */
export interface RunnerSource {
  list(): Promise<RunnerEndpoint[]>;
}

/** A failure of one runner; `beforeFirstToken` failures are retried elsewhere. */
export class RunnerCallError extends Error {
  readonly runnerId: string;
  readonly beforeFirstToken: boolean;
  constructor(runnerId: string, message: string, beforeFirstToken: boolean) {
    super(`runner ${runnerId}: ${message}`);
    this.runnerId = runnerId;
    this.beforeFirstToken = beforeFirstToken;
  }
}

const strip = (u: string) => u.replace(/\/+$/, '');

/** Parses an SSE body into {event, data} blocks. */
export async function* readSse(
  body: ReadableStream<Uint8Array>,
): AsyncGenerator<{ event: string; data: string }> {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buf = '';
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return;
      buf += decoder.decode(value, { stream: true }).replace(/\r\n/g, '\n');
      for (let i = buf.indexOf('\n\n'); i >= 0; i = buf.indexOf('\n\n')) {
        const block = buf.slice(0, i);
        buf = buf.slice(i + 2);
        let event = 'message';
        const data: string[] = [];
        for (const line of block.split('\n')) {
          if (line.startsWith('event:')) event = line.slice(6).trim();
          else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
        }
        if (data.length > 0) yield { event, data: data.join('\n') };
      }
    }
  } finally {
    reader.releaseLock();
    await body.cancel().catch(() => {});
  }
}

/** One call to a runner's /v1/generate, as events. Throws RunnerCallError (beforeFirstToken set). */
export async function* callRunner(
  runner: Pick<RunnerEndpoint, 'id' | 'url' | 'fetch'>,
  body: GenerateRequest,
  signal?: AbortSignal,
  requestId?: string,
): AsyncGenerator<RunnerEvent> {
  let started = false;
  const fail = (m: string) => new RunnerCallError(runner.id, m, !started);
  let res: Response;
  try {
    res = await runner.fetch(
      new Request(`${strip(runner.url)}/v1/generate`, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          accept: 'text/event-stream',
          ...(requestId ? { 'x-request-id': requestId } : {}),
        },
        body: JSON.stringify(body),
        signal,
      }),
    );
  } catch (e) {
    throw fail(`unreachable (${String(e)})`);
  }
  if (!res.ok || !res.body) {
    const text = await res.text().catch(() => '');
    // A 4xx means the request itself is wrong: every runner would say the same, so do not fail over. A
    // refused credential (401/403) is this runner's configuration, not the request's: try the next one.
    if (res.status >= 400 && res.status < 500 && ![401, 403, 404, 429].includes(res.status)) {
      throw new AppError('bad_request', `runner refused the request (${res.status}): ${text.slice(0, 300)}`);
    }
    throw fail(`HTTP ${res.status}: ${text.slice(0, 200)}`);
  }
  try {
    for await (const m of readSse(res.body)) {
      if (m.event === 'token') {
        const { text } = generateEventSchemas.token.parse(JSON.parse(m.data));
        started = true;
        yield { type: 'token', text };
      } else if (m.event === 'done') {
        const usage = generateEventSchemas.done.parse(JSON.parse(m.data));
        if (usage.finishReason === 'error' || usage.finishReason === 'shutdown') {
          throw fail(`sequence ended with ${usage.finishReason}`);
        }
        yield { type: 'done', usage };
        return;
      } else if (m.event === 'error') {
        const err = generateEventSchemas.error.safeParse(JSON.parse(m.data));
        throw fail(err.success ? err.data.message : 'error event');
      }
    }
  } catch (e) {
    if (e instanceof RunnerCallError || e instanceof AppError) throw e;
    throw fail(String(e));
  }
  throw fail('stream ended without a done event');
}

/**
 * Runners from registry heartbeats (distributed mode): expired heartbeats are absent from list(), and so
 * are those `trust` refuses (unsigned, signed with another credential, stale, or a URL off the allow-list):
 * the registry is shared storage, not an authority. `onRefused` hears each refusal (for a log line).
 */
export function registrySource(
  registry: RunnerRegistry,
  fetchFn: FetchFn,
  trust: HeartbeatTrust,
  onRefused?: (runnerId: string, url: string, reason: string) => void,
): RunnerSource {
  const checked = new Map<string, boolean>();
  return {
    async list() {
      const now = Date.now();
      const all = await registry.list();
      const refusals = await Promise.all(all.map((hb) => heartbeatRefusal(hb, trust, now, checked)));
      const hbs = all.filter((hb, i) => {
        if (refusals[i] !== null) onRefused?.(hb.id, hb.url, refusals[i]);
        return refusals[i] === null;
      });
      return hbs.map((hb) => {
        const bloom = BloomFilter.fromJSON(hb.artifacts);
        return {
          id: hb.id,
          url: hb.url,
          models: hb.models,
          load: hb.load.running + hb.load.waiting,
          holds: (k: string) => bloom.has(k),
          fetch: fetchFn,
          heartbeat: { load: hb.load, kvFreeBytes: hb.kvFreeBytes, sentAt: hb.sentAt },
          ...(hb.model ? { profile: hb.model } : {}),
        };
      });
    },
  };
}

/**
 * Fixed runner URLs (KVRAG_RUNNER_URLS): each is asked GET /readyz (its fingerprint) at most every
 * `pollMs`, and GET /v1/model (its profile) whenever its fingerprint is new; one that does not answer ready
 * is left out until it does. Nothing is known of their artifacts.
 */
export function staticSource(
  urls: readonly string[],
  opts: { fetch?: FetchFn; pollMs?: number; now?: () => number } = {},
): RunnerSource {
  const fetchFn = opts.fetch ?? ((r: Request) => fetch(r));
  const pollMs = opts.pollMs ?? 2000;
  const now = opts.now ?? Date.now;
  const state = new Map<string, { at: number; fingerprint: string | null; profile?: ModelProfile }>();
  const getJson = async (url: string): Promise<unknown> => {
    const res = await fetchFn(new Request(url, { signal: AbortSignal.timeout(2000) }));
    if (res.ok) return res.json();
    await res.body?.cancel();
    return null;
  };
  const probe = async (url: string) => {
    const s = state.get(url);
    if (s && now() - s.at < pollMs) return s;
    let fingerprint: string | null = null;
    let profile = s?.profile;
    try {
      fingerprint =
        ((await getJson(`${strip(url)}/readyz`)) as { fingerprint?: string } | null)?.fingerprint ?? null;
      if (fingerprint && profile?.fingerprint !== fingerprint) {
        const p = modelProfileSchema.safeParse(await getJson(`${strip(url)}/v1/model`));
        profile = p.success ? p.data : undefined;
      }
    } catch {
      fingerprint = null;
    }
    const next = { at: now(), fingerprint, ...(profile ? { profile } : {}) };
    state.set(url, next);
    return next;
  };
  return {
    async list() {
      const states = await Promise.all(urls.map(probe));
      return urls.flatMap((url, i) => {
        const { fingerprint, profile } = states[i];
        if (!fingerprint) return [];
        const r: RunnerEndpoint = {
          id: strip(url),
          url,
          models: [fingerprint],
          load: 0,
          holds: () => false,
          fetch: fetchFn,
        };
        return [profile?.fingerprint === fingerprint ? { ...r, profile } : r];
      });
    },
  };
}

/** The single in-process runner of embedded mode, reached through its app's fetch; its engine's profile. */
export function inProcessSource(fetchFn: FetchFn, profile: ModelProfile, id = 'in-process'): RunnerSource {
  const runner: RunnerEndpoint = {
    id,
    url: 'http://runner.local',
    models: [profile.fingerprint],
    load: 0,
    holds: () => false,
    fetch: fetchFn,
    profile,
  };
  return { list: async () => [runner] };
}

export interface RouteResult {
  runnerId: string;
  /** Runners that failed before their first token, in the order tried. */
  failedOver: string[];
}

/** Candidates, cache-aware ranking, in-flight accounting and failover before the first token. */
export class RunnerPool {
  private readonly source: RunnerSource;
  private readonly inflight = new Map<string, number>();

  constructor(source: RunnerSource) {
    this.source = source;
  }

  /**
   * Profiles of the models live runners serve, one per fingerprint; where runners of one model differ in
   * their context cap, the smallest (a plan must fit whichever of them answers).
   */
  async profiles(): Promise<ModelProfile[]> {
    const by = new Map<string, ModelProfile>();
    for (const { profile: p } of await this.source.list()) {
      if (!p) continue;
      const seen = by.get(p.fingerprint);
      by.set(p.fingerprint, seen && seen.contextTokens < p.contextTokens ? seen : p);
    }
    return [...by.values()].sort((a, b) => a.id.localeCompare(b.id));
  }

  /** Every live runner, with what this pool has in flight there added to its load. */
  async list(): Promise<RunnerEndpoint[]> {
    return (await this.source.list()).map((r) => ({ ...r, load: r.load + (this.inflight.get(r.id) ?? 0) }));
  }

  /** Live runners serving `fingerprint`, best first for these artifacts. */
  async rank(fingerprint: string, artifactKeys: readonly string[]): Promise<RunnerEndpoint[]> {
    const live = (await this.list()).filter((r) => r.models.includes(fingerprint));
    return rankRunners({ artifactKeys }, live).map((x) => x.runner);
  }

  /**
   * Generates on the best runner; a runner failing before its first token is skipped for the next one.
   * `route` is filled in once a runner has produced its first token (or finished).
   */
  async *generate(
    fingerprint: string,
    artifactKeys: readonly string[],
    body: GenerateRequest,
    route: RouteResult,
    signal?: AbortSignal,
    /** Forwarded as x-request-id, so the runner's logs carry the API request's id. */
    requestId?: string,
  ): AsyncGenerator<RunnerEvent> {
    const ranked = await this.rank(fingerprint, artifactKeys);
    if (ranked.length === 0)
      throw new AppError('upstream_unavailable', 'no healthy runner serves the planned model');
    const errors: string[] = [];
    for (const runner of ranked) {
      this.inflight.set(runner.id, (this.inflight.get(runner.id) ?? 0) + 1);
      let started = false;
      try {
        for await (const ev of callRunner(runner, body, signal, requestId)) {
          if (!started) {
            started = true;
            route.runnerId = runner.id;
          }
          yield ev;
        }
        return;
      } catch (e) {
        if (e instanceof RunnerCallError && e.beforeFirstToken && !started && !signal?.aborted) {
          route.failedOver.push(runner.id);
          errors.push(e.message);
          continue;
        }
        throw e instanceof AppError
          ? e
          : new AppError('upstream_unavailable', String((e as Error).message ?? e));
      } finally {
        const n = (this.inflight.get(runner.id) ?? 1) - 1;
        if (n <= 0) this.inflight.delete(runner.id);
        else this.inflight.set(runner.id, n);
      }
    }
    throw new AppError('upstream_unavailable', `every runner failed: ${errors.join('; ')}`);
  }
}
