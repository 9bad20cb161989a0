// What the API and the workers need of the runner model's tokenizer: chunk sizes are counted in its
// tokens, and precompute jobs carry its token ids. The engine's TextTokenizer
// (gpu-runner/engine/tokenizer.ts) implements it; the cli hands it to the workers (workers/serving-model.ts).

/** The runner model's tokenizer, without special tokens (no BOS): counts must be those of the text. */
export interface Tokenizer {
  encode(text: string): number[];
  decode(ids: number[]): string;
}
