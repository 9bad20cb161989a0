// Token-aware chunking. A document's text is cut into chunks of at most `size` tokens of the runner
// model's tokenizer (each chunk is later prefilled alone into a KV artifact), consecutive chunks sharing
// about `overlap` tokens. Cuts prefer, within a slack window below the size, a paragraph break, then a
// line break, then a sentence end, then any word start; text with no such boundary (one huge "word",
// scripts without spaces) is cut between code points, never inside a UTF-8 character or surrogate pair.
// Chunks are exact slices: text === doc.slice(startChar, endChar), trailing whitespace included, so with
// overlap 0 the chunks concatenate back to the document. Web APIs only (crypto.subtle): runs on Workers.
import { z } from 'zod';
import { AppError } from '../../contracts/errors.ts';
import type { Tokenizer } from '../../contracts/tokenizer.ts';
import { overLimit } from './limits.ts';

export interface Chunk {
  /** 0-based position of the chunk in its document. */
  ordinal: number;
  text: string;
  tokenCount: number;
  /** sha256 hex of the UTF-8 text. */
  contentHash: string;
  /** UTF-16 offsets into the parsed document text: [startChar, endChar). */
  startChar: number;
  endChar: number;
}

export const CHUNK_SIZE_MIN = 64;
export const CHUNK_SIZE_MAX = 4096;

export const chunkingOptionsSchema = z
  .object({
    /** Most tokens in a chunk. */
    size: z.number().int().min(CHUNK_SIZE_MIN).max(CHUNK_SIZE_MAX).default(512),
    /** Tokens shared by consecutive chunks (at most size/2). */
    overlap: z.number().int().min(0).default(64),
    /** How far below `size` a better boundary may end a chunk, in tokens (default size/8, at most size/4). */
    slack: z.number().int().min(0).optional(),
  })
  .refine((o) => o.overlap <= o.size / 2, {
    message: 'overlap must be at most half the chunk size',
    path: ['overlap'],
  })
  .refine((o) => o.slack === undefined || o.slack <= o.size / 4, {
    message: 'slack must be at most a quarter of the chunk size',
    path: ['slack'],
  });

export type ChunkingOptions = z.input<typeof chunkingOptionsSchema>;

/** Validates options; AppError('bad_request') naming the field otherwise. */
export function parseChunkingOptions(input: unknown = {}): { size: number; overlap: number; slack: number } {
  const r = chunkingOptionsSchema.safeParse(input ?? {});
  if (!r.success) {
    const msg = r.error.issues.map((i) => `${i.path.join('.') || 'chunking'}: ${i.message}`).join('; ');
    throw new AppError('bad_request', `invalid chunking options: ${msg}`, { issues: r.error.issues });
  }
  const { size, overlap, slack } = r.data;
  return { size, overlap, slack: slack ?? Math.floor(size / 8) };
}

/** Boundary strength of a cut position; higher is a better place to end a chunk. */
const PARAGRAPH = 3;
const LINE = 2;
const SENTENCE = 1;
const WORD = 0;

const isSpace = (c: string) => /\s/u.test(c);
const SENTENCE_END = new Set(['.', '!', '?', '…', '。', '！', '？', '؟', '।']);
const CLOSERS = new Set(['"', "'", ')', ']', '}', '»', '”', '’', '」', '』']);
/** Sentence ends of scripts written without spaces: a cut may follow them directly. */
const CJK_END = new Set(['。', '！', '？']);

interface Candidates {
  /** Cut positions, ascending: a chunk may end (and an overlapping chunk may start) here. */
  pos: number[];
  strength: number[];
}

/** Every word start (after whitespace) and every position after a CJK sentence end, with its strength. */
function findCandidates(text: string): Candidates {
  const pos: number[] = [];
  const strength: number[] = [];
  let i = 0;
  while (i < text.length) {
    const c = text[i];
    if (isSpace(c)) {
      const runStart = i;
      let newlines = 0;
      while (i < text.length && isSpace(text[i])) {
        if (text[i] === '\n') newlines++;
        i++;
      }
      if (runStart === 0 || i >= text.length) continue;
      let s = newlines >= 2 ? PARAGRAPH : newlines === 1 ? LINE : WORD;
      if (s === WORD) {
        let j = runStart - 1;
        while (j > 0 && CLOSERS.has(text[j])) j--;
        if (SENTENCE_END.has(text[j])) s = SENTENCE;
      }
      pos.push(i);
      strength.push(s);
      continue;
    }
    i++;
    if (CJK_END.has(c) && i < text.length && !isSpace(text[i])) {
      pos.push(i);
      strength.push(SENTENCE);
    }
  }
  return { pos, strength };
}

