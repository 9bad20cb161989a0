// Retrieval steps of a plan (DESIGN.md §5): single-step (every collection once, on the question) or
// iterative (IterDRAG / Auto-RAG style). The iterative loop has no model in it — the bundled tiny model has
// not learned retrieval, so asking it for follow-up queries would be noise — and is deterministic instead:
// - the question's key terms (content words, lower-cased, plural "s" folded) are what the context must cover;
// - sub-queries come from the question's clauses (split at commas, semicolons and conjunctions), first the
//   clause holding the most terms still missing, with the named entities of the chunk the last step found
//   best appended (the bridge of a multi-hop question: "…and which city hosts it?" → "which city hosts it S12");
//   when no clause holds a missing term, the missing terms themselves;
// - after each step the context is sufficient when every key term occurs in a retrieved chunk;
// - it stops at the first of: sufficient, the step cap, the document budget spent (nextStepK = 0), no
//   sub-query left that was not asked already, a step that found no new chunk or covered no new term.
// Every step and the stop are written into the returned plan.
import type { Plan, RetrievalStep, RetrievalStop } from './plan.ts';
import { nextStepK, type PlannerContext } from './planner.ts';

export interface StepHit {
  chunkId: string;
  text: string;
  score: number;
  /** Chunk tokens (what the step spends of the document budget). */
  tokenCount: number;
}

const STOPWORDS = new Set(
  (
    'a an the and or but nor so yet of in on at to for from by with without about into onto over under ' +
    'as is are was were be been being am do does did done has have had having can could will would ' +
    'shall should may might must it its it’s this that these those there here then than also both ' +
    'either neither not no yes all any each every some such which what who whom whose where when why ' +
    'how whether if i you he she we they me him her us them my your his our their one ones tell give ' +
    'name please'
  ).split(/\s+/),
);

/** A word as coverage compares it: lower case, trailing plural "s" folded ("logs" and "log" match). */
function norm(word: string): string {
  const w = word.toLowerCase();
  return w.length > 3 && w.endsWith('s') && !w.endsWith('ss') ? w.slice(0, -1) : w;
}

