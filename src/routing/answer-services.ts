// What the answer routes (/v1/query, /v1/chat/completions, /v1/models) need beyond ApiServices' basics:
// the runner pool, the served models and the answer cache (ApiServices.answer). Types only.
import type { Plan } from '../planning/plan.ts';
import type { ServedModel } from '../planning/planner.ts';
import type { AnswerCache } from './answer-cache.ts';
import type { RunnerPool, RunnerUsage } from './runner-client.ts';

/** A model the deployment serves: the planner's view plus what routing and prompting need. */
export interface AnswerModel extends ServedModel {
  /** Runner model fingerprint (heartbeats and kv_artifacts are keyed by it). */
  fingerprint: string;
  /** Whether the runner can render chat messages with the model's template. */
  chatTemplate: boolean;
  /** Unix seconds, for GET /v1/models. */
  created: number;
}

export interface CachedAnswer {
  text: string;
  finishReason: string;
  usage: RunnerUsage;
  plan: Plan;
  citations: Citation[];
}

/** What the answer routes need beyond ApiServices' basics (ApiServices.answer). */
export interface AnswerServices {
  runners: RunnerPool;
  models: readonly AnswerModel[];
  cache?: AnswerCache<CachedAnswer>;
  /** System prefix before the chunks. */
  system?: string;
  /** Notes the artifacts each plan uses (kv_artifacts.last_used_at, written in batches). */
  artifactUse?: ArtifactUseSink;
}

/** Where the answer path notes the artifacts a plan used (artifact-use.ts writes them in batches). */
export interface ArtifactUseSink {
  record(fingerprint: string, chunkHashes: Iterable<string>): void;
}

export interface Citation {
  n: number;
  chunk_id: string;
  document_id: string;
  filename: string;
  score: number;
  ordinal: number;
}
