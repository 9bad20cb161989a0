// Request bodies of the runner API (plain, versionless JSON checked with zod at the boundary).
import { z } from 'zod';
import { sparseControlSchema } from '../engine/attention/sparse/prefill.ts';
import { squeezedControlSchema } from '../engine/attention/squeezed/select.ts';
import { REUSE_MODES } from '../engine/reuse/assemble.ts';
import { samplingSchema } from '../engine/sampler.ts';

const tokenIds = z.array(z.number().int().nonnegative()).min(1).max(131072);
const artifactKey = z.string().regex(/^[0-9a-f]{64}$/, 'must be a 64-character lowercase hex artifact key');

/**
 * A block of context: a stored artifact by key, token ids, or text (encoded by the runner). `text` may come
 * with `key` as its fallback: the runner encodes it (and recomputes the artifact) when the artifact is gone
 * or refused as corrupt.
 */
export const contextBlockSchema = z
  .object({
    key: artifactKey.optional(),
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

const messageSchema = z
  .object({ role: z.enum(['system', 'user', 'assistant']), content: z.string().max(1_000_000) })
  .strict();

export const generateBodySchema = z
  .object({
    /** System prefix, placed before the chunks. */
    system: z.union([z.string().max(1_000_000), contextBlockSchema]).optional(),
    chunks: z.array(contextBlockSchema).max(256).default([]),
    /** The question as raw text (encoded as plain text) or as token ids (a prompt format's own turn) … */
    question: z.union([z.string().min(1).max(1_000_000), z.object({ tokenIds }).strict()]).optional(),
    /** … or chat messages, rendered with the model's chat template (ending with the assistant turn). */
    messages: z.array(messageSchema).min(1).max(256).optional(),
    maxTokens: z.number().int().min(1).max(32768).default(256),
    sampling: samplingSchema.default({ temperature: 0, topK: 0, topP: 1 }),
    stop: z.array(z.string().min(1).max(256)).max(16).default([]),
    /** Ignore eos: generate exactly maxTokens (benchmarks). */
    ignoreEos: z.boolean().default(false),
    reuse: z
      .object({
        mode: z.enum(REUSE_MODES).default('independent'),
        blendRatio: z.number().gt(0).max(1).optional(),
        linkTokens: z.number().int().min(0).max(4096).optional(),
      })
      .strict()
      .default({ mode: 'independent' }),
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
export type GenerateBody = z.infer<typeof generateBodySchema>;

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
      .max(64),
    dtype: z.enum(['f16', 'f32']).default('f16'),
  })
  .strict();
export type PrecomputeBody = z.infer<typeof precomputeBodySchema>;
