"""Golden greedy outputs of an exported kvrag-tiny directory, from the PyTorch model in f32.

    /usr/bin/python3 gpu-runner/tools/train/golden.py [models/kvrag-tiny] [test/fixtures/kvrag-tiny-greedy.json]

Reads the HF directory back (config.json + model.safetensors, with the reader below, so this also
checks the exporter's round trip), builds a few short held-out episodes in `full` mode (EPISODES.md)
and writes their prompt ids and the f32 greedy continuation. The TypeScript test loads the same
directory with the engine and must produce the same tokens; the file also records the sha256 of
model.safetensors so a fixture left stale by a new export is reported as such.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from episodes import END, EOS, collate, encode_episode, make_episode  # noqa: E402
from model import load_hf  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", "..", ".."))


@torch.no_grad()
def greedy(model, enc, max_new: int = 16) -> list[int]:
    """f32 greedy continuation of the first branch's prompt, up to and including a stop token."""
    start = enc.answers[0][0]
    toks, pos, seg = list(enc.tokens[:start]), list(enc.positions[:start]), list(enc.seg[:start])
    out: list[int] = []
    for _ in range(max_new):
        e = type(enc)(toks, pos, seg, [False] * len(toks), "full", [])
        tokens, positions, _, mask = collate([e])
        logits = model(tokens, positions, mask, hidden_only_at=torch.tensor([len(toks) - 1]))
        nxt = int(logits[0].argmax())
        out.append(nxt)
        if nxt in (END, EOS):
            break
        toks.append(nxt)
        pos.append(pos[-1] + 1)
        seg.append(seg[-1])
    return out


def main():
    model_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "models", "kvrag-tiny")
    out = sys.argv[2] if len(sys.argv) > 2 else os.path.join(ROOT, "test", "fixtures", "kvrag-tiny-greedy.json")
    torch.set_num_threads(1)
    model = load_hf(model_dir)
    with open(os.path.join(model_dir, "model.safetensors"), "rb") as f:
        sha = hashlib.sha256(f.read()).hexdigest()
    rng = random.Random("golden-kvrag-tiny")
    cases = []
    for kind, nd in (("passkey", 0), ("kv", 2), ("twohop", 2), ("field", 2), ("setting", 2), ("table", 0)):
        dk = kind if kind in ("field", "setting") else "kv"
        enc = encode_episode(make_episode(rng, 160, 1, "full", kinds=[kind], n_distractors=nd, system=True,
                                          distractor_kind=dk, table_rows=2))
        start = enc.answers[0][0]
        ids = greedy(model, enc)
        cases.append({"kind": kind, "prompt_ids": enc.tokens[:start], "gold_answer": enc.answers[0][2].answer,
                      "torch_greedy_ids": ids,
                      "torch_greedy_text": bytes(t for t in ids if t < 256).decode("utf-8", "replace")})
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as f:
        # one case per line: the id lists stay readable in a diff
        f.write('{"model_safetensors_sha256": %s, "max_new_tokens": 16, "cases": [\n' % json.dumps(sha))
        f.write(",\n".join(json.dumps(c, separators=(",", ":")) for c in cases))
        f.write("\n]}\n")
    for c in cases:
        print(c["kind"], "gold", c["gold_answer"], "torch greedy", repr(c["torch_greedy_text"]))


if __name__ == "__main__":
    main()
