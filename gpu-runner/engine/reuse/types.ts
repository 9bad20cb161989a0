// What prompt assembly takes and gives (assemble.ts): the request, the report and the assembled
// sequence. Plain types, so the scheduler can name them without loading the assembler. The reuse modes
// are the runner API's (contracts/reuse.ts).
import type { ReuseMode } from '../../../contracts/reuse.ts';
import type { FixedContext } from '../attention/squeezed/fixed-context.ts';
import type { SelectMode } from '../attention/squeezed/select.ts';
import type { SeqAttention } from '../attention/step-attention.ts';
import type { SequenceKV } from '../kv-cache.ts';

/** The context of a prompt: [system prefix][chunk 1]…[chunk k], and how it is reused. */
export interface ContextRequest {
  /** System prefix token ids (may be empty). */
  system: readonly number[];
  chunks: readonly (readonly number[])[];
  mode: ReuseMode;
  /** blend: fraction of chunk tokens recomputed after the check layer. Default 0.15. */
  blendRatio?: number;
  /** blend: layer whose key deviation selects tokens. Default 1. */
  checkLayer?: number;
  /** link: tokens recomputed at the start of each chunk. Default 16. */
  linkTokens?: number;
  /**
   * Squeezed attention over the fixed context (DESIGN.md §4.2) for the question and every later step of
   * this sequence; null/absent = dense. Resolve a request's control with resolveControl (calibrate.ts).
   */
  squeezed?: SelectMode | null;
}

/** A whole prompt: the context, then the question prefilled over it (Assembler.assemble). */
export interface AssembleRequest extends ContextRequest {
  question: readonly number[];
  /** Extra cache room after the question (decode). Default 0. */
  reserve?: number;
}

/** The context placed in a cache of `capacity` positions; the caller prefills the question (place). */
export interface PlaceRequest extends ContextRequest {
  capacity: number;
}

/** How the fixed context was prepared for squeezed attention. */
export interface SqueezedReport {
  /** false with a reason when squeezed attention was asked for but not used */
  used: boolean;
  reason?: string;
  /** blocks with an index: from their artifact, or built now (artifact without a usable index) */
  indexedBlocks: number;
  builtIndexes: number;
  /** tokens of blocks without an index (prefilled live): attended in full */
  unindexedTokens: number;
}

export interface AssembleReport {
  mode: ReuseMode;
  /** Tokens in the sequence after the question (place: the context's). */
  tokens: number;
  /** Tokens whose K/V came from artifacts and were kept (not overwritten by recompute). */
  cachedTokens: number;
  /** Tokens' worth of live compute (all layers) before the question: prefill or selective recompute. */
  recomputedTokens: number;
  /** Tokens prefilled because their artifact was missing or refused (they are stored for next time). */
  precomputedTokens: number;
  questionTokens: number;
  /** Bytes read per tier ('engine' = device bytes copied from resident artifacts). */
  bytesLoaded: Record<string, number>;
  /** Artifacts served per tier. */
  artifactsByTier: Record<string, number>;
  /**
   * load: from the start until every artifact's K/V bytes are on the device and verified (wall clock; the
   * reads of lower tiers run beside everything else); rotate: kvUnpack (widen / dequantize
   * and re-rotate keys); question: its prefill up to the logits. With layer-wise loading (`independent`,
   * dense) these overlap: the question's layer l runs once layer l of every block is placed, so
   * load + rotate + question exceeds total; `wait` is how long the question's layers stood waiting for
   * loads (0 when everything arrived in time).
   */
  timingsMs: {
    load: number;
    rotate: number;
    recompute: number;
    squeeze: number;
    question: number;
    wait: number;
    total: number;
  };
  squeezed: SqueezedReport | null;
}

/** A placed context: the cache holds [system][chunks…], nothing of the question yet. */
export interface Placed {
  kv: SequenceKV;
  /** Squeezed attention's fixed context when it is used (its stats outlive the cache), else null. */
  fixed: FixedContext | null;
  /** How later steps of this sequence attend: pass it with every step input (null = dense). */
  attention: SeqAttention | null;
  report: AssembleReport;
  /** Frees the cache and the fixed context. */
  free(): void;
}

export interface Assembled extends Placed {
  /** Logits of the question's last token: [vocab]. */
  logits: Float32Array;
}

/**
 * A request's artifacts being read into engine memory ahead of its admission (each held there until it is
 * placed): place() takes the handles it needs; release() lets go of the rest (a request that ends waiting).
 */
export interface Prefetch {
  release(): void;
}

/** What the scheduler needs of an assembler. */
export interface SequenceAssembler {
  /** Starts reading the artifacts of a context that will be placed later (I/O overlaps the steps before). */
  prefetch(req: ContextRequest): Prefetch;
  /** Places a context (from its prefetch when given); the question is prefilled by the caller's steps. */
  place(req: PlaceRequest, prefetched?: Prefetch | null): Promise<Placed>;
}
