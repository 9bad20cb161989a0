// Reuse modes of the fixed context (DESIGN.md §4.1), the one list the planner, the runner API, the engine,
// eval and benches share:
//   full        prefill everything live (the baseline)
//   prefix      the system prefix from its artifact (exact), the rest prefilled live
//   independent every block from its artifact, keys re-rotated to their slot (TurboRAG); only the
//               question is prefilled; chunks never attend to each other
//   blend       independent, then CacheBlend's selective recompute of chunk tokens
//   link        independent, then EPIC's recompute of the first tokens of each chunk not at slot 0
import { z } from 'zod';

export const REUSE_MODES = ['full', 'prefix', 'independent', 'blend', 'link'] as const;
export type ReuseMode = (typeof REUSE_MODES)[number];

/** How a request reuses stored chunk K/V, in the runner request (generate `reuse`). */
export const reuseControlSchema = z
  .object({
    mode: z.enum(REUSE_MODES).default('independent'),
    /** CacheBlend recompute ratio (blend only). */
    blendRatio: z.number().gt(0).max(1).optional(),
    /** EPIC: tokens recomputed at the head of every chunk but the first (link only). */
    linkTokens: z.number().int().min(0).max(4096).optional(),
  })
  .strict();
export type ReuseControl = z.output<typeof reuseControlSchema>;
