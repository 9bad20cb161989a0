// The runner API (gpu-runner/server/app.ts) as plain, versionless JSON checked with zod on both sides:
// POST /v1/generate (the request; an SSE stream of `token` {text} events ending in one `done` {usage} or
// one `error` {code, message, request_id}), POST /v1/precompute, and the usage a finished sequence
// reports. The API builds requests with these types (src/answer/) and parses `done` with the same schema
// the runner's sequences fill in, so the two sides cannot drift.
import { z } from 'zod';
import { ARTIFACT_DTYPES, artifactKeySchema } from './artifacts.ts';
import { reuseControlSchema } from './reuse.ts';
import { sparseControlSchema } from './sparse.ts';
import { squeezedControlSchema } from './squeezed.ts';

/** How a runner is reached: global fetch for a remote runner, or the in-process runner app's own fetch. */
export type FetchFn = (input: Request) => Response | Promise<Response>;

/**
 * `fetchFn` with the runner credential on every request (Authorization: Bearer), which runners require on
 * every route but /healthz. Every way a caller reaches a runner — remote URLs, registry heartbeats, the
 * in-process app, the eval harness — goes through this.
 */
export function withRunnerToken(fetchFn: FetchFn, token: string): FetchFn {
  return (req) => {
    const authed = new Request(req);
    authed.headers.set('authorization', `Bearer ${token}`);
    return fetchFn(authed);
  };
}

const tokenIds = z.array(z.number().int().nonnegative()).min(1).max(131072);

/** Sampling of every generated token. */
export const samplingSchema = z.object({
  /** 0 = greedy. */
  temperature: z.number().min(0).max(10).default(0),
  /** 0 = no top-k cut. */
  topK: z.number().int().min(0).default(0),
  /** 1 = no nucleus cut. */
  topP: z.number().gt(0).max(1).default(1),
  /** Unset: a fresh random seed per sequence. */
  seed: z.number().int().min(0).max(0xffffffff).optional(),
});
export type SamplingParams = z.infer<typeof samplingSchema>;
export type SamplingInput = z.input<typeof samplingSchema>;

/**
 * A block of context: a stored artifact by key, token ids, or text (encoded by the runner). `text` may come
 * with `key` as its fallback: the runner encodes it (and recomputes the artifact) when the artifact is gone
 * or refused as corrupt.
 */
export const contextBlockSchema = z
  .object({
    key: artifactKeySchema.optional(),
    tokenIds: tokenIds.optional(),
    text: z.string().min(1).max(1_000_000).optional(),
  })
  .strict()
  .refine(
    (b) =>
      [b.key, b.tokenIds, b.key === undefined ? b.text : undefined].filter((x) => x !== undefined).length ===
      1,
    'exactly one of key, tokenIds and text (text may accompany key as its fallback)',
  );
export type ContextBlock = z.infer<typeof contextBlockSchema>;

export const chatMessageSchema = z
  .object({ role: z.enum(['system', 'user', 'assistant']), content: z.string().max(1_000_000) })
  .strict();
export type ChatMessage = z.infer<typeof chatMessageSchema>;

export const generateBodySchema = z
  .object({
    /** System prefix, placed before the chunks. */
    system: z.union([z.string().max(1_000_000), contextBlockSchema]).optional(),
    chunks: z.array(contextBlockSchema).max(256).default([]),
    /** The question as raw text (encoded as plain text) or as token ids (a prompt format's own turn) … */
    question: z.union([z.string().min(1).max(1_000_000), z.object({ tokenIds }).strict()]).optional(),
    /** … or chat messages, rendered with the model's chat template (ending with the assistant turn). */
    messages: z.array(chatMessageSchema).min(1).max(256).optional(),
    maxTokens: z.number().int().min(1).max(32768).default(256),
    sampling: samplingSchema.default({ temperature: 0, topK: 0, topP: 1 }),
    stop: z.array(z.string().min(1).max(256)).max(16).default([]),
    /** Ignore eos: generate exactly maxTokens (benchmarks). */
    ignoreEos: z.boolean().default(false),
    reuse: reuseControlSchema.default({ mode: 'independent' }),
    /**
     * Squeezed attention over the fixed context (DESIGN.md §4.2), reuse modes only: {mode: 'off'} (dense,
     * the default) | {mode: 'threshold', threshold?} (relative τ; the model's calibrated one unless given)
     * | {mode: 'budget', budget} (fraction of the fixed-context keys). Stats in the `done` event's `squeezed`.
     */
    squeezed: z
      .union([
        squeezedControlSchema,
        // the earlier placeholder, still sent by older API versions: dense
        z
          .object({ enabled: z.literal(false) })
          .strict()
          .transform(() => ({ mode: 'off' as const })),
      ])
      .optional(),
    /**
     * Sparse prefill of a long live segment (DESIGN.md §4.3): {mode: 'off'} (dense, the default) |
     * {mode: 'auto'} (the model's sparse.json: per-head patterns, dense below its break-even) |
     * {mode: 'pattern', pattern} (one pattern for every head, from 128 live tokens). Stats in the `done`
     * event's `sparse`.
     */
    sparse: z
      .union([
        sparseControlSchema,
        // the earlier placeholder, still sent by older API versions: dense
        z
          .object({ enabled: z.literal(false), pattern: z.string().max(64).optional() })
          .strict()
          .transform(() => ({ mode: 'off' as const })),
      ])
      .optional(),
    /** Per-request deadline, ms from arrival: the sequence ends with finish reason `deadline`. */
    deadlineMs: z.number().int().min(1).max(3_600_000).optional(),
  })
  .strict()
  .refine((b) => (b.question === undefined) !== (b.messages === undefined), {
    message: 'exactly one of question and messages',
  });
