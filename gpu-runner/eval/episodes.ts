// The held-out RAG episodes of gpu-runner/tools/train/episodes.py, ported call for call (same lexicon,
// same vocabularies, same random draws through PyRandom), so `kvrag eval` can build them without Python —
// byte-identical to `heldout_episodes(seed, kind, L, n, filler, prose)` (test/unit/eval-episodes.test.ts
// checks it). The prompt contract is gpu-runner/tools/train/EPISODES.md:
// [<|bos|><|system|>SYSTEM<|end|>][<|doc|>chunk<|/doc|>]… <|user|>question<|end|><|assistant|> → answer<|end|>.
// Prose filler comes from the committed evaluation prose (./prose.ts), which training never sees.
import { PyRandom } from './py-random.ts';

export const FACT_TYPES = ['passkey', 'kv', 'twohop', 'field', 'setting', 'table'] as const;
export type FactType = (typeof FACT_TYPES)[number];

export const FILLERS = ['lexicon', 'prose'] as const;
export type Filler = (typeof FILLERS)[number];

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

const words = (s: string) => s.split(' ');
const ADJ = words(
  'old quiet green small bright heavy narrow warm cold distant busy silent pale wide early late round soft sharp golden',
);
const NOUN = words(
  'river mill garden tower market bridge valley forest harbor village window road field lamp table letter train ' +
    'cloud stone school island engine orchard library kitchen',
);
const VERB = words(
  'crosses faces follows reaches passes holds shelters circles joins watches leaves touches meets hides',
);
const PREP = words('near beside under behind above beyond along across');
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

// Configuration facts (field, setting, table): episodes.py's vocabularies, in the same order.
const FIELD_QUALIFIER = words(
  'default maximum minimum initial admin backup session request upload download cache log retry worker queue ' +
    'index replica snapshot metrics health proxy storage shard batch connection',
);
const FIELD_NOUN = words(
  'port timeout size limit count interval level path directory region host address threshold budget rate ' +
    'version mode format prefix',
);
const ID_WORD = words(
  'max min num cache pool buffer retry idle read write flush sync log queue worker thread batch request conn ' +
    'timeout size limit interval depth ttl port level threads bytes seconds ms backlog shards replicas',
);
const ID_SECTION = words('server storage http auth cluster db');
const UNITS = words('ms s min MB GB KB MiB GiB %');
const SHORT_UNITS = words('ms s m h');
const WORD_VALUES = words(
  'true false on off info debug warn error strict lenient gzip zstd none auto always never utf-8 lru fifo round-robin',
);
const DIRS = words('var etc opt srv home');
const DIR_NAMES = words('lib cache spool data run share');
const NAMES = words('kvrag relay ingest vault atlas beacon nimbus quarry');
const HOST_DOMAINS = ['internal', 'local', 'example.com'];
const TABLE_HEADERS: readonly (readonly [string, string])[] = [
  ['Option', 'Default'],
  ['Setting', 'Value'],
  ['Parameter', 'Default'],
  ['Name', 'Value'],
  ['Variable', 'Default'],
];

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
  meta: { ctx_tokens_target: number; filler: Filler };
}

/** A planted fact: on lines of its own (configuration facts) or inline like a sentence. */
interface Fact {
  text: string;
  line: boolean;
}

/** Lower-cases A–Z only, whatever the locale (episodes.ascii_lower). */
export const asciiLower = (s: string) => s.replace(/[A-Z]/g, (c) => c.toLowerCase());
const utf8len = (s: string) => Buffer.byteLength(s, 'utf8');

function fillerSentence(rng: PyRandom): string {
  let s =
    `the ${rng.choice(ADJ)} ${rng.choice(NOUN)} ${rng.choice(VERB)} the ${rng.choice(ADJ)} ` +
    `${rng.choice(NOUN)} ${rng.choice(PREP)} the ${rng.choice(NOUN)}`;
  if (rng.random() < 0.5) s += ` ${rng.choice(TAIL)}`;
  return `${s[0].toUpperCase()}${s.slice(1)}.`;
}

/** Draws keys with `draw` until one is not in `used`; records it. */
function fresh(used: Set<string>, draw: () => string): string {
  for (;;) {
    const k = draw();
    if (!used.has(k)) {
      used.add(k);
      return k;
    }
  }
}

const newKey = (rng: PyRandom, used: Set<string>) =>
  fresh(used, () => Array.from({ length: 5 }, () => rng.choice(KEY_ALPHABET)).join(''));

const newValue = (rng: PyRandom) => String(rng.randint(100000, 999999));

const newFieldKey = (rng: PyRandom, used: Set<string>) =>
  fresh(used, () => {
    const q = rng.choice(FIELD_QUALIFIER);
    return `${q[0].toUpperCase()}${q.slice(1)} ${rng.choice(FIELD_NOUN)}`;
  });

