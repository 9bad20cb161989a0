// What the ingest side needs of the serving model, without its weights: the tokenizer (chunk sizes are
// counted in its tokens, and precompute jobs carry its token ids) and the model fingerprint (artifacts
// are keyed by it). The fingerprint comes from the `.kvrag-fingerprint.json` cache beside the model when
// the files are unchanged; only a stale or missing cache reads the weights once to recompute it.
import { modelFingerprint } from '../gpu-runner/engine/fingerprint.ts';
import { readTokenizerFiles, TextTokenizer } from '../gpu-runner/engine/tokenizer.ts';
import type { Tokenizer } from '../contracts/tokenizer.ts';

export interface ServingModel {
  /** The model directory (parse threads load the tokenizer from it). */
  dir: string;
  /** kv_artifacts.model_fingerprint of the artifacts this deployment serves. */
  fingerprint: string;
  /** Encodes without special tokens: the ids a runner prefills for a chunk. */
  tokenizer: Tokenizer;
}

/** The model's tokenizer, without special tokens. */
export function loadTokenizer(modelDir: string): Tokenizer {
  const text = new TextTokenizer(readTokenizerFiles(modelDir));
  return { encode: (s) => text.encode(s), decode: (ids) => text.decode(ids) };
}

export function loadServingModel(modelDir: string): ServingModel {
  return { dir: modelDir, fingerprint: modelFingerprint(modelDir), tokenizer: loadTokenizer(modelDir) };
}