/** The request as the runner sees it after parsing (defaults filled in). */
export type GenerateBody = z.output<typeof generateBodySchema>;
/** The request as a client writes it (defaults optional). */
export type GenerateRequest = z.input<typeof generateBodySchema>;

/** Chunks one POST /v1/precompute may carry. */
export const MAX_PRECOMPUTE_CHUNKS = 64;

export const precomputeBodySchema = z
  .object({
    chunks: z
      .array(
        z
          .object({ tokenIds: tokenIds.optional(), text: z.string().min(1).max(1_000_000).optional() })
          .strict()
          .refine(
            (c) => (c.tokenIds === undefined) !== (c.text === undefined),
            'exactly one of tokenIds and text',
          ),
      )
      .min(1)
      .max(MAX_PRECOMPUTE_CHUNKS),
    /** Artifact dtype; default: the runner's own (the one its requests read). */
    dtype: z.enum(ARTIFACT_DTYPES).optional(),
  })
  .strict();
export type PrecomputeBody = z.infer<typeof precomputeBodySchema>;

/** Why a sequence ended. `error` and `shutdown` are failures a client may retry on another runner. */
export const FINISH_REASONS = ['stop', 'length', 'aborted', 'deadline', 'shutdown', 'error'] as const;
export type FinishReason = (typeof FINISH_REASONS)[number];

const count = z.number().min(0);

/** Squeezed attention over the fixed context, when it was asked for. */
export const squeezedUsageSchema = z.object({
  /** fixed-context keys attended (Σ steps × layers × kv heads) */
  keysAttended: count,
  /** keysAttended / fixed-context keys over the same steps, layers and kv heads (1 = dense) */
  fraction: count,
  bytesTouched: count,
  /** fixed-context tokens without an index (attended in full) */
  unindexedTokens: count,
  /** why it was not used, when it was not (e.g. full mode, a backend without attentionRanges) */
  note: z.string().optional(),
});
export type SqueezedUsage = z.infer<typeof squeezedUsageSchema>;

/** Sparse prefill of the live tokens, when it was asked for. */
export const sparseStatsSchema = z.object({
  /** patterns that ran ('+'-joined, FlexPrefill as flexprefill:query-aware / :vertical-slash), or 'dense' */
  pattern: z.string(),
  /** attended ÷ dense causal (query, key) pairs over every attention step of the request */
  density: count,
  /** true when no step ran sparse */
  dense: z.boolean(),
});
export type SparseStats = z.infer<typeof sparseStatsSchema>;

/**
 * A sequence's timings, ms from its arrival at the runner; ttft is -1 (and prefill -1) when no token was
 * produced. ttft = queueWait + load + rotate + recompute + squeeze + prefill: the assembly phases (0 in
 * full mode; summed over assemblies after a preemption), then `prefill`, the rest up to the first token
 * (the live prefill: the question in reuse modes, the whole prompt in full mode, and the first sample).
 * The five parts are absent from runners older than the split.
 */
export const runnerTimingsSchema = z.object({
  queueWait: z.number(),
  ttft: z.number(),
  total: z.number(),
  /** Assembly as a whole (load + rotate + recompute + squeeze + the question's first token). */
  assemble: z.number(),
  /**
   * Reading artifacts from their tiers (and computing missing ones): the placement's wall time beyond the
   * other three phases (a layer-wise placement loads later layers while it rotates earlier ones).
   */
  load: z.number().optional(),
  /** Re-rotating the artifacts' keys to their positions. */
  rotate: z.number().optional(),
  /** Selective recompute (blend, link) and live prefill of blocks without artifacts during assembly. */
  recompute: z.number().optional(),
  /** Preparing the fixed context for squeezed attention. */
  squeeze: z.number().optional(),
  prefill: z.number().optional(),
});
export type RunnerTimings = z.infer<typeof runnerTimingsSchema>;
/** The assembly phases a sequence's ttft is split into. */
export type AssemblyPhases = Required<Pick<RunnerTimings, 'load' | 'rotate' | 'recompute' | 'squeeze'>>;

/** Usage and timings of a finished sequence: the data of the SSE `done` event. */
export const runnerUsageSchema = z.object({
  finishReason: z.enum(FINISH_REASONS),
  error: z.string().optional(),
  text: z.string(),
  /** The generated token ids. */
  tokens: z.array(z.number().int().nonnegative()),
  promptTokens: count,
  completionTokens: count,
  /** Prompt tokens whose K/V came from stored artifacts. */
  cachedTokens: count,
  /** Prompt tokens computed live (prefill, selective recompute, recompute after preemption). */
  prefillTokens: count,
  decodeTokens: count,
  /** Dense causal attention: Σ over computed tokens of the keys each one attended (per layer and head). */
  keysAttended: count,
  /** Bytes read per artifact tier (engine, host, disk, object). */
  bytesLoaded: z.record(z.string(), count),
  preemptions: count,
  timingsMs: runnerTimingsSchema,
  squeezed: squeezedUsageSchema.optional(),
  sparse: sparseStatsSchema.extend({ note: z.string().optional() }).optional(),
});
export type RunnerUsage = z.infer<typeof runnerUsageSchema>;

/** The generate stream as a client consumes it: text deltas, then the usage. */
export type RunnerEvent = { type: 'token'; text: string } | { type: 'done'; usage: RunnerUsage };

/** The SSE events of POST /v1/generate, by event name. */
export const generateEventSchemas = {
  token: z.object({ text: z.string() }),
  done: runnerUsageSchema,
  error: z.object({ code: z.string(), message: z.string(), request_id: z.string().optional() }).loose(),
} as const;
