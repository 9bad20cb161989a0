// A question-difficulty estimate for small/large model routing (Hybrid LLM routes by predicted
// difficulty with a tunable threshold). No model is available to learn it from here, so it is a fixed,
// documented score over surface features that mark multi-hop and aggregate questions; deterministic.

const MULTI_HOP = [
  /\b(and|both|also)\b.*\?/i,
  /\b(compare|comparison|difference|differ|versus|vs\.?)\b/i,
  /\b(before|after|earlier|later|first|last)\b/i,
  /\b(why|how come|explain)\b/i,
  /\b(of the|whose|which one|that was)\b/i,
  /\b(how many|how much|total|sum|average|count)\b/i,
  /\b(all|every|each|list)\b/i,
];

export interface DifficultyFeatures {
  words: number;
  clauses: number;
  cues: number;
  numbers: number;
}

export function difficultyFeatures(question: string): DifficultyFeatures {
  const words = question.trim().split(/\s+/).filter(Boolean).length;
  const clauses = question.split(/[,;:?]|\band\b|\bthen\b/i).filter((s) => s.trim().length > 0).length;
  const cues = MULTI_HOP.filter((re) => re.test(question)).length;
  const numbers = (question.match(/\d+/g) ?? []).length;
  return { words, clauses, cues, numbers };
}

/** Difficulty in [0, 1]: a logistic score; about 0.2 for a short lookup, above 0.7 for multi-hop. */
export function estimateDifficulty(question: string): number {
  const f = difficultyFeatures(question);
  const z =
    -2.2 +
    0.045 * Math.min(f.words, 60) +
    0.35 * Math.min(f.clauses - 1, 4) +
    0.75 * f.cues +
    0.2 * Math.min(f.numbers, 3);
  return 1 / (1 + Math.exp(-z));
}
