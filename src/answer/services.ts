// What the RAG use case needs, as plain interfaces: the database and embedding providers every /v1 route
// has, plus the answer services — the runner pool, the served models, the answer cache
// (ApiServices.answer). Types only. A route builds AnswerDeps from its request context
// (src/routes/answer-context.ts); another caller (a second route family, a job) builds it from its own.
import type { Log } from '../../contracts/log.ts';
import type { ContextBlock, RunnerUsage } from '../../contracts/runner-api.ts';
import type { Database } from '../db/types.ts';
import type { EmbeddingResolver } from '../embeddings/resolver.ts';
import type { Plan } from '../planning/plan.ts';
import type { HybridHit } from '../retrieval/hybrid.ts';
import type { RunnerPool } from '../routing/runner-client.ts';
import type { AnswerCache } from './cache.ts';
import type { AnswerModel, ModelCatalog } from './models.ts';

/** What one finished answer carries; what the answer cache stores. */
export interface CachedAnswer {
  text: string;
  finishReason: string;
  usage: RunnerUsage;
  plan: Plan;
  citations: Citation[];
}

/** The runners, served models, answer cache and system prefix of a deployment (ApiServices.answer). */
export interface AnswerServices {
  runners: RunnerPool;
  /** The models the runners report (models.ts): what the planner plans for. */
  models: ModelCatalog;
  cache?: AnswerCache<CachedAnswer>;
  /** System prefix before the chunks (default: prompt.ts DEFAULT_SYSTEM). */
  system?: string;
  /** Notes the artifacts each plan uses (kv_artifacts.last_used_at, written in batches). */
  artifactUse?: ArtifactUseSink;
}

/** Where the answer path notes the artifacts a plan used (artifact-use.ts writes them in batches). */
export interface ArtifactUseSink {
  record(fingerprint: string, chunkHashes: Iterable<string>): void;
}

/** Source [n] of an answer: the chunk it is, in the API's names. */
export interface Citation {
  n: number;
  chunk_id: string;
  document_id: string;
  filename: string;
  score: number;
  ordinal: number;
}

/** Everything the use case reads or writes, passed in by its caller. */
export interface AnswerDeps {
  db: Database;
  embeddings: EmbeddingResolver;
  answer: AnswerServices;
  log?: Log;
}

/** A request planned and retrieved, ready to send to a runner (prompt.ts builds the request). */
export interface Prepared {
  plan: Plan;
  model: AnswerModel;
  citations: Citation[];
  /** The retrieved chunks behind the citations, in the same order (source [n] = sources[n - 1]). */
  sources: HybridHit[];
  /** Artifact keys of the chunks whose artifacts are ready (routing prefers runners holding them). */
  artifactKeys: string[];
  /** The runner request's fixed context: system prefix and the numbered chunk blocks. */
  context: { system: string; chunks: ContextBlock[] };
  retrievalMs: number;
}
