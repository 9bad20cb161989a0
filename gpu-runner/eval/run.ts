// The quality harness behind `kvrag eval`: held-out episodes (./episodes.ts, a seed training never used)
// are sent through an in-process runner's real POST /v1/generate (the same body, scheduler, reuse
// assembly and greedy decoding as production) and scored by exact match (./score.ts). Variants are
// compared on the same episodes: every reuse mode; squeezed-attention budgets over the fixed context
// (on top of an artifact reuse mode, `independent` by default); sparse-prefill patterns (on `full`, where
// the whole context is live); with artifactDTypes, every artifact variant once per artifact dtype (one
// runner per dtype over the same engine, each storing and reading its own artifacts). Squeezed and
// sparse are only measured when the runner's body schema
// accepts their controls; otherwise the result names them unavailable. The cli hands in the object store
// the runner keeps artifacts in and the client that sends a request (the API's own runner client).
import type { BlobStore } from '../../contracts/blob-store.ts';
import type { ReuseMode } from '../../contracts/reuse.ts';
import {
  type FetchFn,
  type GenerateRequest,
  generateBodySchema,
  type RunnerUsage,
  withRunnerToken,
} from '../../contracts/runner-api.ts';
import type { SparsePattern } from '../../contracts/sparse.ts';
import type { BackendChoice } from '../engine/backends/registry.ts';
import type { KVCacheDType } from '../engine/backends/types.ts';
import type { KVDType } from '../engine/kv/artifact-format.ts';
import type { WeightDType } from '../engine/weights.ts';
import { createRunner, type Runner } from '../server/runner.ts';
import {
  type EpisodePrompt,
  episodePrompt,
  type FactType,
  type Filler,
  heldoutEpisodes,
  promptTokens,
} from './episodes.ts';
import { loadEvalProse } from './prose.ts';
import { scoreAnswer } from './score.ts';

/**
 * One way of serving the same prompt. `dtype`: the artifact dtype its runner stores and reads, when the
 * eval compares several (absent: the runner's default; `full` and sparse variants read no artifacts).
 */
export type Variant = (
  | { kind: 'reuse'; mode: ReuseMode }
  | { kind: 'squeezed'; mode: ReuseMode; budget: number; budgetLabel: string }
  | { kind: 'sparse'; mode: ReuseMode; pattern: SparsePattern }
) & { dtype?: KVDType };

export function variantLabel(v: Variant): string {
  const dt = v.dtype ? ` ${v.dtype}` : '';
  if (v.kind === 'reuse') return `${v.mode}${dt}`;
  if (v.kind === 'squeezed') return `squeezed ${v.budgetLabel} (${v.mode}${dt})`;
  return `sparse ${v.pattern} (${v.mode})`;
}

export interface EvalOptions {
  modelDir: string;
  backend?: BackendChoice;
  threads?: number;
  /** Device dtype of the weight matrices (default: as stored, see engine/weights.ts matrixDType). */
  weightDType?: WeightDType;
  /**
   * The native backend's KV cache type (default f32: exact K/V, the reuse modes' scores compare against f32
   * caches); int8 takes no squeezed variants (their kernels read f16/f32 rows).
   */
  kvCacheDType?: KVCacheDType;
  /** Held-out seed: episodes are seeded `heldout-{seed}-{suite}-full-{context}`. */
  seed: number;
  suites: readonly FactType[];
  /** The episodes' filler: the trainer's lexicon sentences, or the committed evaluation prose (./prose.ts). */
  filler?: Filler;
  contexts: readonly number[];
  /** Episodes per (suite, context). */
  n: number;
  modes: readonly ReuseMode[];
  /** Squeezed budgets (fraction of fixed-context keys), with their labels ("1/8"). */
  budgets: readonly { value: number; label: string }[];
  /** Reuse mode the squeezed budgets run on. Default independent. */
  squeezedMode?: ReuseMode;
  patterns: readonly SparsePattern[];
  blendRatio?: number;
  linkTokens?: number;
  /** Artifact dtypes to compare (each artifact variant runs once per dtype); absent: the runner's default. */
  artifactDTypes?: readonly KVDType[];
  /** Stops before the next episode: the cells then hold the episodes that ran (result.stopped says where). */
  signal?: AbortSignal;
  /** Progress lines (stderr in the CLI). */
  progress?: (line: string) => void;
  /** Where the runner stores artifacts (the cli: a filesystem store in a temporary directory). */
  blobs: BlobStore;
  /** Sends one POST /v1/generate through `fetch` and returns the `done` event's usage. */
  generate(fetch: FetchFn, body: GenerateRequest): Promise<RunnerUsage>;
}