/** Largest i in [lo, hi] with ok(i) (ok true then false along the range), or lo - 1 if none. */
function lastTrue(lo: number, hi: number, ok: (i: number) => boolean): number {
  let ans = lo - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1;
    if (ok(mid)) {
      ans = mid;
      lo = mid + 1;
    } else hi = mid - 1;
  }
  return ans;
}

/** Smallest i in [lo, hi] with ok(i) (ok false then true), or hi + 1 if none. */
function firstTrue(lo: number, hi: number, ok: (i: number) => boolean): number {
  let ans = hi + 1;
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1;
    if (ok(mid)) {
      ans = mid;
      hi = mid - 1;
    } else lo = mid + 1;
  }
  return ans;
}

/**
 * Largest i in [lo, hi] with tokens(i) ≤ target (tokens non-decreasing in i), or lo - 1 if none. Each
 * tokens() call is an encode, so probes go where a linear chars-per-token extrapolation from the latest
 * measurement puts the answer (chars(i): characters covered at i, increasing); bisection takes over
 * when that stops closing the bracket. Typically 2–3 encodes instead of log2(words in a chunk).
 */
function lastAtMost(
  lo: number,
  hi: number,
  target: number,
  tokens: (i: number) => number,
  chars: (i: number) => number,
  charsPerToken: number,
): number {
  let good = lo - 1;
  let bad = hi + 1;
  const indexAt = (c: number) => lastTrue(lo, hi, (i) => chars(i) <= c);
  let guess = indexAt(target * charsPerToken);
  for (let step = 0; bad - good > 1; step++) {
    const i = step >= 4 ? (good + bad) >>> 1 : Math.min(bad - 1, Math.max(good + 1, guess));
    const t = tokens(i);
    if (t <= target) good = i;
    else bad = i;
    guess = indexAt(target * (t > 0 ? chars(i) / t : charsPerToken));
    // the estimate says `good` is the answer: probe its successor to close the bracket
    if (guess <= good) guess = good + 1;
  }
  return good;
}

/** Index of the first element of sorted a that is > x. */
function upperBound(a: number[], x: number): number {
  return firstTrue(0, a.length - 1, (i) => a[i] > x);
}

/** Code point boundaries in (a, b), ascending: positions not between a high and a low surrogate. */
function codePointCuts(text: string, a: number, b: number): number[] {
  const out: number[] = [];
  for (let i = a + 1; i < b; i++) {
    const hi = text.charCodeAt(i - 1);
    const lo = text.charCodeAt(i);
    if (hi >= 0xd800 && hi <= 0xdbff && lo >= 0xdc00 && lo <= 0xdfff) continue;
    out.push(i);
  }
  return out;
}

export interface ChunkSpan {
  startChar: number;
  endChar: number;
  tokenCount: number;
}

/** The chunk boundaries of a text (synchronous; chunkText adds texts and hashes). */
export function planChunks(text: string, tokenizer: Tokenizer, options?: ChunkingOptions): ChunkSpan[] {
  return [...chunkSpans(text, tokenizer, options)];
}

/** The spans of planChunks one at a time, so a caller can yield to the event loop between them. */
function* chunkSpans(text: string, tokenizer: Tokenizer, options?: ChunkingOptions): Generator<ChunkSpan> {
  const { size, overlap, slack } = parseChunkingOptions(options);
  const n = text.length;
  if (n === 0 || text.trim() === '') return;
  // token counts of [a, b), memoised: the searches below ask for the same ranges repeatedly
  const memo = new Map<number, number>();
  const count = (a: number, b: number) => {
    const k = a * (n + 1) + b;
    let c = memo.get(k);
    if (c === undefined) {
      c = tokenizer.encode(text.slice(a, b)).length;
      memo.set(k, c);
    }
    return c;
  };
  const cand = findCandidates(text);
  let start = 0;
  let prevEnd = 0;
  // chars per token seen so far: brackets the next chunk's end tightly (4 until measured)
  let charsPerToken = 4;
  while (true) {
    // a char bound `limit` past which the chunk cannot end, galloping up from the estimate
    let window = Math.max(16, Math.ceil(size * charsPerToken * 1.15));
    let limit = Math.min(n, start + window);
    let last = false;
    while (count(start, limit) <= size) {
      if (limit === n) {
        last = true;
        break;
      }
      window *= 2;
      limit = Math.min(n, start + window);
    }
    if (last) {
      yield { startChar: start, endChar: n, tokenCount: count(start, n) };
      return;
    }
    const end = chooseEnd(text, cand, start, Math.max(prevEnd, start), limit, size, slack, count);
    const tokenCount = count(start, end);
    yield { startChar: start, endChar: end, tokenCount };
    if (tokenCount > 0) charsPerToken = (end - start) / tokenCount;
    memo.clear();
    prevEnd = end;
    start = overlap > 0 ? chooseOverlapStart(text, cand, start, end, overlap, count) : end;
  }
}

