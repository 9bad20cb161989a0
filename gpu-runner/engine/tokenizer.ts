// The model's tokenizer (tokenizer.json via @huggingface/tokenizers) plus the special ids the engine
// needs: bos, stop tokens, and the chat template from tokenizer_config.json. A GGUF file's tokenizer
// metadata is read into the same two objects (gguf/tokenizer.ts).
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Tokenizer } from '@huggingface/tokenizers';
import { ModelLoadError } from './errors.ts';
import { locateModel, openGguf } from './gguf/location.ts';
import { ggufTokenizerFiles } from './gguf/tokenizer.ts';

export interface TokenizerFiles {
  tokenizer: Record<string, unknown>;
  config: Record<string, unknown>;
}

function readJson(path: string): Record<string, unknown> {
  try {
    return JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new ModelLoadError(path, `cannot read JSON: ${(err as Error).message}`);
  }
}

/** The tokenizer files of a model directory, or the tokenizer of a GGUF file / `ollama:` reference. */
export function readTokenizerFiles(model: string): TokenizerFiles {
  const at = locateModel(model);
  if (at.kind === 'gguf') return ggufTokenizerFiles(openGguf(at.file));
  const dir = at.dir;
  return {
    tokenizer: readJson(join(dir, 'tokenizer.json')),
    config: readJson(join(dir, 'tokenizer_config.json')),
  };
}

/** A special token in tokenizer_config.json is a string or `{content: string}`. */
function tokenString(v: unknown): string | null {
  if (typeof v === 'string') return v;
  if (v && typeof v === 'object' && typeof (v as { content?: unknown }).content === 'string') {
    return (v as { content: string }).content;
  }
  return null;
}

export class TextTokenizer {
  /** Recognises special-token strings (for text the chat template wrote). */
  readonly inner: Tokenizer;
  /** The same tokenizer without its special added tokens: their strings are ordinary text to it. */
  readonly #plain: Tokenizer;
  /** Special-token strings, longest first. */
  readonly specialStrings: readonly string[];
  readonly #specialIds: ReadonlySet<number>;
  readonly config: Record<string, unknown>;
  readonly bosToken: string | null;
  readonly eosToken: string | null;
  /** sha256 over tokenizer.json and tokenizer_config.json (for KV artifact headers). */
  readonly hash: string;
  constructor(files: TokenizerFiles) {
    this.hash = createHash('sha256')
      .update(JSON.stringify(files.tokenizer))
      .update('\0')
      .update(JSON.stringify(files.config))
      .digest('hex');
    this.inner = new Tokenizer(files.tokenizer, files.config);
    const added = (files.tokenizer.added_tokens ?? []) as { content: string; special?: boolean }[];
    this.#plain = new Tokenizer(
      { ...files.tokenizer, added_tokens: added.filter((t) => !t.special) },
      files.config,
    );
    this.specialStrings = added
      .filter((t) => t.special)
      .map((t) => t.content)
      .sort((a, b) => b.length - a.length);
    this.#specialIds = this.specialIds();
    this.config = files.config;
    this.bosToken = tokenString(files.config.bos_token);
    this.eosToken = tokenString(files.config.eos_token);
  }

  /**
   * Encodes text as plain text: a special-token string in it (`<|end|>` in a document or a question) is
   * encoded as the characters it is spelled with, never as the special id, so text cannot forge the
   * structure the chat template and the prompt format build. Adds no bos/eos.
   */
  encode(text: string): number[] {
    const ids: number[] = this.#plain.encode(text, { add_special_tokens: false }).ids;
    if (!ids.some((id) => this.#specialIds.has(id))) return ids;
    // The model's vocabulary gave a special string back as one word (a BPE ignoring merges for words
    // in its vocab): spell each occurrence character by character instead.
    return this.#splitSpecials(text).flatMap(([part, special]) =>
      special
        ? [...part].flatMap((ch) => this.#plain.encode(ch, { add_special_tokens: false }).ids)
        : this.#plainIds(part),
    );
  }

  /** Encodes text in which special-token strings are meant as specials (template output only). */
  encodeWithSpecials(text: string): number[] {
    return this.inner.encode(text, { add_special_tokens: false }).ids;
  }

  #plainIds(text: string): number[] {
    return text.length === 0 ? [] : this.#plain.encode(text, { add_special_tokens: false }).ids;
  }

  /** text cut at special-token strings: [piece, isSpecialString][]. */
  #splitSpecials(text: string): [string, boolean][] {
    if (this.specialStrings.length === 0) return [[text, false]];
    const re = new RegExp(
      this.specialStrings.map((s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('|'),
      'g',
    );
    const out: [string, boolean][] = [];
    let at = 0;
    for (const m of text.matchAll(re)) {
      if (m.index > at) out.push([text.slice(at, m.index), false]);
      out.push([m[0], true]);
      at = m.index + m[0].length;
    }
    if (at < text.length) out.push([text.slice(at), false]);
    return out;
  }

  decode(ids: readonly number[], skipSpecial = false): string {
    return this.inner.decode([...ids], {
      skip_special_tokens: skipSpecial,
      clean_up_tokenization_spaces: false,
    });
  }

  tokenId(token: string): number | undefined {
    return this.inner.token_to_id(token);
  }

  /** ids of every special (added) token. */
  specialIds(): Set<number> {
    const out = new Set<number>();
    for (const [id, t] of this.inner.get_added_tokens_decoder()) if (t.special) out.add(id);
    return out;
  }

  get chatTemplate(): string | null {
    const t = this.config.chat_template;
    if (typeof t === 'string') return t;
    // Some configs hold a list of named templates; use the default one.
    if (Array.isArray(t)) {
      const d = t.find((x) => x && typeof x === 'object' && (x as { name?: string }).name === 'default');
      return d ? String((d as { template: string }).template) : null;
    }
    return null;
  }
}
