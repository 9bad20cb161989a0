// Exact match of one greedy answer (EPISODES.md): the generated tokens begin with the gold answer's bytes
// and the very next token is <|end|>. Anything else — a wrong byte, a missing or different stop token
// (even <|eos|>), a truncated answer — is a miss.
import { TOKENS } from './episodes.ts';

export interface Scored {
  exact: boolean;
  /** What the model answered: generated tokens up to its first stop token (<|end|> or <|eos|>), as text. */
  predicted: string;
  /** The token that ended the answer: 'end', 'eos', or 'none' (no stop token within the tokens). */
  stop: 'end' | 'eos' | 'none';
}

export function scoreAnswer(generated: readonly number[], gold: readonly number[]): Scored {
  let cut = generated.findIndex((t) => t === TOKENS.end || t === TOKENS.eos);
  const stop = cut < 0 ? 'none' : generated[cut] === TOKENS.end ? 'end' : 'eos';
  if (cut < 0) cut = generated.length;
  const answer = generated.slice(0, cut);
  const predicted = Buffer.from(answer.map((t) => (t < 256 ? t : 0x3f))).toString('latin1');
  const exact = stop === 'end' && answer.length === gold.length && answer.every((t, i) => t === gold[i]);
  return { exact, predicted, stop };
}
