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
import random
from dataclasses import dataclass, field

# Token ids of the byte tokenizer (gpu-runner/tools/byte-tokenizer.ts): 0..255 bytes, then specials.
BOS, EOS, PAD, SYSTEM, USER, ASSISTANT, DOC, END_DOC, END = 256, 257, 258, 259, 260, 261, 262, 263, 264
VOCAB_SIZE = 272

SYSTEM_TEXT = "Answer with the exact value from the documents."

FACT_TYPES = ("passkey", "kv", "twohop")

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


@dataclass
class QA:
    kind: str  # one of FACT_TYPES
    question: str
    answer: str


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
                           "qas": [qa.__dict__ for qa in self.qas], "meta": self.meta})


def plant_facts(rng: random.Random, kinds: list[str], n_distractors: int) -> tuple[list[str], list[QA]]:
    """Fact sentences (to scatter over chunks) and the questions asked about them, in `kinds` order."""
    used: set[str] = set()
    facts: list[str] = []
    qas: list[QA] = []
    for kind in kinds:
        if kind == "passkey":
            p = str(rng.randint(10000, 99999))
            facts.append(f"The pass key is {p}. Remember it. {p} is the pass key.")
            qas.append(QA("passkey", "What is the pass key?", p))
        elif kind == "kv":
            k, v = new_key(rng, used), new_value(rng)
            facts.append(f"Record {k}: {v}.")
            qas.append(QA("kv", f"What is the value of record {k}?", v))
        elif kind == "twohop":
            k1, k2, v = new_key(rng, used), new_key(rng, used), new_value(rng)
            facts.append(f"Record {k1}: {k2}.")
            facts.append(f"Record {k2}: {v}.")
            qas.append(QA("twohop", f"Follow the link from record {k1}?", f"{k2}: {v}"))
        else:
            raise ValueError(kind)
    for _ in range(n_distractors):
        facts.append(f"Record {new_key(rng, used)}: {new_value(rng)}.")
    return facts, qas


def build_chunks(rng: random.Random, ctx_bytes: int, facts: list[str],
                 chunk_min: int = 64, chunk_max: int = 512) -> list[str]:
    """Chunks of filler totalling about `ctx_bytes` bytes with each fact placed in a random chunk
    at a random sentence boundary. Chunk sizes are uniform in [chunk_min, chunk_max] bytes."""
    sizes: list[int] = []
    left = ctx_bytes
    while left > 0:
        s = min(left, rng.randint(chunk_min, chunk_max))
        sizes.append(max(s, 24))
        left -= s
    sentences: list[list[str]] = []
    for size in sizes:
        # filler up to the chunk's size (never over it, but at least one sentence); 2 bytes of each
        # chunk's budget stand for its <|doc|> <|/doc|> markers
        sents: list[str] = [filler_sentence(rng)]
        n = len(sents[0]) + 2
        while True:
            s = filler_sentence(rng)
            if n + (len(s) + 1) // 2 > size:  # stop nearest the size, on average
                break
            sents.append(s)
            n += len(s) + 1
        sentences.append(sents)
    for fact in facts:
        c = rng.randrange(len(sentences))
        sentences[c].insert(rng.randint(0, len(sentences[c])), fact)
    return [" ".join(s) for s in sentences]


def make_episode(rng: random.Random, ctx_tokens: int, n_questions: int, mode: str,
                 kinds: list[str] | None = None, n_distractors: int | None = None,
                 system: bool | None = None) -> Episode:
    """One episode whose context (bos + system + chunks) is about `ctx_tokens` tokens."""
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
    facts, qas = plant_facts(rng, kinds, n_distractors)
    overhead = 1 + (len(SYSTEM_TEXT) + 2 if system else 0) + sum(len(f) + 1 for f in facts)
    chunks = build_chunks(rng, max(64, ctx_tokens - overhead), facts)
    return Episode(SYSTEM_TEXT if system else None, chunks, qas, mode,
                   {"ctx_tokens_target": ctx_tokens})


def make_train_episode(rng: random.Random, ctx_tokens: int, mode: str) -> Episode:
    """A dense training episode: up to 12 planted facts over ~`ctx_tokens` of context and a question
    branch for each (so one context prefill supervises many copied answers). A pass key in 60% of
    episodes; the other facts are kv records (75%) or two-hop links (25%); a few extra unasked
    records act as distractors. Each branch is exactly the single-question format."""
    n_facts = rng.randint(1, max(2, min(12, ctx_tokens // 64)))
    kinds: list[str] = ["passkey"] if rng.random() < 0.6 else []
    while len(kinds) < n_facts:
        kinds.append("twohop" if rng.random() < 0.25 else "kv")
    rng.shuffle(kinds)
    n_distractors = rng.randint(0, max(1, ctx_tokens // 512))
    return make_episode(rng, ctx_tokens, len(kinds), mode, kinds=kinds, n_distractors=n_distractors)


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
    ctx = len(toks)
    positions = list(range(ctx))
    loss = [False] * ctx
    answers = []
    for b, qa in enumerate(ep.qas):
        q = [USER, *encode(qa.question), END, ASSISTANT]
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


def heldout_episodes(seed: int, kind: str, ctx_tokens: int, n: int) -> list[Episode]:
    """Single-question held-out episodes (EPISODES.md, "Held-out evaluation sets"); `mode` is left
    "full" -- the same text is evaluated in both modes."""
    rng = random.Random(f"heldout-{seed}-{kind}-full-{ctx_tokens}")
    nd = 0 if kind == "passkey" else 3
    return [make_episode(rng, ctx_tokens, 1, "full", kinds=[kind], n_distractors=nd, system=True)
            for _ in range(n)]


if __name__ == "__main__":
    # python3 episodes.py OUT.jsonl [ctx_tokens=2048] [n_per_type=50] [seed=20261122]
    # One JSON object per line: {system, chunks, mode, qas: [{kind, question, answer}], meta}.
    import sys

    out = sys.argv[1]
    L = int(sys.argv[2]) if len(sys.argv) > 2 else 2048
    n = int(sys.argv[3]) if len(sys.argv) > 3 else 50
    seed = int(sys.argv[4]) if len(sys.argv) > 4 else 20261122
    with open(out, "w") as f:
        for kind in FACT_TYPES:
            for ep in heldout_episodes(seed, kind, L, n):
                ep.meta["kind"] = kind
                f.write(ep.to_json() + "\n")
