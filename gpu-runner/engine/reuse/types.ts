// What prompt assembly takes and gives (assemble.ts): the request, the report and the assembled
// sequence. Plain types, so the scheduler can name them without loading the assembler. The reuse modes
// are the runner API's (contracts/reuse.ts).
import type { ReuseMode } from '../../../contracts/reuse.ts';
import type { FixedContext } from '../attention/squeezed/fixed-context.ts';
import type { SelectMode } from '../attention/squeezed/select.ts';
import type { SeqAttention } from '../attention/step-attention.ts';
import type { SequenceKV } from '../kv-cache.ts';

export interface AssembleRequest {
  /** System prefix token ids (may be empty). */
  system: readonly number[];
  chunks: readonly (readonly number[])[];
  question: readonly number[];
  mode: ReuseMode;
  /** blend: fraction of chunk tokens recomputed after the check layer. Default 0.15. */
  blendRatio?: number;
  /** blend: layer whose key deviation selects tokens. Default 1. */
  checkLayer?: number;
  /** link: tokens recomputed at the start of each chunk. Default 16. */
  linkTokens?: number;
  /** Extra cache room after the question (decode). Default 0. */
  reserve?: number;
  /**
   * Squeezed attention over the fixed context (DESIGN.md §4.2) for the question and every later step of
   * this sequence; null/absent = dense. Resolve a request's control with resolveControl (calibrate.ts).
   */
  squeezed?: SelectMode | null;
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
  /** Tokens in the sequence after the question. */
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

export interface Assembled {
  kv: SequenceKV;
  /** Squeezed attention's fixed context when it is used (its stats outlive the cache), else null. */
  fixed: FixedContext | null;
  /** How later steps of this sequence attend: pass it with every step input (null = dense). */
  attention: SeqAttention | null;
  /** Logits of the question's last token: [vocab]. */
  logits: Float32Array;
  report: AssembleReport;
  /** Frees the cache and the fixed context. */
  free(): void;
}

/** What the scheduler needs of an assembler. */
export interface SequenceAssembler {
  assemble(req: AssembleRequest): Promise<Assembled>;
}
