// Squeezed attention over the fixed context (DESIGN.md §4.2): the per-request control, one schema for the
// planner's plan and the runner API.
import { z } from 'zod';

/**
 * off (dense); threshold (relative τ, the model's calibrated one unless given); budget (fraction of the
 * fixed-context keys attended).
 */
export const squeezedControlSchema = z.discriminatedUnion('mode', [
  z.object({ mode: z.literal('off') }).strict(),
  z.object({ mode: z.literal('threshold'), threshold: z.number().positive().max(1e6).optional() }).strict(),
  z.object({ mode: z.literal('budget'), budget: z.number().positive().max(1) }).strict(),
]);
export type SqueezedControl = z.infer<typeof squeezedControlSchema>;
