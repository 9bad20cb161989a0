"""RAG episode generator for the tiny kvrag model (format: EPISODES.md, next to this file).

An episode is a retrieval prompt: [<|bos|>][<|system|>text<|end|>] then chunks `<|doc|>text<|/doc|>`
of filler sentences with facts planted in them, then one or more question branches
`<|user|>question<|end|><|assistant|>answer<|end|>`. Several branches share one context: each branch
sees the whole context and itself, never another branch, and every branch starts at the same position
(right after the context) -- so a packed episode is exactly k separate single-question episodes that
share their context prefill, and the model sees the format the runtime builds.

Everything here is plain Python + `random.Random` so the TypeScript eval can reproduce it from the
text in EPISODES.md; the tensors (mask, positions, loss targets) are built by `collate`.
"""

from __future__ import annotations

import json
import os
import random
from dataclasses import dataclass, field

# Token ids of the byte tokenizer (gpu-runner/tools/byte-tokenizer.ts): 0..255 bytes, then specials.
BOS, EOS, PAD, SYSTEM, USER, ASSISTANT, DOC, END_DOC, END = 256, 257, 258, 259, 260, 261, 262, 263, 264
VOCAB_SIZE = 272

SYSTEM_TEXT = "Answer with the exact value from the documents."

FACT_TYPES = ("passkey", "kv", "twohop", "field", "setting", "table")
FILLERS = ("lexicon", "prose")

# Filler: simple declarative sentences from a fixed lexicon (lowercase words only, so planted keys in
# uppercase never collide with filler text).
_ADJ = ("old quiet green small bright heavy narrow warm cold distant busy silent pale wide early "
        "late round soft sharp golden").split()
_NOUN = ("river mill garden tower market bridge valley forest harbor village window road field "
         "lamp table letter train cloud stone school island engine orchard library kitchen").split()
_VERB = ("crosses faces follows reaches passes holds shelters circles joins watches leaves "
         "touches meets hides").split()
_PREP = "near beside under behind above beyond along across".split()
_TAIL = ("in spring", "at dawn", "every evening", "after the rain", "in the winter", "by noon",
         "for many years", "without a sound", "once again", "at night")

_KEY_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ"  # no I/O, to keep keys unambiguous

# Configuration facts (field, setting, table): keys and values as documentation spells them. The words
# share nothing with the lexicon above, so a key never occurs in lexicon filler by chance.
_FIELD_QUALIFIER = ("default maximum minimum initial admin backup session request upload download cache "
                    "log retry worker queue index replica snapshot metrics health proxy storage shard "
                    "batch connection").split()
_FIELD_NOUN = ("port timeout size limit count interval level path directory region host address "
               "threshold budget rate version mode format prefix").split()
_ID_WORD = ("max min num cache pool buffer retry idle read write flush sync log queue worker thread "
            "batch request conn timeout size limit interval depth ttl port level threads bytes seconds "
            "ms backlog shards replicas").split()
_ID_SECTION = "server storage http auth cluster db".split()
_UNITS = "ms s min MB GB KB MiB GiB %".split()
_SHORT_UNITS = "ms s m h".split()
_WORD_VALUES = ("true false on off info debug warn error strict lenient gzip zstd none auto always "
                "never utf-8 lru fifo round-robin").split()
_DIRS = "var etc opt srv home".split()
_DIR_NAMES = "lib cache spool data run share".split()
_NAMES = "kvrag relay ingest vault atlas beacon nimbus quarry".split()
_HOST_DOMAINS = ("internal", "local", "example.com")
_TABLE_HEADERS = (("Option", "Default"), ("Setting", "Value"), ("Parameter", "Default"), ("Name", "Value"),
                  ("Variable", "Default"))


def filler_sentence(rng: random.Random) -> str:
    s = (f"the {rng.choice(_ADJ)} {rng.choice(_NOUN)} {rng.choice(_VERB)} the {rng.choice(_ADJ)} "
         f"{rng.choice(_NOUN)} {rng.choice(_PREP)} the {rng.choice(_NOUN)}")
    if rng.random() < 0.5:
        s += " " + rng.choice(_TAIL)
    return s[0].upper() + s[1:] + "."


