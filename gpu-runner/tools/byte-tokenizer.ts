// The byte-level tokenizer shared by every model kvrag makes (generated tiny models, the trained model).
// ids 0..255 are raw bytes (GPT-2 byte↔unicode mapping in the vocab, a BPE model with no merges, so
// every byte is one token); special tokens follow. Written as an ordinary Hugging Face tokenizer.json.
// Run directly to (re)write gpu-runner/tools/tokenizer/{tokenizer.json,tokenizer_config.json}.

export const SPECIAL_TOKENS = [
  '<|bos|>',
  '<|eos|>',
  '<|pad|>',
  '<|system|>',
  '<|user|>',
  '<|assistant|>',
  '<|doc|>',
  '<|/doc|>',
  '<|end|>',
] as const;

export type SpecialToken = (typeof SPECIAL_TOKENS)[number];

/** id of a special token: 256 + its index. */
export const specialId = (t: SpecialToken): number => 256 + SPECIAL_TOKENS.indexOf(t);

/** Vocabulary size of models using this tokenizer (bytes + specials, padded to a multiple of 16). */
export const BYTE_VOCAB_SIZE = 272;

/** GPT-2's reversible byte → printable unicode character mapping. */
export function bytesToUnicode(): string[] {
  const bs: number[] = [];
  for (let b = 33; b <= 126; b++) bs.push(b);
  for (let b = 161; b <= 172; b++) bs.push(b);
  for (let b = 174; b <= 255; b++) bs.push(b);
  const cs = bs.slice();
  let n = 0;
  for (let b = 0; b < 256; b++) {
    if (!bs.includes(b)) {
      bs.push(b);
      cs.push(256 + n);
      n++;
    }
  }
  const out = new Array<string>(256);
  bs.forEach((b, i) => {
    out[b] = String.fromCodePoint(cs[i]);
  });
  return out;
}

export function byteTokenizerJson(): object {
  const chars = bytesToUnicode();
  const vocab: Record<string, number> = {};
  chars.forEach((ch, id) => {
    vocab[ch] = id;
  });
  SPECIAL_TOKENS.forEach((t, i) => {
    vocab[t] = 256 + i;
  });
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: SPECIAL_TOKENS.map((content, i) => ({
      id: 256 + i,
      content,
      single_word: false,
      lstrip: false,
      rstrip: false,
      normalized: false,
      special: true,
    })),
    normalizer: null,
    pre_tokenizer: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: false },
    post_processor: null,
    decoder: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: false },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: false,
      vocab,
      merges: [],
    },
  };
}

/** Chat template: <|bos|> then <|role|>content<|end|> per message; the prompt ends with <|assistant|>. */
export const CHAT_TEMPLATE =
  "{{ bos_token }}{% for message in messages %}{{ '<|' + message['role'] + '|>' + message['content'] + '<|end|>' }}{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}";

export function tokenizerConfigJson(): object {
  return {
    tokenizer_class: 'PreTrainedTokenizerFast',
    bos_token: '<|bos|>',
    eos_token: '<|end|>',
    pad_token: '<|pad|>',
    add_bos_token: false,
    add_eos_token: false,
    model_max_length: 8192,
    chat_template: CHAT_TEMPLATE,
    added_tokens_decoder: Object.fromEntries(
      SPECIAL_TOKENS.map((content, i) => [
        String(256 + i),
        { content, lstrip: false, normalized: false, rstrip: false, single_word: false, special: true },
      ]),
    ),
  };
}

if (import.meta.main) {
  const { writeFileSync, mkdirSync } = await import('node:fs');
  const { join } = await import('node:path');
  const dir = join(import.meta.dirname, 'tokenizer');
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'tokenizer.json'), `${JSON.stringify(byteTokenizerJson(), null, 2)}\n`);
  writeFileSync(join(dir, 'tokenizer_config.json'), `${JSON.stringify(tokenizerConfigJson(), null, 2)}\n`);
  console.log(`wrote ${dir}/tokenizer.json and tokenizer_config.json`);
}