export interface EvalMiss {
  /** Index of the episode in its (suite, context) set. */
  episode: number;
  question: string;
  gold: string;
  predicted: string;
  stop: 'end' | 'eos' | 'none';
}

export interface EvalCell {
  suite: FactType;
  context: number;
  variant: string;
  kind: Variant['kind'];
  mode: ReuseMode;
  /** artifact dtype of the variant when the eval compared several; else null */
  dtype: KVDType | null;
  budget: number | null;
  pattern: SparsePattern | null;
  n: number;
  correct: number;
  accuracy: number;
  /** Mean prompt tokens (bos + system + chunks + question turn). */
  meanPromptTokens: number;
  /** Mean prompt tokens whose K/V came from stored chunk artifacts (0 for `full`). */
  meanCachedTokens: number;
  /** Squeezed variants: mean fraction of fixed-context keys attended (runner's `done` stats); else null. */
  squeezedKeysFraction: number | null;
  /** Sparse variants: mean attended ÷ dense causal (query, key) pairs of the live prefill (runner stats); else null. */
  sparseDensity: number | null;
  /** Runner notes, e.g. why squeezed attention was not used for a request. */
  notes: string[];
  /** Mean runner time per request (queue + assembly/prefill + decode of the answer), ms. */
  meanMs: number;
  /** The first few misses, for reading. */
  misses: EvalMiss[];
}

export interface EvalResult {
  model: string;
  fingerprint: string;
  backend: string;
  /** the device dtype of the weight matrices (q/k/v/o, MLP; the embedding's may differ only by row length) */
  weights: string;
  /** the KV cache element type */
  kvCache: KVCacheDType;
  seed: number;
  n: number;
  suites: FactType[];
  filler: Filler;
  contexts: number[];
  variants: string[];
  /** blend's recompute ratio and link's recomputed tokens as sent; null = the runner's default. */
  blendRatio: number | null;
  linkTokens: number | null;
  /**
   * Stopped early (signal): `rounds` episodes of every (suite, context) ran, some cells one more; null when
   * every cell ran all `of` episodes.
   */
  stopped: { reason: string; rounds: number; of: number } | null;
  /** Why a dimension was not measured (null = measured, or not asked for). */
  unavailable: { squeezed: string | null; sparse: string | null };
  cells: EvalCell[];
  date: string;
  wallS: number;
}

const MAX_MISSES = 3;

/** Whether the runner's request body accepts a control (the dimension exists in this build). */
export function runnerAccepts(extra: Record<string, unknown>): boolean {
  return generateBodySchema.safeParse({ question: 'q', ...extra }).success;
}

function squeezedBody(v: Variant): Pick<GenerateRequest, 'squeezed'> {
  if (v.kind === 'squeezed') return { squeezed: { mode: 'budget', budget: v.budget } };
  return runnerAccepts({ squeezed: { mode: 'off' } }) ? { squeezed: { mode: 'off' } } : {};
}

function sparseBody(v: Variant): Pick<GenerateRequest, 'sparse'> {
  if (v.kind === 'sparse') return { sparse: { mode: 'pattern', pattern: v.pattern } };
  return runnerAccepts({ sparse: { mode: 'off' } }) ? { sparse: { mode: 'off' } } : {};
}

/** The runner request for one episode under one variant: greedy, exactly answer + 1 tokens. */
export function requestBody(
  p: EpisodePrompt,
  v: Variant,
  opts: Pick<EvalOptions, 'blendRatio' | 'linkTokens'>,
): GenerateRequest {
  return {
    system: { tokenIds: p.system },
    chunks: p.chunks.map((tokenIds) => ({ tokenIds })),
    question: { tokenIds: p.question },
    // ignoreEos: no token ends generation early, so the token right after the answer is seen as is
    maxTokens: p.answer.length + 1,
    ignoreEos: true,
    sampling: { temperature: 0, topK: 0, topP: 1 },
    reuse: {
      mode: v.mode,
      ...(v.mode === 'blend' && opts.blendRatio !== undefined ? { blendRatio: opts.blendRatio } : {}),
      ...(v.mode === 'link' && opts.linkTokens !== undefined ? { linkTokens: opts.linkTokens } : {}),
    },
    ...squeezedBody(v),
    ...sparseBody(v),
  };
}