const WORD = /[\p{L}\p{N}][\p{L}\p{N}'’-]*/gu;

/** The words of a text, normalised. */
function words(text: string): string[] {
  return (text.match(WORD) ?? []).map(norm);
}

/** Content words of a text as written, in order, each once (by their normalised form). */
function contentWords(text: string): string[] {
  const seen = new Set<string>();
  const out: string[] = [];
  for (const w of text.match(WORD) ?? []) {
    const n = norm(w);
    const stop = STOPWORDS.has(n) || STOPWORDS.has(w.toLowerCase()); // "does" folds to "doe"
    if (stop || (n.length < 3 && !/\d/.test(n)) || seen.has(n)) continue;
    seen.add(n);
    out.push(w);
  }
  return out;
}

/** Content words of a question, normalised, in order, each once: what retrieved chunks must cover. */
export function keyTerms(text: string): string[] {
  return contentWords(text).map(norm);
}

/**
 * A natural-language question rewritten for search (vector store search's `rewrite_query`): its content
 * words as written, without question words, fillers or repeats ("What is the default port of the
 * server?" → "default port server"); the question itself when no content word is left.
 */
export function searchQuery(question: string): string {
  const terms = contentWords(question);
  return terms.length > 0 ? terms.join(' ') : question.trim();
}

/** Clauses of a question: split at commas, semicolons and joining words; those with a key term. */
export function clauses(question: string): string[] {
  return question
    .split(/[,;:?!]|\s(?:and|then|also|as well as|but|while|versus|vs\.?|compared (?:to|with))\s/i)
    .map((s) => s.trim().replace(/\s+/g, ' '))
    .filter((s) => keyTerms(s).length > 0);
}

/** Named entities of a chunk (capitalised words and words with digits) that the question does not name. */
export function bridgeEntities(text: string, question: string, max = 3): string[] {
  const asked = new Set(words(question));
  const out: string[] = [];
  for (const w of text.match(WORD) ?? []) {
    if (!(/\d/.test(w) || /^\p{Lu}/u.test(w))) continue;
    const n = norm(w);
    if (asked.has(n) || STOPWORDS.has(n) || out.some((o) => norm(o) === n)) continue;
    out.push(w);
    if (out.length >= max) break;
  }
  return out;
}

/** Key terms of `terms` that occur in none of the texts. */
export function missingTerms(terms: readonly string[], texts: readonly string[]): string[] {
  const seen = new Set(texts.flatMap(words));
  return terms.filter((t) => !seen.has(t));
}

/** The next sub-query, or null when every candidate was asked already. */
export function nextSubQuery(
  question: string,
  missing: readonly string[],
  bridge: readonly string[],
  asked: readonly string[],
): string | null {
  const wanted = new Set(missing);
  const candidates = clauses(question)
    .map((c, i) => ({ c, i, n: keyTerms(c).filter((t) => wanted.has(t)).length }))
    .filter((x) => x.n > 0)
    .sort((a, b) => b.n - a.n || a.i - b.i)
    .map((x) => x.c);
  candidates.push(missing.join(' '));
  const lower = new Set(asked.map((q) => q.toLowerCase()));
  for (const c of candidates) {
    const q = [c, ...bridge].join(' ').trim();
    if (q && !lower.has(q.toLowerCase())) return q;
  }
  return null;
}

/**
 * Runs the plan's retrieval: `retrieve` searches one step (one collection, query, k, filters). Returns the
 * plan with every step taken (k, chunks found, share of the question's terms covered) and, in iterative mode,
 * why it stopped; and the hits in prompt-candidate order: by step, best score first within a step, each chunk
 * once.
 */
export async function runRetrieval<H extends StepHit>(
  plan: Plan,
  question: string,
  ctx: PlannerContext,
  retrieve: (step: RetrievalStep) => Promise<H[]>,
  opts: { k?: number } = {},
): Promise<{ plan: Plan; hits: H[] }> {
  const hits: H[] = [];
  const seen = new Set<string>();
  const steps: RetrievalStep[] = [];
  const terms = keyTerms(question);
  let used = 0;
  // one step = every collection on one query, merged by score; returns the chunks it added
  const runStep = async (template: readonly RetrievalStep[]): Promise<H[]> => {
    const found: H[] = [];
    for (const step of template) found.push(...(await retrieve(step)));
    found.sort((x, y) => y.score - x.score || x.chunkId.localeCompare(y.chunkId));
    const fresh = found.filter((h) => !seen.has(h.chunkId) && seen.add(h.chunkId));
    hits.push(...fresh);
    used += fresh.reduce((a, h) => a + h.tokenCount, 0);
    return fresh;
  };
  const record = (template: readonly RetrievalStep[], fresh: readonly H[], extra: boolean) => {
    const missing = missingTerms(
      terms,
      hits.map((h) => h.text),
    );
    const covered = terms.length ? round((terms.length - missing.length) / terms.length) : 1;
    for (const s of template) steps.push({ ...s, found: fresh.length, ...(extra ? { covered } : {}) });
    return missing;
  };

  const first = plan.retrieval.steps.filter((s) => s.step === 1);
  const fresh1 = await runStep(first);
  const iterative = plan.retrieval.mode === 'iterative';
  let missing = record(first, fresh1, iterative);
  if (!iterative) return { plan: { ...plan, retrieval: { ...plan.retrieval, steps } }, hits };

  let stop: RetrievalStop = 'sufficient';
  let lastFresh = fresh1;
  const asked = [question];
  for (let step = 2; ; step++) {
    if (missing.length === 0) break;
    if (step > plan.retrieval.maxSteps) {
      stop = 'max-steps';
      break;
    }
    const budgetK = nextStepK(plan, ctx, step, used);
    const k = Math.min(budgetK, opts.k ?? budgetK);
    if (k <= 0) {
      stop = 'budget';
      break;
    }
    const bridge = lastFresh.length ? bridgeEntities(lastFresh[0].text, question) : [];
    const query = nextSubQuery(question, missing, bridge, asked);
    if (query === null) {
      stop = 'no-sub-query';
      break;
    }
    asked.push(query);
    const template = first.map((s) => ({ ...s, step, query, k }));
    const fresh = await runStep(template);
    const before = missing.length;
    missing = record(template, fresh, true);
    if (fresh.length === 0 || missing.length === before) {
      stop = missing.length === 0 ? 'sufficient' : 'no-progress';
      break;
    }
    lastFresh = fresh;
  }
  return {
    plan: { ...plan, retrieval: { ...plan.retrieval, steps, stop, missingTerms: missing } },
    hits,
  };
}

const round = (x: number) => Math.round(x * 1000) / 1000;
