// The held-out RAG episodes of gpu-runner/tools/train/episodes.py, ported call for call (same lexicon,
// same random draws through PyRandom), so `kvrag eval` can build them without Python — byte-identical to
// `heldout_episodes(seed, kind, L, n)` (test/unit/eval-episodes.test.ts checks it). The prompt contract
// is gpu-runner/tools/train/EPISODES.md: [<|bos|><|system|>SYSTEM<|end|>][<|doc|>chunk<|/doc|>]…
// <|user|>question<|end|><|assistant|> → answer<|end|>.
import { PyRandom } from './py-random.ts';

export const FACT_TYPES = ['passkey', 'kv', 'twohop'] as const;
export type FactType = (typeof FACT_TYPES)[number];

export const SYSTEM_TEXT = 'Answer with the exact value from the documents.';

/** Special-token ids of the byte tokenizer (gpu-runner/tools/byte-tokenizer.ts). */
export const TOKENS = {
  bos: 256,
  eos: 257,
  pad: 258,
  system: 259,
  user: 260,
  assistant: 261,
  doc: 262,
  endDoc: 263,
  end: 264,
} as const;

const ADJ = (
  'old quiet green small bright heavy narrow warm cold distant busy silent pale wide early ' +
  'late round soft sharp golden'
).split(' ');
const NOUN = (
  'river mill garden tower market bridge valley forest harbor village window road field ' +
  'lamp table letter train cloud stone school island engine orchard library kitchen'
).split(' ');
const VERB = (
  'crosses faces follows reaches passes holds shelters circles joins watches leaves ' + 'touches meets hides'
).split(' ');
const PREP = 'near beside under behind above beyond along across'.split(' ');
const TAIL = [
  'in spring',
  'at dawn',
  'every evening',
  'after the rain',
  'in the winter',
  'by noon',
  'for many years',
  'without a sound',
  'once again',
  'at night',
];
const KEY_ALPHABET = [...'ABCDEFGHJKLMNPQRSTUVWXYZ'];

export interface QA {
  kind: FactType;
  question: string;
  answer: string;
}

/** One episode as episodes.py's Episode.to_json() writes it (mode is always "full" for held-out sets). */
export interface Episode {
  system: string | null;
  chunks: string[];
  mode: 'full';
  qas: QA[];
  meta: { ctx_tokens_target: number };
}

function fillerSentence(rng: PyRandom): string {
  let s =
    `the ${rng.choice(ADJ)} ${rng.choice(NOUN)} ${rng.choice(VERB)} the ${rng.choice(ADJ)} ` +
    `${rng.choice(NOUN)} ${rng.choice(PREP)} the ${rng.choice(NOUN)}`;
  if (rng.random() < 0.5) s += ` ${rng.choice(TAIL)}`;
  return `${s[0].toUpperCase()}${s.slice(1)}.`;
}

function newKey(rng: PyRandom, used: Set<string>): string {
  for (;;) {
    let k = '';
    for (let i = 0; i < 5; i++) k += rng.choice(KEY_ALPHABET);
    if (!used.has(k)) {
      used.add(k);
      return k;
    }
  }
}

const newValue = (rng: PyRandom) => String(rng.randint(100000, 999999));

function plantFacts(rng: PyRandom, kinds: readonly FactType[], nDistractors: number) {
  const used = new Set<string>();
  const facts: string[] = [];
  const qas: QA[] = [];
  for (const kind of kinds) {
    if (kind === 'passkey') {
      const p = String(rng.randint(10000, 99999));
      facts.push(`The pass key is ${p}. Remember it. ${p} is the pass key.`);
      qas.push({ kind, question: 'What is the pass key?', answer: p });
    } else if (kind === 'kv') {
      const k = newKey(rng, used);
      const v = newValue(rng);
      facts.push(`Record ${k}: ${v}.`);
      qas.push({ kind, question: `What is the value of record ${k}?`, answer: v });
    } else {
      const k1 = newKey(rng, used);
      const k2 = newKey(rng, used);
      const v = newValue(rng);
      facts.push(`Record ${k1}: ${k2}.`);
      facts.push(`Record ${k2}: ${v}.`);
      qas.push({ kind, question: `Follow the link from record ${k1}?`, answer: `${k2}: ${v}` });
    }
  }
  for (let i = 0; i < nDistractors; i++) {
    // Python evaluates the f-string left to right: the key is drawn before the value
    const k = newKey(rng, used);
    facts.push(`Record ${k}: ${newValue(rng)}.`);
  }
  return { facts, qas };
}

