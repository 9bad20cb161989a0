// Incremental detokenisation: turns a growing list of token ids into text deltas without ever
// splitting a UTF-8 character (a byte-level token may carry half of one). Decodes a small window of
// recent tokens and emits only once the window's text no longer ends in U+FFFD (the replacement
// character an incomplete byte sequence decodes to); the rest is flushed at the end.
import type { TextTokenizer } from './tokenizer.ts';

export class Detokenizer {
  readonly #tok: TextTokenizer;
  readonly #ids: number[] = [];
  #prefixOffset = 0; // start of the decode window
  #readOffset = 0; // tokens before this have been emitted
  text = '';

  constructor(tokenizer: TextTokenizer) {
    this.#tok = tokenizer;
  }

  /** Adds one token; returns the newly complete text (may be ''). */
  push(id: number): string {
    this.#ids.push(id);
    const prefix = this.#decode(this.#prefixOffset, this.#readOffset);
    const full = this.#decode(this.#prefixOffset, this.#ids.length);
    if (full.length > prefix.length && !full.endsWith('\uFFFD')) {
      const delta = full.slice(prefix.length);
      this.#prefixOffset = this.#readOffset;
      this.#readOffset = this.#ids.length;
      this.text += delta;
      return delta;
    }
    return '';
  }

  /** Emits whatever is pending, incomplete characters included (as U+FFFD). */
  flush(): string {
    const prefix = this.#decode(this.#prefixOffset, this.#readOffset);
    const full = this.#decode(this.#prefixOffset, this.#ids.length);
    const delta = full.slice(prefix.length);
    this.#prefixOffset = this.#readOffset = this.#ids.length;
    this.text += delta;
    return delta;
  }

  #decode(from: number, to: number): string {
    return from >= to ? '' : this.#tok.decode(this.#ids.slice(from, to), true);
  }
}
