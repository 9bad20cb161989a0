// The model's tokenizer (tokenizer.json via @huggingface/tokenizers) plus the special ids the engine
// needs: bos, stop tokens, and the chat template from tokenizer_config.json.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Tokenizer } from '@huggingface/tokenizers';
import { ModelLoadError } from './errors.ts';

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

export function readTokenizerFiles(dir: string): TokenizerFiles {
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
  readonly inner: Tokenizer;
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
    this.config = files.config;
    this.bosToken = tokenString(files.config.bos_token);
    this.eosToken = tokenString(files.config.eos_token);
  }

  /** Encodes text; special-token strings in it become their ids. Adds no bos/eos. */
  encode(text: string): number[] {
    return this.inner.encode(text, { add_special_tokens: false }).ids;
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
