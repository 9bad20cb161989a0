// Sparse prefill (DESIGN.md §4.3): pattern names and parameters, and what a layer's choice looks like.
import { z } from 'zod';
import type { SparsePattern } from '../../../../contracts/sparse.ts';

/** Rows and positions per block of the pooled estimates (block-sparse; FlexPrefill uses its own, 128). */
export const QUERY_BLOCK = 64;
/**
 * Query rows per block of every plan (the kernel's unit). Small, because a kept diagonal costs each row
 * of a block as many keys as the block has rows (the band [p0 − o, p1 − o) of a block's rows).
 */
export const PLAN_BLOCK = 16;

export const aShapeParams = z.object({
  pattern: z.literal('a-shape'),
  /** first positions every query keeps (attention sinks) */
  sink: z.number().int().min(0).default(64),
  /** keys before a query block's first row that it keeps (plus its own block) */
  local: z.number().int().min(0).default(1024),
});
export const verticalSlashParams = z.object({
  pattern: z.literal('vertical-slash'),
  /** columns kept (top by attention of the last `last` queries) */
  vertical: z.number().int().min(1).default(1000),
  /** diagonals kept (offset query − key) */
  slash: z.number().int().min(1).default(1024),
  last: z.number().int().min(1).default(64),
});
export const blockSparseParams = z.object({
  pattern: z.literal('block-sparse'),
  /** key blocks (of 64) kept per query block, besides its own block and the first */
  topk: z.number().int().min(1).default(16),
});
export const flexPrefillParams = z.object({
  pattern: z.literal('flexprefill'),
  /** cumulative attention kept */
  gamma: z.number().gt(0).max(1).default(0.95),
  /** sqrt Jensen–Shannon divergence below which the query-aware (block) pattern is used */
  tau: z.number().min(0).max(1).default(0.1),
  /** block of the estimate (query pooling and key blocks) */
  block: z.number().int().min(16).default(128),
  /** least key blocks (query-aware) / columns and diagonals (vertical-slash) kept */
  minBudget: z.number().int().min(0).default(2),
});
export const patternParams = z.discriminatedUnion('pattern', [
  aShapeParams,
  verticalSlashParams,
  blockSparseParams,
  flexPrefillParams,
]);
/** One (layer, kv head)'s pattern and parameters. */
export type PatternParams = z.infer<typeof patternParams>;

/** Default parameters of a pattern (zod defaults). */
export function defaultParams(pattern: SparsePattern): PatternParams {
  return patternParams.parse({ pattern });
}

/** Host view of one span's attention geometry. The span's queries sit at positions pos0.., keys 0..nk-1. */
export interface SpanGeom {
  heads: number;
  kvHeads: number;
  headDim: number;
  scale: number;
  /** queries in the span */
  count: number;
  /** position of the span's first query */
  pos0: number;
}

/** One kv head's selection: per query block, flat [start, end) ranges and gathered columns. */
export interface HeadSelection {
  ranges: Int32Array[];
  columns: Int32Array[];
  /** the pattern actually used (FlexPrefill reports which of its two) */
  used: string;
}
