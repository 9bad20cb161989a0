// Sparse prefill of the live tokens (DESIGN.md §4.3): the pattern names and the per-request control, one
// list for the planner, the runner API, the engine's pattern code, the sparse search and eval.
import { z } from 'zod';

export const SPARSE_PATTERNS = ['a-shape', 'vertical-slash', 'block-sparse', 'flexprefill'] as const;
export type SparsePattern = (typeof SPARSE_PATTERNS)[number];

/**
 * {mode: 'off'} (dense, the default) | {mode: 'auto'} (the model's sparse.json: per-head patterns, dense
 * below its break-even) | {mode: 'pattern', pattern} (one pattern for every head, from 128 live tokens).
 */
export const sparseControlSchema = z.discriminatedUnion('mode', [
  z.object({ mode: z.literal('off') }).strict(),
  z.object({ mode: z.literal('auto') }).strict(),
  z.object({ mode: z.literal('pattern'), pattern: z.enum(SPARSE_PATTERNS) }).strict(),
]);
export type SparseControl = z.infer<typeof sparseControlSchema>;
