// What a runner tells the API about the model it serves (DESIGN.md §5): everything the planner and the
// prompt builder need, read once from the model directory by the engine (gpu-runner/engine/
// model-profile.ts) and published at GET /v1/model and in every heartbeat. The API plans from this and
// never reads model files itself.
import { z } from 'zod';

export const modelProfileSchema = z.object({
  v: z.literal(1),
  /** Model id as clients name it: the model directory's name. */
  id: z.string().min(1).max(256),
  /** Fingerprint of the weights (DESIGN.md §4.1): artifacts, heartbeats and kv_artifacts are keyed by it. */
  fingerprint: z.string().regex(/^[A-Za-z0-9._-]{8,128}$/),
  /** Positions one sequence may use on this runner: the model's, capped by the runner's setting. */
  contextTokens: z.number().int().positive(),
  /** Decoder layers (blend needs layers past its check layer to save anything). */
  layers: z.number().int().positive(),
  /** Whether the runner renders chat messages with the model's chat template (tokenizer_config.json). */
  chatTemplate: z.boolean(),
  /** reuse.json: trained with block-diagonal chunk attention, so independent chunks are in-distribution. */
  independentTrained: z.boolean(),
  /**
   * sparse.json: live tokens from which sparse prefill beats dense, as measured by `kvrag sparse-search` on
   * these weights; null when there is no such measurement (the planner then leaves sparse prefill off).
   */
  sparseBreakEven: z.number().int().positive().nullable(),
  /** squeezed.json: the calibrated threshold τ; null when never calibrated (threshold mode needs one). */
  squeezedThreshold: z.number().positive().nullable(),
});
export type ModelProfile = z.infer<typeof modelProfileSchema>;
