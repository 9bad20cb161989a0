// The tokenizer of a GGUF file, as the tokenizer.json + tokenizer_config.json pair the engine's
// TextTokenizer reads. `tokenizer.huggingface.json` (the original tokenizer.json, which kvrag's exporter
// writes) is used as is when present; otherwise the vocabulary is rebuilt from `tokenizer.ggml.*`:
//  - "gpt2": byte-level BPE: tokens, merges ("a b"), and the pre-tokenizer regexes llama.cpp uses for
//    `tokenizer.ggml.pre`;
//  - "llama": SentencePiece: tokens with scores; llama.cpp merges the adjacent pair whose joined piece
//    has the highest score, which a BPE whose merges are ranked by that score reproduces; characters
//    outside the vocabulary fall back to <0xXX> byte tokens; spaces are "▁", with one prepended
//    (`tokenizer.ggml.add_space_prefix`, default true).
// Control tokens become special added tokens, user-defined tokens non-special added tokens.
import { ModelLoadError } from '../errors.ts';
import { TokenType } from './format.ts';
import { type GgufFile, meta, metaArray, metaNumber, metaString } from './reader.ts';

const GPT2 = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)";
const CONTRACTIONS = "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])";
const LLAMA3 = `${CONTRACTIONS}|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+`;
const QWEN2 = `${CONTRACTIONS}|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+`;

/** llama.cpp's pre-tokenizer regexes (applied in sequence) by `tokenizer.ggml.pre`. */
const PRE_REGEXES: Record<string, string[]> = {
  default: ['[\\p{P}\\$\\+<=>\\^~\\|]+', GPT2, '\\p{N}+', '[0-9][0-9][0-9]'],
  'gpt-2': [GPT2],
  'llama-bpe': [LLAMA3],
  llama3: [LLAMA3],
  qwen2: [QWEN2],
  smollm: ['\\p{N}', GPT2],
  starcoder: ['\\p{N}', GPT2],
};

/** The BPE pre-tokenizer types kvrag reproduces. */
export const GGUF_PRE_TYPES = Object.keys(PRE_REGEXES);

interface Vocab {
  tokens: string[];
  types: number[];
}

function addedTokens({ tokens, types }: Vocab): Record<string, unknown>[] {
  const out: Record<string, unknown>[] = [];
  tokens.forEach((content, id) => {
    const t = types[id];
    if (t !== TokenType.CONTROL && t !== TokenType.USER_DEFINED) return;
    out.push({
      id,
      content,
      single_word: false,
      lstrip: false,
      rstrip: false,
      normalized: false,
      special: t === TokenType.CONTROL,
    });
  });
  return out;
}

function vocabMap(tokens: string[]): Record<string, number> {
  const vocab: Record<string, number> = {};
  tokens.forEach((t, id) => {
    if (!(t in vocab)) vocab[t] = id;
  });
  return vocab;
}

function gpt2Tokenizer(file: GgufFile, v: Vocab): Record<string, unknown> {
  const pre = metaString(file, 'tokenizer.ggml.pre') ?? 'default';
  const regexes = PRE_REGEXES[pre];
  if (!regexes)
    throw new ModelLoadError(
      file.path,
      `tokenizer.ggml.pre "${pre}" is not supported (supported: ${GGUF_PRE_TYPES.join(', ')})`,
    );
  const merges = metaArray<string>(file, 'tokenizer.ggml.merges', 'string') ?? [];
  const byteLevel = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: false };
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: addedTokens(v),
    normalizer: null,
    pre_tokenizer: {
      type: 'Sequence',
      pretokenizers: [
        ...regexes.map((r) => ({
          type: 'Split',
          pattern: { Regex: r },
          behavior: 'Isolated',
          invert: false,
        })),
        byteLevel,
      ],
    },
    post_processor: null,
    decoder: byteLevel,
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: pre === 'llama-bpe' || pre === 'llama3',
      vocab: vocabMap(v.tokens),
      merges,
    },
  };
}

/** BPE merges equivalent to SentencePiece's highest-score-first joining of adjacent pieces. */
function spmMerges(v: Vocab, scores: number[]): string[] {
  const vocab = vocabMap(v.tokens);
  const candidates: { merge: string; score: number; id: number }[] = [];
  v.tokens.forEach((piece, id) => {
    if (v.types[id] !== TokenType.NORMAL && v.types[id] !== TokenType.USER_DEFINED) return;
    const chars = [...piece];
    for (let k = 1; k < chars.length; k++) {
      const left = chars.slice(0, k).join('');
      const right = chars.slice(k).join('');
      if (left in vocab && right in vocab)
        candidates.push({ merge: `${left} ${right}`, score: scores[id], id });
    }
  });
  candidates.sort((a, b) => b.score - a.score || a.id - b.id);
  return candidates.map((c) => c.merge);
}