const newSettingKey = (rng: PyRandom, used: Set<string>) =>
  fresh(used, () => {
    const n = rng.randint(2, 3);
    let k = Array.from({ length: n }, () => rng.choice(ID_WORD)).join('_');
    if (rng.random() < 0.25) k = `${rng.choice(ID_SECTION)}.${k}`;
    return k;
  });

function newSettingValue(rng: PyRandom): string {
  switch (rng.randrange(7)) {
    case 0:
      return String(rng.randint(1, 65535));
    case 1:
      return `${rng.randint(1, 999)} ${rng.choice(UNITS)}`;
    case 2:
      return `${rng.randint(1, 600)}${rng.choice(SHORT_UNITS)}`;
    case 3:
      return rng.choice(WORD_VALUES);
    case 4:
      return `/${rng.choice(DIRS)}/${rng.choice(DIR_NAMES)}/${rng.choice(NAMES)}`;
    case 5:
      return `${rng.choice(NAMES)}.${rng.choice(HOST_DOMAINS)}:${rng.randint(1024, 65535)}`;
    default:
      return `${rng.randint(0, 9)}.${rng.randint(0, 99)}`;
  }
}

function table(rng: PyRandom, used: Set<string>, asked: [string, string], extraRows: number): string {
  const [h1, h2] = rng.choice(TABLE_HEADERS);
  const rows: [string, string][] = [];
  for (let i = 0; i < extraRows; i++) {
    const k = newSettingKey(rng, used);
    rows.push([k, newSettingValue(rng)]);
  }
  rows.splice(rng.randint(0, extraRows), 0, asked);
  return [`| ${h1} | ${h2} |`, '|---|---|', ...rows.map(([k, v]) => `| ${k} | ${v} |`)].join('\n');
}

type DistractorKind = 'kv' | 'field' | 'setting';

/** plant_facts(rng, kinds, distractors, table_rows): facts, questions and the strings filler must avoid. */
function plantFacts(
  rng: PyRandom,
  kinds: readonly FactType[],
  distractors: readonly DistractorKind[],
  tableRows: number,
) {
  const used = new Set<string>();
  const facts: Fact[] = [];
  const qas: QA[] = [];
  const inline = (text: string) => facts.push({ text, line: false });
  const line = (text: string) => facts.push({ text, line: true });
  // Python evaluates f-strings and tuples left to right: each key is drawn before its value
  for (const kind of kinds) {
    if (kind === 'passkey') {
      const p = String(rng.randint(10000, 99999));
      inline(`The pass key is ${p}. Remember it. ${p} is the pass key.`);
      qas.push({ kind, question: 'What is the pass key?', answer: p });
    } else if (kind === 'kv') {
      const k = newKey(rng, used);
      const v = newValue(rng);
      inline(`Record ${k}: ${v}.`);
      qas.push({ kind, question: `What is the value of record ${k}?`, answer: v });
    } else if (kind === 'twohop') {
      const k1 = newKey(rng, used);
      const k2 = newKey(rng, used);
      const v = newValue(rng);
      inline(`Record ${k1}: ${k2}.`);
      inline(`Record ${k2}: ${v}.`);
      qas.push({ kind, question: `Follow the link from record ${k1}?`, answer: `${k2}: ${v}` });
    } else if (kind === 'field') {
      const k = newFieldKey(rng, used);
      const v = newSettingValue(rng);
      line(`${k}: ${v}`);
      qas.push({ kind, question: `What is the ${asciiLower(k)}?`, answer: v });
    } else if (kind === 'setting') {
      const k = newSettingKey(rng, used);
      const v = newSettingValue(rng);
      line(`${k} = ${v}`);
      qas.push({ kind, question: `What is the value of ${k}?`, answer: v });
    } else {
      const k = newSettingKey(rng, used);
      const v = newSettingValue(rng);
      line(table(rng, used, [k, v], tableRows));
      qas.push({ kind, question: `What does the table list for ${k}?`, answer: v });
    }
  }
  for (const kind of distractors) {
    if (kind === 'kv') {
      const k = newKey(rng, used);
      inline(`Record ${k}: ${newValue(rng)}.`);
    } else if (kind === 'field') {
      const k = newFieldKey(rng, used);
      line(`${k}: ${newSettingValue(rng)}`);
    } else {
      const k = newSettingKey(rng, used);
      line(`${k} = ${newSettingValue(rng)}`);
    }
  }
  // Python sorts str by code point; these keys are ASCII, so the default sort agrees
  const forbid = [...used].map(asciiLower).sort();
  if (kinds.includes('passkey')) forbid.push('pass key');
  return { facts, qas, forbid };
}

