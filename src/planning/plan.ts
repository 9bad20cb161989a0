// The explicit plan returned with every answer (DESIGN.md §5): what will be retrieved, how the fixed
// context is assembled and attended, and which model answers. Plain, versioned data.
import { z } from 'zod';
import { REUSE_MODES } from '../../contracts/reuse.ts';
import { sparseControlSchema } from '../../contracts/sparse.ts';
import { squeezedControlSchema } from '../../contracts/squeezed.ts';

export const QUALITY = ['fast', 'balanced', 'exact'] as const;
export type Quality = (typeof QUALITY)[number];

export const retrievalStepSchema = z.object({
  /** 1-based; steps after the first exist only in iterative mode and run on sub-queries. */
  step: z.number().int().positive(),
  collection: z.string().min(1),
  query: z.string().min(1),
  k: z.number().int().positive(),
  filters: z.unknown().optional(),
  /** After retrieval: chunks this step added (not found by an earlier step). */
  found: z.number().int().min(0).optional(),
  /** Iterative mode, after retrieval: share of the question's key terms the chunks so far contain. */
  covered: z.number().min(0).max(1).optional(),
});

/** Why iterative retrieval stopped (src/planning/iterative.ts). */
export const RETRIEVAL_STOPS = ['sufficient', 'max-steps', 'budget', 'no-sub-query', 'no-progress'] as const;
export type RetrievalStop = (typeof RETRIEVAL_STOPS)[number];

export const generationPlanSchema = z.object({
  model: z.string().min(1),
  reuse: z.object({
    mode: z.enum(REUSE_MODES),
    /** CacheBlend recompute ratio (blend only). */
    blendRatio: z.number().min(0).max(1).optional(),
    /** EPIC: tokens recomputed at the head of every chunk but the first (link only). */
    linkTokens: z.number().int().min(0).optional(),
  }),
  /** Squeezed attention over the fixed context, as the runner takes it; `off` = dense. */
  squeezed: squeezedControlSchema,
  /** Sparse prefill of the live tokens (question, and chunks prefilled live); `auto` = the model's config. */
  sparse: sparseControlSchema,
  maxTokens: z.number().int().positive(),
  /** Why the final plan chose its chunk count, reuse mode, squeezed budget and sparse policy (plain text). */
  why: z.object({ k: z.string(), reuse: z.string(), squeezed: z.string(), sparse: z.string() }).optional(),
});

export const planSchema = z.object({
  v: z.literal(1),
  quality: z.enum(QUALITY),
  difficulty: z.number().min(0).max(1),
  budget: z.object({
    /** Model context available to the prompt. */
    contextTokens: z.number().int().positive(),
    /** Tokens the plan may spend on retrieved chunks (all steps together). */
    documentTokens: z.number().int().min(0),
    /** Why the budget is what it is: the tightest of context, latency and compute limits. */
    limitedBy: z.enum(['context', 'latency', 'compute']),
  }),
  retrieval: z.object({
    mode: z.enum(['single', 'iterative']),
    maxSteps: z.number().int().positive(),
    steps: z.array(retrievalStepSchema),
    /** Iterative mode: why it stopped, and the question's key terms no chunk contains. */
    stop: z.enum(RETRIEVAL_STOPS).optional(),
    missingTerms: z.array(z.string()).optional(),
  }),
  /** Chunk order in the prompt: by score (best first) or best last (nearest the question). */
  chunkOrder: z.enum(['score-desc', 'score-asc']),
  generation: generationPlanSchema,
});

export type RetrievalStep = z.infer<typeof retrievalStepSchema>;
export type GenerationPlan = z.infer<typeof generationPlanSchema>;
export type Plan = z.infer<typeof planSchema>;