function spmTokenizer(file: GgufFile, v: Vocab): Record<string, unknown> {
  const scores = metaArray<number>(file, 'tokenizer.ggml.scores', 'number');
  if (!scores || scores.length !== v.tokens.length)
    throw new ModelLoadError(file.path, 'tokenizer.ggml.scores must give one score per token');
  const addPrefix = meta(file, 'tokenizer.ggml.add_space_prefix') !== false;
  const unkId = metaNumber(file, 'tokenizer.ggml.unknown_token_id') ?? v.types.indexOf(TokenType.UNKNOWN);
  const replace = { type: 'Replace', pattern: { String: ' ' }, content: '▁' };
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: addedTokens(v),
    normalizer: addPrefix
      ? { type: 'Sequence', normalizers: [{ type: 'Prepend', prepend: '▁' }, replace] }
      : replace,
    pre_tokenizer: null,
    post_processor: null,
    decoder: {
      type: 'Sequence',
      decoders: [
        { type: 'Replace', pattern: { String: '▁' }, content: ' ' },
        { type: 'ByteFallback' },
        { type: 'Fuse' },
        ...(addPrefix ? [{ type: 'Strip', content: ' ', start: 1, stop: 0 }] : []),
      ],
    },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: unkId >= 0 ? v.tokens[unkId] : null,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: true,
      byte_fallback: true,
      ignore_merges: false,
      vocab: vocabMap(v.tokens),
      merges: spmMerges(v, scores),
    },
  };
}

/** tokenizer.json and tokenizer_config.json objects for a GGUF file. */
export function ggufTokenizerFiles(file: GgufFile): {
  tokenizer: Record<string, unknown>;
  config: Record<string, unknown>;
} {
  const tokens = metaArray<string>(file, 'tokenizer.ggml.tokens', 'string');
  if (!tokens || tokens.length === 0)
    throw new ModelLoadError(file.path, 'missing metadata "tokenizer.ggml.tokens"');
  const types =
    metaArray<number>(file, 'tokenizer.ggml.token_type', 'number') ?? tokens.map(() => TokenType.NORMAL);
  if (types.length !== tokens.length)
    throw new ModelLoadError(file.path, 'tokenizer.ggml.token_type must give one type per token');
  const v = { tokens, types };
  const hfJson = metaString(file, 'tokenizer.huggingface.json');
  const model = metaString(file, 'tokenizer.ggml.model');
  let tokenizer: Record<string, unknown>;
  if (hfJson !== undefined) {
    try {
      tokenizer = JSON.parse(hfJson);
    } catch (err) {
      throw new ModelLoadError(
        file.path,
        `tokenizer.huggingface.json is not JSON: ${(err as Error).message}`,
      );
    }
  } else if (model === 'gpt2') tokenizer = gpt2Tokenizer(file, v);
  else if (model === 'llama') tokenizer = spmTokenizer(file, v);
  else
    throw new ModelLoadError(
      file.path,
      `tokenizer.ggml.model ${JSON.stringify(model ?? null)} is not supported (gpt2, llama)`,
    );
  const token = (key: string) => {
    const id = metaNumber(file, `tokenizer.ggml.${key}`);
    if (id === undefined) return null;
    if (!Number.isInteger(id) || id < 0 || id >= tokens.length)
      throw new ModelLoadError(file.path, `tokenizer.ggml.${key} ${id} is not a token id`);
    return tokens[id];
  };
  const config: Record<string, unknown> = {
    tokenizer_class: 'PreTrainedTokenizerFast',
    bos_token: token('bos_token_id'),
    eos_token: token('eos_token_id'),
    add_bos_token: meta(file, 'tokenizer.ggml.add_bos_token') === true,
    add_eos_token: meta(file, 'tokenizer.ggml.add_eos_token') === true,
    clean_up_tokenization_spaces: false,
  };
  const template = metaString(file, 'tokenizer.chat_template');
  if (template !== undefined) config.chat_template = template;
  const unk = token('unknown_token_id');
  if (unk !== null) config.unk_token = unk;
  return { tokenizer, config };
}