/** prose_lines: consecutive lines from a random line of a random document, up to about `size` bytes. */
function proseLines(rng: PyRandom, docs: readonly (readonly string[])[], size: number, forbid: string[]) {
  let d = rng.randrange(docs.length);
  let i = rng.randrange(docs[d].length);
  const out: string[] = [];
  let n = 2;
  for (let guard = 0; guard < 1_000_000; guard++) {
    if (i >= docs[d].length) {
      d = (d + 1) % docs.length;
      i = 0;
    }
    const line = docs[d][i++];
    if (out.length === 0 && line === '') continue;
    const lower = asciiLower(line);
    if (forbid.some((f) => lower.includes(f))) continue;
    const b = utf8len(line) + (out.length > 0 ? 1 : 0);
    if (out.length > 0 && n + Math.floor((b + 1) / 2) > size) break;
    out.push(line);
    n += b;
  }
  while (out[out.length - 1] === '') out.pop();
  return out;
}

type Piece = string | Fact;
const isLine = (p: Piece) => typeof p !== 'string' && p.line;

/** Pieces joined by `sep`, except that a line fact always has a newline on either side. */
function join(pieces: readonly Piece[], sep: string): string {
  let out = '';
  pieces.forEach((p, j) => {
    if (j > 0) out += isLine(p) || isLine(pieces[j - 1]) ? '\n' : sep;
    out += typeof p === 'string' ? p : p.text;
  });
  return out;
}

function buildChunks(
  rng: PyRandom,
  ctxBytes: number,
  facts: readonly Fact[],
  filler: Filler,
  prose: readonly (readonly string[])[] | undefined,
  forbid: string[],
  min = 64,
  max = 512,
) {
  const sizes: number[] = [];
  let left = ctxBytes;
  while (left > 0) {
    const s = Math.min(left, rng.randint(min, max));
    sizes.push(Math.max(s, 24));
    left -= s;
  }
  const pieces: Piece[][] = [];
  for (const size of sizes) {
    if (filler === 'prose') {
      pieces.push(proseLines(rng, prose!, size, forbid));
      continue;
    }
    const sents: Piece[] = [fillerSentence(rng)];
    let n = (sents[0] as string).length + 2;
    for (;;) {
      const s = fillerSentence(rng);
      if (n + Math.floor((s.length + 1) / 2) > size) break;
      sents.push(s);
      n += s.length + 1;
    }
    pieces.push(sents);
  }
  for (const fact of facts) {
    const c = rng.randrange(pieces.length);
    pieces[c].splice(rng.randint(0, pieces[c].length), 0, fact);
  }
  return pieces.map((p) => join(p, filler === 'prose' ? '\n' : ' '));
}

/** heldout_spec(kind): the unasked facts of a held-out episode. */
function heldoutSpec(kind: FactType): { distractors: DistractorKind[]; tableRows: number } {
  if (kind === 'passkey' || kind === 'table') return { distractors: [], tableRows: 3 };
  const d: DistractorKind = kind === 'field' || kind === 'setting' ? kind : 'kv';
  return { distractors: [d, d, d], tableRows: 3 };
}

/** make_episode(rng, ctx_tokens, 1, "full", kinds=[kind], system=True, filler, prose, **heldout_spec(kind)). */
function makeEpisode(
  rng: PyRandom,
  ctxTokens: number,
  kind: FactType,
  filler: Filler,
  prose: readonly (readonly string[])[] | undefined,
): Episode {
  const spec = heldoutSpec(kind);
  const { facts, qas, forbid } = plantFacts(rng, [kind], spec.distractors, spec.tableRows);
  const overhead = 1 + (SYSTEM_TEXT.length + 2) + facts.reduce((s, f) => s + utf8len(f.text) + 1, 0);
  const chunks = buildChunks(rng, Math.max(64, ctxTokens - overhead), facts, filler, prose, forbid);
  return { system: SYSTEM_TEXT, chunks, mode: 'full', qas, meta: { ctx_tokens_target: ctxTokens, filler } };
}

/**
 * heldout_episodes(seed, kind, ctx_tokens, n, filler, prose): single-question episodes with the system
 * prefix, seeded by the string `heldout-{seed}-{kind}-full-{ctxTokens}` (with `-prose` appended for prose
 * filler); passkey and table have no separate distractors (a table has 3 other rows), kv and twohop 3
 * records, field and setting 3 of their own kind. Prose filler needs the documents (./prose.ts).
 */
export function heldoutEpisodes(
  seed: number,
  kind: FactType,
  ctxTokens: number,
  n: number,
  filler: Filler = 'lexicon',
  prose?: readonly (readonly string[])[],
): Episode[] {
  if (filler === 'prose' && !prose?.length) throw new Error('prose filler needs documents');
  const rng = new PyRandom(
    `heldout-${seed}-${kind}-full-${ctxTokens}${filler === 'lexicon' ? '' : `-${filler}`}`,
  );
  return Array.from({ length: n }, () => makeEpisode(rng, ctxTokens, kind, filler, prose));
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