def new_key(rng: random.Random, used: set[str]) -> str:
    while True:
        k = "".join(rng.choice(_KEY_ALPHABET) for _ in range(5))
        if k not in used:
            used.add(k)
            return k


def new_value(rng: random.Random) -> str:
    return str(rng.randint(100000, 999999))


def new_field_key(rng: random.Random, used: set[str]) -> str:
    """A natural-language key as a documentation line starts it: `Default port`."""
    while True:
        q = rng.choice(_FIELD_QUALIFIER)
        k = q[0].upper() + q[1:] + " " + rng.choice(_FIELD_NOUN)
        if k not in used:
            used.add(k)
            return k


def new_setting_key(rng: random.Random, used: set[str]) -> str:
    """A configuration identifier: `max_pool_size`, sometimes under a section (`http.retry_ttl`)."""
    while True:
        k = "_".join(rng.choice(_ID_WORD) for _ in range(rng.randint(2, 3)))
        if rng.random() < 0.25:
            k = rng.choice(_ID_SECTION) + "." + k
        if k not in used:
            used.add(k)
            return k


def near_field_key(rng: random.Random, used: set[str], like: str) -> str:
    """A field key with the same noun as `like` and another qualifier (`Admin port` near `Default port`)."""
    noun = like.split(" ", 1)[1]
    while True:
        q = rng.choice(_FIELD_QUALIFIER)
        k = q[0].upper() + q[1:] + " " + noun
        if k not in used:
            used.add(k)
            return k


def near_setting_key(rng: random.Random, used: set[str], like: str) -> str:
    """A setting key that differs from `like` in one word (`write_timeout` near `read_timeout`)."""
    section, _, name = like.rpartition(".")
    parts = name.split("_")
    while True:
        i = rng.randrange(len(parts))
        k = "_".join(parts[:i] + [rng.choice(_ID_WORD)] + parts[i + 1:])
        k = f"{section}.{k}" if section else k
        if k not in used:
            used.add(k)
            return k


def new_setting_value(rng: random.Random) -> str:
    """A value as configuration references spell them: a number, a size or duration, a word, a path,
    a host:port or a ratio."""
    r = rng.randrange(7)
    if r == 0:
        return str(rng.randint(1, 65535))
    if r == 1:
        return f"{rng.randint(1, 999)} {rng.choice(_UNITS)}"
    if r == 2:
        return f"{rng.randint(1, 600)}{rng.choice(_SHORT_UNITS)}"
    if r == 3:
        return rng.choice(_WORD_VALUES)
    if r == 4:
        return f"/{rng.choice(_DIRS)}/{rng.choice(_DIR_NAMES)}/{rng.choice(_NAMES)}"
    if r == 5:
        return f"{rng.choice(_NAMES)}.{rng.choice(_HOST_DOMAINS)}:{rng.randint(1024, 65535)}"
    return f"{rng.randint(0, 9)}.{rng.randint(0, 99)}"


def ascii_lower(s: str) -> str:
    """Lower-cases A-Z only (the TypeScript port does the same, whatever the locale)."""
    return s.translate(_LOWER)


_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def utf8len(s: str) -> int:
    return len(s.encode("utf-8"))


@dataclass
class QA:
    kind: str  # one of FACT_TYPES
    question: str
    answer: str


@dataclass
class Fact:
    """A planted fact: its text and whether it stands on lines of its own (configuration facts) or runs
    inline like a sentence (pass keys, records)."""
    text: str
    line: bool = False


@dataclass
class Episode:
    system: str | None
    chunks: list[str]
    qas: list[QA]
    # mask mode: "full" (causal over everything) or "block" (chunks attend only within themselves)
    mode: str = "full"
    meta: dict = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps({"system": self.system, "chunks": self.chunks, "mode": self.mode,
                           "qas": [qa.__dict__ for qa in self.qas], "meta": self.meta}, ensure_ascii=False)