/**
 * End of the chunk starting at `start`: within (floor, limit), fits in `size` tokens, on the strongest
 * boundary among those at least size - slack tokens long (the latest of equals), else the longest fit.
 */
function chooseEnd(
  text: string,
  cand: Candidates,
  start: number,
  floor: number,
  limit: number,
  size: number,
  slack: number,
  count: (a: number, b: number) => number,
): number {
  const first = upperBound(cand.pos, floor);
  const lastBefore = upperBound(cand.pos, limit - 1) - 1;
  const tokens = (i: number) => count(start, cand.pos[i]);
  const chars = (i: number) => cand.pos[i] - start;
  // the bound just measured (it holds more than `size` tokens) gives this region's chars per token
  const cpt = (limit - start) / Math.max(1, count(start, limit));
  const iHi = lastAtMost(first, lastBefore, size, tokens, chars, cpt);
  if (iHi >= first) {
    // the slack window, located by this chunk's chars per token (no encodes): strongest cut wins,
    // the latest among equals; the pick is then checked exactly (in the window, within the size)
    const local = chars(iHi) / Math.max(1, tokens(iHi));
    let best = iHi;
    for (let i = iHi - 1; i >= first && chars(i) >= (size - slack) * local; i--) {
      if (cand.strength[i] > cand.strength[best]) best = i;
    }
    if (best === iHi) return cand.pos[iHi];
    const t = tokens(best);
    return t >= size - slack && t <= size ? cand.pos[best] : cand.pos[iHi];
  }
  // no word boundary fits: cut between code points, as late as fits (at least one code point)
  // (located like a word boundary: a few encodes guided by chars per token, not a bisection of them all)
  const cuts = codePointCuts(text, floor, limit);
  const j = lastAtMost(
    0,
    cuts.length - 1,
    size,
    (i) => count(start, cuts[i]),
    (i) => cuts[i] - start,
    cpt,
  );
  return j >= 0 ? cuts[j] : (cuts[0] ?? limit);
}

/**
 * Start of the next chunk: the earliest cut in (start, end) whose suffix up to `end` has at most
 * `overlap` tokens; `end` itself (no overlap) when even the last word before it is longer.
 */
function chooseOverlapStart(
  text: string,
  cand: Candidates,
  start: number,
  end: number,
  overlap: number,
  count: (a: number, b: number) => number,
): number {
  const lo = upperBound(cand.pos, start);
  const hi = upperBound(cand.pos, end - 1) - 1;
  // walk back from `end`: j counts cuts before it, so the tokens of the tail grow with j
  const cpt = (end - start) / Math.max(1, count(start, end));
  const back = lastAtMost(
    0,
    hi - lo,
    overlap,
    (j) => count(cand.pos[hi - j], end),
    (j) => end - cand.pos[hi - j],
    cpt,
  );
  if (back >= 0) return cand.pos[hi - back];
  // no word boundary in reach (text without spaces): overlap by code points
  const from = Math.max(start, end - overlap * 4);
  const cuts = codePointCuts(text, from, end);
  const j = firstTrue(0, cuts.length - 1, (k) => count(cuts[k], end) <= overlap);
  return j < cuts.length ? cuts[j] : end;
}

/** sha256 hex of the UTF-8 encoding of text, with Web Crypto (Node ≥ 20 and Workers). */
export async function sha256Hex(text: string): Promise<string> {
  const digest = await crypto.subtle.digest('SHA-256', new TextEncoder().encode(text));
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, '0')).join('');
}

/**
 * Chunks a document's text; see the file comment for the rules. Empty or blank text gives []. More than
 * `maxChunks` chunks is AppError('payload_too_large'), thrown as the chunk past the cap is found.
 */
export async function chunkText(
  text: string,
  tokenizer: Tokenizer,
  options?: ChunkingOptions,
  maxChunks = Number.POSITIVE_INFINITY,
): Promise<Chunk[]> {
  // A long document is seconds of tokenizer work: timers and I/O get a turn every ~50 ms, so a queue
  // consumer keeps renewing its job lock and a server keeps answering meanwhile.
  const spans: ChunkSpan[] = [];
  let since = Date.now();
  for (const span of chunkSpans(text, tokenizer, options)) {
    if (spans.length >= maxChunks) {
      throw overLimit(`the document makes more than ${maxChunks} chunks`, 'maxDocumentChunks');
    }
    spans.push(span);
    if (Date.now() - since > 50) {
      await new Promise((resolve) => setTimeout(resolve, 0));
      since = Date.now();
    }
  }
  return Promise.all(
    spans.map(async (s, ordinal) => {
      const t = text.slice(s.startChar, s.endChar);
      const contentHash = await sha256Hex(t);
      return {
        ordinal,
        text: t,
        tokenCount: s.tokenCount,
        contentHash,
        startChar: s.startChar,
        endChar: s.endChar,
      };
    }),
  );
}
