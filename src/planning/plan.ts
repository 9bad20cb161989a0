// The explicit plan returned with every answer (DESIGN.md §5): what will be retrieved, how the fixed
// context is assembled and attended, and which model answers. Plain, versioned data.
import { z } from 'zod';

export const REUSE_MODES = ['full', 'prefix', 'independent', 'blend', 'link'] as const;
export type ReuseMode = (typeof REUSE_MODES)[number];

export const QUALITY = ['fast', 'balanced', 'exact'] as const;
export type Quality = (typeof QUALITY)[number];

export const retrievalStepSchema = z.object({
  /** 1-based; steps after the first exist only in iterative mode and run on sub-queries. */
  step: z.number().int().positive(),
  collection: z.string().min(1),
  query: z.string().min(1),
  k: z.number().int().positive(),
  filters: z.unknown().optional(),
});

export const generationPlanSchema = z.object({
  model: z.string().min(1),
  reuse: z.object({
    mode: z.enum(REUSE_MODES),
    /** CacheBlend recompute ratio (blend only). */
    blendRatio: z.number().min(0).max(1).optional(),
    /** EPIC: tokens recomputed at the head of every chunk but the first (link only). */
    linkTokens: z.number().int().min(0).optional(),
  }),
  /** Fraction of fixed-context keys attended (squeezed attention); null = dense. */
  squeezedBudget: z.number().gt(0).max(1).nullable(),
  sparsePrefill: z.enum(['off', 'auto']),
  maxTokens: z.number().int().positive(),
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
  }),
  /** Chunk order in the prompt: by score (best first) or best last (nearest the question). */
  chunkOrder: z.enum(['score-desc', 'score-asc']),
  generation: generationPlanSchema,
});

export type RetrievalStep = z.infer<typeof retrievalStepSchema>;
export type GenerationPlan = z.infer<typeof generationPlanSchema>;
export type Plan = z.infer<typeof planSchema>;