function buildChunks(rng: PyRandom, ctxBytes: number, facts: readonly string[], min = 64, max = 512) {
  const sizes: number[] = [];
  let left = ctxBytes;
  while (left > 0) {
    const s = Math.min(left, rng.randint(min, max));
    sizes.push(Math.max(s, 24));
    left -= s;
  }
  const sentences: string[][] = [];
  for (const size of sizes) {
    const sents = [fillerSentence(rng)];
    let n = sents[0].length + 2;
    for (;;) {
      const s = fillerSentence(rng);
      if (n + Math.floor((s.length + 1) / 2) > size) break;
      sents.push(s);
      n += s.length + 1;
    }
    sentences.push(sents);
  }
  for (const fact of facts) {
    const c = rng.randrange(sentences.length);
    sentences[c].splice(rng.randint(0, sentences[c].length), 0, fact);
  }
  return sentences.map((s) => s.join(' '));
}

/** make_episode(rng, ctx_tokens, 1, "full", kinds=[kind], n_distractors=nd, system=True). */
function makeEpisode(rng: PyRandom, ctxTokens: number, kind: FactType, nDistractors: number): Episode {
  const { facts, qas } = plantFacts(rng, [kind], nDistractors);
  const overhead = 1 + (SYSTEM_TEXT.length + 2) + facts.reduce((s, f) => s + f.length + 1, 0);
  const chunks = buildChunks(rng, Math.max(64, ctxTokens - overhead), facts);
  return { system: SYSTEM_TEXT, chunks, mode: 'full', qas, meta: { ctx_tokens_target: ctxTokens } };
}

/**
 * heldout_episodes(seed, kind, ctx_tokens, n): single-question episodes with the system prefix, seeded by
 * the string `heldout-{seed}-{kind}-full-{ctxTokens}`; passkey has no distractors, kv and twohop 3.
 */
export function heldoutEpisodes(seed: number, kind: FactType, ctxTokens: number, n: number): Episode[] {
  const rng = new PyRandom(`heldout-${seed}-${kind}-full-${ctxTokens}`);
  const nd = kind === 'passkey' ? 0 : 3;
  return Array.from({ length: n }, () => makeEpisode(rng, ctxTokens, kind, nd));
}

const bytes = (text: string) => [...Buffer.from(text, 'utf8')];

/** The episode as the runner's blocks: [bos + system] prefix, one block per chunk, the question turn. */
export interface EpisodePrompt {
  /** <|bos|><|system|>SYSTEM<|end|> */
  system: number[];
  /** <|doc|>chunk<|/doc|> each */
  chunks: number[][];
  /** <|user|>question<|end|><|assistant|> */
  question: number[];
  /** The gold answer's bytes (it must be followed by <|end|>). */
  answer: number[];
}

export function episodePrompt(ep: Episode, qa: QA = ep.qas[0]): EpisodePrompt {
  const T = TOKENS;
  return {
    system: ep.system === null ? [T.bos] : [T.bos, T.system, ...bytes(ep.system), T.end],
    chunks: ep.chunks.map((c) => [T.doc, ...bytes(c), T.endDoc]),
    question: [T.user, ...bytes(qa.question), T.end, T.assistant],
    answer: bytes(qa.answer),
  };
}

/** Prompt tokens of an episode (bos + system + chunks + question turn). */
export const promptTokens = (p: EpisodePrompt) =>
  p.system.length + p.chunks.reduce((s, c) => s + c.length, 0) + p.question.length;