/** The variants asked for, minus the dimensions this runner does not offer (named in `unavailable`). */
export function planVariants(opts: EvalOptions): {
  variants: Variant[];
  unavailable: EvalResult['unavailable'];
} {
  // an artifact variant per dtype asked for; `full` reads no artifacts and runs once
  const dtypes: (KVDType | undefined)[] = opts.artifactDTypes?.length
    ? [...opts.artifactDTypes]
    : [undefined];
  const perDType = (v: Variant): Variant[] =>
    v.mode === 'full' ? [v] : dtypes.map((dtype) => (dtype ? { ...v, dtype } : v));
  const variants: Variant[] = opts.modes.flatMap((mode) => perDType({ kind: 'reuse', mode }));
  const unavailable: EvalResult['unavailable'] = { squeezed: null, sparse: null };
  const sqMode = opts.squeezedMode ?? 'independent';
  if (opts.budgets.length > 0) {
    if (runnerAccepts({ squeezed: { mode: 'budget', budget: 0.5 } }))
      for (const b of opts.budgets)
        variants.push(...perDType({ kind: 'squeezed', mode: sqMode, budget: b.value, budgetLabel: b.label }));
    else
      unavailable.squeezed =
        'the runner does not offer per-request squeezed attention (body `squeezed: {mode: "budget"}` is refused)';
  }
  if (opts.patterns.length > 0) {
    const refused = opts.patterns.filter((p) => !runnerAccepts({ sparse: { mode: 'pattern', pattern: p } }));
    if (refused.length === 0)
      for (const pattern of opts.patterns) variants.push({ kind: 'sparse', mode: 'full', pattern });
    else
      unavailable.sparse = `the runner does not offer sparse prefill pattern${refused.length > 1 ? 's' : ''} ${refused.join(', ')} (body \`sparse: {mode: "pattern"}\` is refused)`;
  }
  return { variants, unavailable };
}

/** POST /v1/precompute for the blocks (at most 64 per request). */
async function precompute(fetchRunner: FetchFn, blocks: number[][]) {
  for (let i = 0; i < blocks.length; i += 64) {
    const res = await fetchRunner(
      new Request('http://eval.runner/v1/precompute', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ chunks: blocks.slice(i, i + 64).map((tokenIds) => ({ tokenIds })) }),
      }),
    );
    if (!res.ok)
      throw new Error(`runner precompute failed (${res.status}): ${(await res.text()).slice(0, 300)}`);
  }
}