def _table(rng: random.Random, used: set[str], asked: tuple[str, str], extra_rows: int, hard: bool = False) -> str:
    """A two-column markdown table: header, rule, and the asked row among `extra_rows` others (with
    `hard`, each other row's key is near the asked one half the time)."""
    h1, h2 = rng.choice(_TABLE_HEADERS)
    rows = [(near_setting_key(rng, used, asked[0]) if hard and rng.random() < 0.5 else new_setting_key(rng, used),
             new_setting_value(rng)) for _ in range(extra_rows)]
    rows.insert(rng.randint(0, extra_rows), asked)
    return "\n".join([f"| {h1} | {h2} |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows)])


def plant_facts(rng: random.Random, kinds: list[str], distractors: list[str],
                table_rows: int | None = None, hard: bool = False) -> tuple[list[Fact], list[QA], list[str]]:
    """Facts (to scatter over chunks), the questions asked about them (in `kinds` order) and the
    strings filler must not contain (the keys, lower-cased). `distractors` lists the kind of each
    unasked extra fact (`kv`, `field` or `setting`); a table carries `table_rows` unasked rows
    (drawn in 0..4 when None). `hard` (training only): half the field and setting distractors and
    table rows get a key near an asked one -- the same noun (`Admin port` beside `Default port`) or
    one identifier word changed -- as real configuration pages have them."""
    used: set[str] = set()
    asked_fields: list[str] = []
    asked_settings: list[str] = []
    facts: list[Fact] = []
    qas: list[QA] = []
    for kind in kinds:
        if kind == "passkey":
            p = str(rng.randint(10000, 99999))
            facts.append(Fact(f"The pass key is {p}. Remember it. {p} is the pass key."))
            qas.append(QA("passkey", "What is the pass key?", p))
        elif kind == "kv":
            k, v = new_key(rng, used), new_value(rng)
            facts.append(Fact(f"Record {k}: {v}."))
            qas.append(QA("kv", f"What is the value of record {k}?", v))
        elif kind == "twohop":
            k1, k2, v = new_key(rng, used), new_key(rng, used), new_value(rng)
            facts.append(Fact(f"Record {k1}: {k2}."))
            facts.append(Fact(f"Record {k2}: {v}."))
            qas.append(QA("twohop", f"Follow the link from record {k1}?", f"{k2}: {v}"))
        elif kind == "field":
            k, v = new_field_key(rng, used), new_setting_value(rng)
            asked_fields.append(k)
            facts.append(Fact(f"{k}: {v}", line=True))
            qas.append(QA("field", f"What is the {ascii_lower(k)}?", v))
        elif kind == "setting":
            k, v = new_setting_key(rng, used), new_setting_value(rng)
            asked_settings.append(k)
            facts.append(Fact(f"{k} = {v}", line=True))
            qas.append(QA("setting", f"What is the value of {k}?", v))
        elif kind == "table":
            k, v = new_setting_key(rng, used), new_setting_value(rng)
            n = rng.randint(0, 4) if table_rows is None else table_rows
            facts.append(Fact(_table(rng, used, (k, v), n, hard), line=True))
            qas.append(QA("table", f"What does the table list for {k}?", v))
        else:
            raise ValueError(kind)
    for kind in distractors:
        # Python evaluates the f-strings left to right: the key is drawn before the value
        if kind == "kv":
            facts.append(Fact(f"Record {new_key(rng, used)}: {new_value(rng)}."))
        elif kind == "field":
            near = hard and asked_fields and rng.random() < 0.5
            k = near_field_key(rng, used, rng.choice(asked_fields)) if near else new_field_key(rng, used)
            facts.append(Fact(f"{k}: {new_setting_value(rng)}", line=True))
        elif kind == "setting":
            near = hard and asked_settings and rng.random() < 0.5
            k = near_setting_key(rng, used, rng.choice(asked_settings)) if near else new_setting_key(rng, used)
            facts.append(Fact(f"{k} = {new_setting_value(rng)}", line=True))
        else:
            raise ValueError(kind)
    forbid = sorted(ascii_lower(k) for k in used)
    if "passkey" in kinds:
        forbid.append("pass key")
    return facts, qas, forbid


def prose_lines(rng: random.Random, docs: list[list[str]], size: int, forbid: list[str]) -> list[str]:
    """Consecutive lines of prose from a random line of a random document (running on into the next
    document at an end) up to about `size` bytes, by the lexicon filler's rule (at least one line, stop
    nearest the size; 2 bytes stand for the chunk's markers). Lines containing a forbidden string
    (ASCII case-insensitive) are skipped, and so is a blank first line."""
    d = rng.randrange(len(docs))
    i = rng.randrange(len(docs[d]))
    out: list[str] = []
    n = 2
    for _ in range(1_000_000):
        if i >= len(docs[d]):
            d, i = (d + 1) % len(docs), 0
        line = docs[d][i]
        i += 1
        if (not out and line == "") or any(f in ascii_lower(line) for f in forbid):
            continue
        b = utf8len(line) + (1 if out else 0)
        if out and n + (b + 1) // 2 > size:
            break
        out.append(line)
        n += b
    while out[-1] == "":
        out.pop()
    return out


def _join(pieces: list[str | Fact], sep: str) -> str:
    """Pieces joined by `sep`, except that a line fact always has a newline on either side."""
    out = ""
    for j, p in enumerate(pieces):
        text, line = (p.text, p.line) if isinstance(p, Fact) else (p, False)
        if j > 0:
            prev = pieces[j - 1]
            out += "\n" if line or (isinstance(prev, Fact) and prev.line) else sep
        out += text
    return out


def build_chunks(rng: random.Random, ctx_bytes: int, facts: list[Fact], filler: str = "lexicon",
                 prose: list[list[str]] | None = None, forbid: list[str] | None = None,
                 chunk_min: int = 64, chunk_max: int = 512) -> list[str]:
    """Chunks of filler totalling about `ctx_bytes` bytes with each fact placed in a random chunk
    at a random sentence (lexicon) or line (prose) boundary. Chunk sizes are uniform in
    [chunk_min, chunk_max] bytes."""
    sizes: list[int] = []
    left = ctx_bytes
    while left > 0:
        s = min(left, rng.randint(chunk_min, chunk_max))
        sizes.append(max(s, 24))
        left -= s
    pieces: list[list] = []
    for size in sizes:
        if filler == "prose":
            pieces.append(prose_lines(rng, prose, size, forbid or []))
            continue
        # filler up to the chunk's size (never over it, but at least one sentence); 2 bytes of each
        # chunk's budget stand for its <|doc|> <|/doc|> markers
        sents: list = [filler_sentence(rng)]
        n = len(sents[0]) + 2
        while True:
            s = filler_sentence(rng)
            if n + (len(s) + 1) // 2 > size:  # stop nearest the size, on average
                break
            sents.append(s)
            n += len(s) + 1
        pieces.append(sents)
    for fact in facts:
        c = rng.randrange(len(pieces))
        pieces[c].insert(rng.randint(0, len(pieces[c])), fact)
    sep = "\n" if filler == "prose" else " "
    return [_join(p, sep) for p in pieces]


def make_episode(rng: random.Random, ctx_tokens: int, n_questions: int, mode: str,
                 kinds: list[str] | None = None, n_distractors: int | None = None,
                 system: bool | None = None, filler: str = "lexicon", prose: list[list[str]] | None = None,
                 distractor_kind: str = "kv", table_rows: int | None = None) -> Episode:
    """One episode whose context (bos + system + chunks) is about `ctx_tokens` tokens; `n_distractors`
    unasked facts of `distractor_kind`."""
    if kinds is None:
        kinds = []
        if rng.random() < 0.3:
            kinds.append("passkey")
        while len(kinds) < n_questions:
            kinds.append("twohop" if rng.random() < 0.3 else "kv")
        rng.shuffle(kinds)
    if n_distractors is None:
        n_distractors = rng.randint(0, max(1, ctx_tokens // 256))
    if system is None:
        system = rng.random() < 0.8
    return _episode(rng, ctx_tokens, mode, kinds, [distractor_kind] * n_distractors, system, filler, prose,
                    table_rows)


def _episode(rng: random.Random, ctx_tokens: int, mode: str, kinds: list[str], distractors: list[str],
             system: bool, filler: str, prose: list[list[str]] | None, table_rows: int | None,
             hard: bool = False) -> Episode:
    if filler not in FILLERS or (filler == "prose" and not prose):
        raise ValueError(f"filler {filler!r} (prose needs documents)")
    facts, qas, forbid = plant_facts(rng, kinds, distractors, table_rows, hard)
    overhead = 1 + (len(SYSTEM_TEXT) + 2 if system else 0) + sum(utf8len(f.text) + 1 for f in facts)
    chunks = build_chunks(rng, max(64, ctx_tokens - overhead), facts, filler, prose, forbid)
    return Episode(SYSTEM_TEXT if system else None, chunks, qas, mode,
                   {"ctx_tokens_target": ctx_tokens, "filler": filler})


# Training mix of asked facts besides the pass key (make_train_episode), as cumulative shares.
TRAIN_KINDS = (("kv", 0.25), ("twohop", 0.4), ("field", 0.6), ("setting", 0.8), ("table", 1.0))


def make_train_episode(rng: random.Random, ctx_tokens: int, mode: str, filler: str = "lexicon",
                       prose: list[list[str]] | None = None, kinds_mix=TRAIN_KINDS,
                       passkey_share: float = 0.6) -> Episode:
    """A dense training episode: up to 12 planted facts over ~`ctx_tokens` of context and a question
    branch for each (so one context prefill supervises many copied answers). A pass key in
    `passkey_share` of episodes; the other facts drawn by `kinds_mix` (cumulative shares); a few extra
    unasked records, fields or settings act as distractors, half of the latter (and of the table rows)
    with keys near an asked one. Each branch is exactly the single-question format."""
    n_facts = rng.randint(1, max(2, min(12, ctx_tokens // 64)))
    kinds: list[str] = ["passkey"] if rng.random() < passkey_share else []
    while len(kinds) < n_facts:
        r = rng.random()
        kinds.append(next(k for k, c in kinds_mix if r < c))
    rng.shuffle(kinds)
    n_distractors = rng.randint(0, max(1, ctx_tokens // 512))
    distractors = [rng.choice(("kv", "field", "setting")) for _ in range(n_distractors)]
    return _episode(rng, ctx_tokens, mode, kinds, distractors, rng.random() < 0.8, filler, prose, None, hard=True)


_COPY_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ0123456789"


def repeat_sequence(rng: random.Random, n_tokens: int) -> tuple[list[int], list[bool]]:
    """Plain induction: `<|bos|>` then a random string of letters/digits (about n_tokens/2 bytes)
    and its exact repetition; loss on every byte of the repetition (each is the byte after the
    current byte's earlier occurrence)."""
    n = rng.randint(8, max(9, n_tokens // 2 - 2))
    s = encode("".join(rng.choice(_COPY_ALPHABET) for _ in range(n)) + " ")
    return [BOS, *s, *s], [False] * (1 + len(s)) + [True] * len(s)


def copy_sequence(rng: random.Random, n_tokens: int) -> tuple[list[int], list[bool]]:
    """Induction bootstrap: `<|bos|>` then random key/value pairs `K=V;` (filler between them) and then
    lookups `K?V;` of those keys in random order; loss on every looked-up value byte. Tokens and
    loss flags (token t is a target)."""
    toks: list[int] = [BOS]
    loss: list[bool] = [False]
    pairs: list[tuple[str, str]] = []
    used: set[str] = set()
    ctx_budget = n_tokens * 2 // 3
    while len(toks) < ctx_budget:
        if rng.random() < 0.3:
            t = encode(filler_sentence(rng) + " ")
        else:
            k = new_key(rng, used)
            v = "".join(rng.choice(_COPY_ALPHABET) for _ in range(rng.randint(3, 8)))
            pairs.append((k, v))
            t = encode(f"{k}={v}; ")
        toks += t
        loss += [False] * len(t)
    rng.shuffle(pairs)
    for k, v in pairs:
        if len(toks) >= n_tokens:
            break
        q = encode(f"{k}?")
        a = encode(f"{v}; ")
        toks += q + a
        loss += [False] * len(q) + [True] * (len(a) - 1) + [False]
    return toks, loss


def encode(text: str) -> list[int]:
    return list(text.encode("utf-8"))


@dataclass
class Encoded:
    """One episode as tokens. seg: -1 prefix (bos/system), c>=0 chunk c, 1000+b question branch b."""
    tokens: list[int]
    positions: list[int]
    seg: list[int]
    loss: list[bool]  # loss[t]: token t is a target (answer byte or its closing <|end|>)
    mode: str
    answers: list[tuple[int, int, QA]]  # (first target index, end index exclusive, qa) per branch


def encode_episode(ep: Episode) -> Encoded:
    toks: list[int] = [BOS]
    seg: list[int] = [-1]
    if ep.system is not None:
        t = [SYSTEM, *encode(ep.system), END]
        toks += t
        seg += [-1] * len(t)
    for c, text in enumerate(ep.chunks):
        t = [DOC, *encode(text), END_DOC]
        toks += t
        seg += [c] * len(t)
    return _with_branches(toks, seg, ep, [USER])


# The prompt kvrag's answer API builds (src/answer/prepare.ts and prompt.ts, EPISODES.md "Serving
# format"): the system text, then a label block "[n] " (after a newline from the second on) before each
# chunk, then the user turn through the chat template.
SERVING_SYSTEM = ("Answer the question using the numbered sources below. Cite sources as [n] after the "
                  "facts they support.\n")


def encode_serving(ep: Episode) -> Encoded:
    """The episode as the API sends it to the runner: plain system text (no <|bos|>), label and chunk
    blocks as plain text (each its own segment: separate artifacts in `independent` reuse), then
    `<|bos|><|user|>question<|end|><|assistant|>` (the chat template) and the answer."""
    toks = encode(SERVING_SYSTEM)
    seg = [-1] * len(toks)
    for c, text in enumerate(ep.chunks):
        label = encode(("" if c == 0 else "\n") + f"[{c + 1}] ")
        body = encode(text)
        toks += label + body
        seg += [2 * c] * len(label) + [2 * c + 1] * len(body)
    return _with_branches(toks, seg, ep, [BOS, USER])


def _with_branches(toks: list[int], seg: list[int], ep: Episode, user: list[int]) -> Encoded:
    """Appends one question branch per QA (`user` question <|end|> <|assistant|> answer <|end|>), each
    starting at the context's length."""
    ctx = len(toks)
    positions = list(range(ctx))
    loss = [False] * ctx
    answers = []
    for b, qa in enumerate(ep.qas):
        q = [*user, *encode(qa.question), END, ASSISTANT]
        a = [*encode(qa.answer), END]
        start = len(toks) + len(q)
        toks += q + a
        seg += [1000 + b] * (len(q) + len(a))
        positions += list(range(ctx, ctx + len(q) + len(a)))
        loss += [False] * len(q) + [True] * len(a)
        answers.append((start, start + len(a), qa))
    return Encoded(toks, positions, seg, loss, ep.mode, answers)


def attention_mask(seg, mode_block, pad):
    """Boolean mask [B, T, T] (True = may attend) from per-token segment ids (torch tensors).

    seg: [B, T] int (-1 prefix, c chunk, 1000+b branch); mode_block: [B] bool; pad: [B, T] bool.
    Rules: causal in sequence order; a branch token sees the context and its own branch only; in
    block mode a chunk token sees only its own chunk (not the prefix, not other chunks); padding
    sees only itself.
    """
    import torch

    B, T = seg.shape
    causal = torch.ones(T, T, dtype=torch.bool).tril()
    si = seg[:, :, None]
    sj = seg[:, None, :]
    is_branch_i = si >= 1000
    is_branch_j = sj >= 1000
    same = si == sj
    # branch i: context keys (not branch) or same branch
    allow = torch.where(is_branch_i, (~is_branch_j) | same, torch.ones_like(same))
    # block mode: chunk tokens (0 <= seg < 1000) see their own chunk only
    is_chunk_i = (si >= 0) & (si < 1000)
    block = mode_block[:, None, None] & is_chunk_i
    allow = torch.where(block, same, allow)
    allow = allow & causal[None]
    eye = torch.eye(T, dtype=torch.bool)[None]
    padm = pad[:, :, None] | pad[:, None, :]
    allow = torch.where(padm, eye.expand(B, T, T), allow)
    return allow


def collate(encs: list[Encoded]):
    """Batch of padded tensors: tokens, positions, targets (-100 = no loss), mask [B,1,T,T]."""
    import torch

    T = max(len(e.tokens) for e in encs)
    B = len(encs)
    tokens = torch.full((B, T), PAD, dtype=torch.long)
    positions = torch.zeros((B, T), dtype=torch.long)
    seg = torch.full((B, T), -2, dtype=torch.long)
    targets = torch.full((B, T), -100, dtype=torch.long)
    pad = torch.ones((B, T), dtype=torch.bool)
    for i, e in enumerate(encs):
        n = len(e.tokens)
        tokens[i, :n] = torch.tensor(e.tokens)
        positions[i, :n] = torch.tensor(e.positions)
        seg[i, :n] = torch.tensor(e.seg)
        pad[i, :n] = False
        # logits at t predict token t+1 *within the same branch*: the branch's tokens are contiguous,
        # so shifting by one is right everywhere a target exists (answers never start a branch).
        lt = torch.tensor(e.loss)
        tt = torch.tensor(e.tokens)
        idx = lt.nonzero().squeeze(1)
        targets[i, idx - 1] = tt[idx]
    mode_block = torch.tensor([e.mode == "block" for e in encs])
    mask = attention_mask(seg, mode_block, pad)[:, None]
    return tokens, positions, targets, mask


def heldout_spec(kind: str) -> dict:
    """Distractors of a held-out episode of `kind` (EPISODES.md, "Held-out evaluation sets")."""
    if kind in ("passkey", "table"):
        return {"n_distractors": 0, "distractor_kind": "kv", "table_rows": 3}
    return {"n_distractors": 3, "distractor_kind": kind if kind in ("field", "setting") else "kv",
            "table_rows": 3}


def heldout_episodes(seed: int, kind: str, ctx_tokens: int, n: int, filler: str = "lexicon",
                     prose: list[list[str]] | None = None, mode: str = "full") -> list[Episode]:
    """Single-question held-out episodes (EPISODES.md, "Held-out evaluation sets"), seeded by
    `heldout-{seed}-{kind}-{mode}-{ctx_tokens}` (lexicon) or `...-{ctx_tokens}-prose`; `mode` is only
    part of the seed -- the same text is evaluated in both attention modes."""
    tag = f"heldout-{seed}-{kind}-{mode}-{ctx_tokens}" + ("" if filler == "lexicon" else f"-{filler}")
    rng = random.Random(tag)
    return [make_episode(rng, ctx_tokens, 1, mode, kinds=[kind], system=True, filler=filler, prose=prose,
                         **heldout_spec(kind)) for _ in range(n)]


if __name__ == "__main__":
    # python3 episodes.py OUT.jsonl [ctx_tokens=2048] [n_per_type=50] [seed=20261122] [lexicon|prose]
    # One JSON object per line: {system, chunks, mode, qas: [{kind, question, answer}], meta}; prose
    # filler comes from the committed evaluation prose (prose.py, gpu-runner/eval/prose/heldout.jsonl).
    import sys

    out = sys.argv[1]
    L = int(sys.argv[2]) if len(sys.argv) > 2 else 2048
    n = int(sys.argv[3]) if len(sys.argv) > 3 else 50
    seed = int(sys.argv[4]) if len(sys.argv) > 4 else 20261122
    filler = sys.argv[5] if len(sys.argv) > 5 else "lexicon"
    docs = None
    if filler == "prose":
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        from prose import load_eval

        docs = [d.lines for d in load_eval()]
    with open(out, "w") as f:
        for kind in FACT_TYPES:
            for ep in heldout_episodes(seed, kind, L, n, filler, docs):
                ep.meta["kind"] = kind
                f.write(ep.to_json() + "\n")
