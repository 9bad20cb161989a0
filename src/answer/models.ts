// The models this deployment serves, as the planner and the prompt builder see them, learned from the
// runners' own profiles (contracts/model-profile.ts: heartbeats, GET /v1/model, the in-process engine) —
// the API never reads model files. A model stays known once a runner has reported it, so when every runner
// of it is down a request is still planned and fails at routing (502 upstream_unavailable), as before any
// runner failed; a newer profile of the same fingerprint replaces the older one.
import type { ModelProfile } from '../../contracts/model-profile.ts';
import type { ServedModel } from '../planning/planner.ts';

/** A model the deployment serves: the planner's view plus what routing and prompting need. */
export interface AnswerModel extends ServedModel {
  /** Runner model fingerprint (heartbeats and kv_artifacts are keyed by it). */
  fingerprint: string;
  /** Whether the runner can render chat messages with the model's template. */
  chatTemplate: boolean;
  /** Unix seconds, for GET /v1/models. */
  created: number;
}

/** Throughput estimates for the planner's latency budget until runners report measured ones. */
const PREFILL_TOKENS_PER_SEC = 2_000;
const LOAD_TOKENS_PER_SEC = 200_000;

export interface ModelCatalogOptions {
  /** Profiles known before any runner is asked (embedded mode: the in-process engine's). */
  seed?: readonly ModelProfile[];
  /** The API's own cap on the prompt (KVRAG_MAX_CONTEXT), on top of each runner's. */
  maxContext?: number;
  /** Unix ms (tests pin it); a model's `created` is when this catalog first saw it. */
  now?: () => number;
}

export class ModelCatalog {
  readonly #live: () => Promise<ModelProfile[]>;
  readonly #known = new Map<string, { profile: ModelProfile; created: number }>();
  readonly #maxContext: number;
  readonly #now: () => number;

  /** `live`: the profiles live runners report now (RunnerPool.profiles). */
  constructor(live: () => Promise<ModelProfile[]>, opts: ModelCatalogOptions = {}) {
    this.#live = live;
    this.#maxContext = opts.maxContext ?? Number.POSITIVE_INFINITY;
    this.#now = opts.now ?? Date.now;
    for (const p of opts.seed ?? []) this.#learn(p);
  }

  #learn(profile: ModelProfile): void {
    const seen = this.#known.get(profile.fingerprint);
    this.#known.set(profile.fingerprint, {
      profile,
      created: seen?.created ?? Math.floor(this.#now() / 1000),
    });
  }

  /** Every model a runner has reported, by id. */
  async list(): Promise<AnswerModel[]> {
    for (const p of await this.#live()) this.#learn(p);
    return [...this.#known.values()]
      .map(({ profile, created }) => answerModel(profile, created, this.#maxContext))
      .sort((a, b) => a.id.localeCompare(b.id));
  }
}

/** The planner's and prompt builder's view of a runner's profile. */
export function answerModel(
  p: ModelProfile,
  created: number,
  maxContext = Number.POSITIVE_INFINITY,
): AnswerModel {
  return {
    id: p.id,
    fingerprint: p.fingerprint,
    chatTemplate: p.chatTemplate,
    created,
    contextTokens: Math.min(p.contextTokens, maxContext),
    tier: 'small',
    prefillTokensPerSec: PREFILL_TOKENS_PER_SEC,
    loadTokensPerSec: LOAD_TOKENS_PER_SEC,
    sparseBreakEven: p.sparseBreakEven,
    layers: p.layers,
    ...(p.independentTrained ? { independentTrained: true } : {}),
  };
}
