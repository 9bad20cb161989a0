// A long retrieval-style prompt of exactly n tokens for measuring sparse prefill on a real model: the
// training episodes' shape (system line, documents of filler sentences with planted key–value facts,
// then a question about one of them), deterministic from a seed. Text uses the model's special tokens
// (<|bos|>, <|system|>, <|doc|>, …) where its tokenizer has them.
import type { TextTokenizer } from '../../tokenizer.ts';

const ADJ =
  'old quiet green small bright heavy narrow warm cold distant busy silent pale wide early late'.split(' ');
const NOUN =
  'river mill garden tower market bridge valley forest harbor village window road field lamp table'.split(
    ' ',
  );
const VERB = 'crosses faces follows reaches passes holds shelters circles joins watches leaves touches'.split(
  ' ',
);
const KEYS = 'ABCDEFGHJKLMNPQRSTUVWXYZ';

function mulberry(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function special(tok: TextTokenizer, s: string, fallback: string): string {
  return tok.tokenId(s) === undefined ? fallback : s;
}

/** Token ids of a prompt of exactly n tokens (n ≥ 64). */
export function longPrompt(tok: TextTokenizer, n: number, seed = 1): number[] {
  const r = mulberry(seed);
  const pick = <T>(xs: readonly T[]) => xs[Math.floor(r() * xs.length)];
  const key = () => Array.from({ length: 6 }, () => pick([...KEYS])).join('');
  const doc = special(tok, '<|doc|>', '\n');
  const endDoc = special(tok, '<|/doc|>', '\n');
  const facts: [string, string][] = [];
  const head = `${special(tok, '<|bos|>', '')}${special(tok, '<|system|>', '')}Answer with the exact value from the documents.${special(tok, '<|end|>', '\n')}`;
  const question = () => {
    const [k] = facts.length > 0 ? pick(facts) : ['NONE'];
    return `${special(tok, '<|user|>', '\n')}What is the value of ${k}?${special(tok, '<|end|>', '\n')}${special(tok, '<|assistant|>', '\n')}`;
  };
  let body = '';
  const ids = () => tok.encodeWithSpecials(head + body + question());
  while (ids().length < n) {
    let d = doc;
    for (let s = 0; s < 24; s++) {
      if (r() < 0.08) {
        const f: [string, string] = [key(), key()];
        facts.push(f);
        d += `The value of ${f[0]} is ${f[1]}. `;
      } else d += `The ${pick(ADJ)} ${pick(NOUN)} ${pick(VERB)} the ${pick(ADJ)} ${pick(NOUN)}. `;
    }
    body += `${d}${endDoc}`;
  }
  const all = ids();
  const q = tok.encodeWithSpecials(question());
  // keep the question at the end: cut the documents
  return [...all.slice(0, n - q.length), ...q];
}