export async function runEval(opts: EvalOptions): Promise<EvalResult> {
  const started = performance.now();
  const say = opts.progress ?? (() => {});
  const { variants, unavailable } = planVariants(opts);
  const maxPrompt = Math.max(...opts.contexts) * 1.1 + 128;
  const runnerOpts = {
    blobs: opts.blobs,
    // one episode's artifacts at a time are all the eval reuses; keep the host tier modest
    kvHostBytes: 256 * 1024 * 1024,
    scheduler: { kvBytes: Math.max(256 * 1024 * 1024, 2 * maxPrompt * 64 * 1024) },
  };
  // the artifact dtypes compared ([undefined]: the runner's default); variants without one use the first runner
  const named = [...new Set(variants.flatMap((v) => (v.dtype ? [v.dtype] : [])))];
  const dtypes: (KVDType | undefined)[] = named.length ? named : [undefined];
  const runner = await createRunner({
    ...runnerOpts,
    modelDir: opts.modelDir,
    backend: opts.backend ?? 'auto',
    threads: opts.threads,
    weightDType: opts.weightDType,
    // exact K/V: the reuse modes' scores compare against f32 caches (and squeezed attention's fused
    // native step needs them), not the serving default's f16 rounding
    kvCacheDType: opts.kvCacheDType ?? 'f32',
    dtype: dtypes[0],
  });
  const engine = runner.core.engine;
  // one runner per further artifact dtype, over the same engine
  const runners = new Map<KVDType | undefined, Runner>([[dtypes[0], runner]]);
  for (const dtype of dtypes.slice(1))
    runners.set(dtype, await createRunner({ ...runnerOpts, engine, dtype }));
  // each runner's own credential on every call to it, as the API sends it
  const fetchOf = (r: Runner): FetchFn => withRunnerToken((q) => r.app.fetch(q), r.core.credential.current);
  const fetches = new Map([...runners].map(([dtype, r]) => [dtype, fetchOf(r)]));
  const fetchFor = (v: Variant): FetchFn => fetches.get(v.dtype) ?? fetchOf(runner);
  const cells: EvalCell[] = [];
  let stopped: EvalResult['stopped'] = null;
  const filler = opts.filler ?? 'lexicon';
  const prose = filler === 'prose' ? loadEvalProse().map((d) => d.lines) : undefined;
  try {
    for (const r of runners.values()) await r.start();
    // one set of episodes per (context, suite); run round-robin, episode i of every set before episode
    // i + 1 of any, so a run stopped early still has every cell, with n differing by at most one
    const sets = opts.contexts.flatMap((context) =>
      opts.suites.map((suite) => ({
        context,
        suite,
        episodes: heldoutEpisodes(opts.seed, suite, context, opts.n, filler, prose),
        ran: 0,
        acc: variants.map((v) => ({
          v,
          correct: 0,
          ms: 0,
          tokens: 0,
          cached: 0,
          frac: 0,
          fracN: 0,
          dens: 0,
          densN: 0,
          notes: new Set<string>(),
          misses: [] as EvalMiss[],
        })),
      })),
    );
    const t0 = performance.now();
    rounds: for (let i = 0; i < opts.n; i++) {
      for (const set of sets) {
        if (opts.signal?.aborted) {
          stopped = { reason: String(opts.signal.reason ?? 'stopped'), rounds: i, of: opts.n };
          break rounds;
        }
        const ep = set.episodes[i];
        const p = episodePrompt(ep);
        const total = promptTokens(p);
        if (total + p.answer.length + 1 > engine.maxContext)
          throw new Error(`episode of ${total} tokens does not fit the model context ${engine.maxContext}`);
        // artifacts are computed offline in production: store them before any variant is timed
        if (variants.some((v) => v.mode !== 'full'))
          for (const f of fetches.values()) await precompute(f, [p.system, ...p.chunks]);
        for (const a of set.acc) {
          const usage = await opts.generate(fetchFor(a.v), requestBody(p, a.v, opts));
          const s = scoreAnswer(usage.tokens, p.answer);
          a.tokens += total;
          a.ms += usage.timingsMs.total;
          a.cached += usage.cachedTokens;
          if (usage.squeezed) {
            a.frac += usage.squeezed.fraction;
            a.fracN++;
            if (usage.squeezed.note) a.notes.add(usage.squeezed.note);
          }
          if (usage.sparse) {
            a.dens += usage.sparse.density;
            a.densN++;
            if (usage.sparse.note) a.notes.add(usage.sparse.note);
            if (usage.sparse.dense) a.notes.add('a request ran dense (no sparse step)');
          }
          if (s.exact) a.correct++;
          else if (a.misses.length < MAX_MISSES)
            a.misses.push({
              episode: i,
              question: ep.qas[0].question,
              gold: ep.qas[0].answer,
              predicted: s.predicted,
              stop: s.stop,
            });
        }
        set.ran = i + 1;
      }
      say(
        `eval: ${i + 1}/${opts.n} episodes of every suite and context (${((performance.now() - t0) / 1000).toFixed(0)} s); ` +
          sets
            .map((set) => {
              const shown = set.acc.filter(
                (a) => a.v.kind === 'reuse' && ['full', 'independent'].includes(a.v.mode),
              );
              return `${set.suite}@${set.context} ${shown.map((a) => `${variantLabel(a.v)} ${a.correct}/${set.ran}`).join(' ')}`;
            })
            .join(', '),
      );
    }
    for (const set of sets)
      if (set.ran > 0)
        for (const a of set.acc)
          cells.push({
            suite: set.suite,
            context: set.context,
            variant: variantLabel(a.v),
            kind: a.v.kind,
            mode: a.v.mode,
            dtype: a.v.dtype ?? null,
            budget: a.v.kind === 'squeezed' ? a.v.budget : null,
            pattern: a.v.kind === 'sparse' ? a.v.pattern : null,
            n: set.ran,
            correct: a.correct,
            accuracy: a.correct / set.ran,
            meanPromptTokens: a.tokens / set.ran,
            meanCachedTokens: a.cached / set.ran,
            meanMs: a.ms / set.ran,
            squeezedKeysFraction: a.fracN > 0 ? a.frac / a.fracN : null,
            sparseDensity: a.densN > 0 ? a.dens / a.densN : null,
            notes: [...a.notes],
            misses: a.misses,
          });
  } finally {
    // the first runner owns the engine: stop it last
    for (const r of [...runners.values()].reverse()) await r.stop({ graceMs: 1000 });
  }
  return {
    model: opts.modelDir,
    fingerprint: engine.fingerprint,
    backend: engine.backend.name,
    weights: engine.model.weights.layers[0].q.dtype,
    kvCache: engine.backend.caps.kvDType,
    seed: opts.seed,
    n: opts.n,
    suites: [...opts.suites],
    filler,
    contexts: [...opts.contexts],
    variants: variants.map(variantLabel),
    blendRatio: opts.blendRatio ?? null,
    stopped,
    linkTokens: opts.linkTokens ?? null,
    unavailable,
    cells,
    date: new Date().toISOString(),
    wallS: (performance.now() - started) / 1000,
  };
}
