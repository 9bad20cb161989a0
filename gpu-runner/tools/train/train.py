"""Train kvrag's tiny byte-level Llama on synthetic RAG episodes (episodes.py, EPISODES.md).

CPU, Debian python3-torch: `/usr/bin/python3 gpu-runner/tools/train/train.py [--smoke] [--resume]`.
Dense supervision (every training episode plants up to 12 facts and asks about each in its own
question branch; episodes.make_train_episode), an induction bootstrap (episodes.copy_sequence: random
key=value lists then lookups, loss on every copied byte), a small next-token loss on all in-segment
text, a curriculum of context lengths (128-512 first, up to 4K last), half the episodes with
block-diagonal chunk attention (what `independent` KV reuse needs), AdamW + cosine, bf16 autocast
(measured ~4x faster than f32 on this CPU's avx512_bf16), periodic held-out exact match, resumable
checkpoints, and an HF export at every checkpoint so a usable model exists even if the run is cut short.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import time
from dataclasses import asdict

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from episodes import (END, FACT_TYPES, Encoded, collate, copy_sequence, encode_episode,  # noqa: E402
                      encode_serving, heldout_episodes, make_train_episode, repeat_sequence)
from model import LlamaConfig, LlamaForCausalLM, export_hf, induction_init, load_hf  # noqa: E402
from prose import collect, manifest_digest, write_manifest  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", "..", ".."))


def parse_args(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--seed", type=int, default=20261122)
    p.add_argument("--steps", type=int, default=100000, help="step cap (the time budget usually ends first)")
    p.add_argument("--time-budget-s", type=float, default=2700.0,
                   help="training seconds (excluding evals); curriculum and LR follow elapsed/budget, "
                        "because this machine is shared and steps/s varies several-fold")
    p.add_argument("--tokens-per-step", type=int, default=6144)
    p.add_argument("--micro-tokens", type=int, default=8192, help="padded tokens per micro-batch")
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--warmup", type=int, default=30)
    p.add_argument("--weight-decay", type=float, default=0.05)
    p.add_argument("--lm-weight", type=float, default=0.1,
                   help="weight of an auxiliary next-token loss on every in-segment token (context and "
                        "questions); 0 = answer tokens only")
    p.add_argument("--repeat-share", type=float, default=0.05,
                   help="share of plain-repetition induction sequences (episodes.repeat_sequence), "
                        "like --copy-share")
    p.add_argument("--copy-share", type=float, default=0.15,
                   help="share of induction-bootstrap sequences (episodes.copy_sequence) in the first "
                        "half of the run; a third of it afterwards")
    p.add_argument("--block-share", type=float, default=0.5, help="share of block-diagonal episodes")
    p.add_argument("--max-ctx", type=int, default=4096)
    p.add_argument("--short-range", default="128,512", help="LO,HI: the first curriculum phase")
    p.add_argument("--unlock-loss", type=float, default=0.0,
                   help="adaptive curriculum: stay in the first phase (short contexts, full bootstrap "
                        "shares) until the RAG answer loss (EMA over ~20 steps) falls below this, or until "
                        "--max-lock of the run; the later phases then share the remaining time. "
                        "0 = purely time-based phases")
    p.add_argument("--max-lock", type=float, default=0.5)
    p.add_argument("--ctx-range", default="", help="LO,HI: fixed context range instead of the curriculum")
    p.add_argument("--eval-every-s", type=float, default=900.0, help="training seconds between evals")
    p.add_argument("--eval-at-start", action="store_true", help="evaluate the starting weights first")
    p.add_argument("--eval-n", type=int, default=8, help="held-out episodes per (type, mode, length)")
    p.add_argument("--eval-lens", default="512,2048")
    p.add_argument("--final-eval-lens", default="2048,4096")
    p.add_argument("--final-eval-n", type=int, default=24)
    p.add_argument("--ckpt-every-s", type=float, default=600.0, help="training seconds between checkpoints")
    p.add_argument("--ckpt-dir", default=os.path.join(ROOT, ".kvrag", "train"))
    p.add_argument("--out-dir", default=os.path.join(ROOT, "models", "kvrag-tiny"))
    p.add_argument("--tokenizer-dir", default=os.path.join(ROOT, "gpu-runner", "tools", "tokenizer"))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--no-bf16", action="store_true")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--init-from", default="",
                   help="start from these weights, a checkpoint (.pt) or an exported HF directory (a fine-tune: "
                        "fresh optimizer, step 0, no induction init)")
    p.add_argument("--kinds", default="kv:0.75,twohop:0.25",
                   help="KIND:SHARE,... the asked facts besides the pass key in training episodes "
                        "(episodes.make_train_episode); the unasked distractors are drawn from its kv/field/setting")
    p.add_argument("--passkey-share", type=float, default=0.6, help="training episodes with a pass key")
    p.add_argument("--prose-share", type=float, default=0.0,
                   help="share of training episodes whose filler is real prose collected from the machine's "
                        "documentation (prose.py; its held-out files feed the prose evals); 0 = lexicon only")
    p.add_argument("--serving-share", type=float, default=0.0,
                   help="share of training episodes encoded in the API's serving format (episodes.encode_serving)")
    p.add_argument("--manifest", default="",
                   help="write the prose manifest (paths, sizes, hashes, train/held-out) here")
    p.add_argument("--smoke", action="store_true", help="tiny run: 40 steps, short contexts")
    # small and few-headed for CPU throughput: retrieval needs induction circuitry, not capacity, and the
    # T x T passes scale with the number of query heads (4 heads of 64 trained ~2.5x faster than 8 of
    # 32 at 4K context, measured); 3 query heads of 64 share 1 kv head (GQA)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--hidden", type=int, default=192)
    p.add_argument("--intermediate", type=int, default=512)
    p.add_argument("--heads", type=int, default=3)
    p.add_argument("--kv-heads", type=int, default=1)
    p.add_argument("--head-dim", type=int, default=64)
    p.add_argument("--rope-theta", type=float, default=1e6,
                   help="large, so the induction head's lowest-frequency RoPE pairs barely rotate over 4K")
    p.add_argument("--no-induction-init", action="store_true",
                   help="plain random init instead of model.induction_init (which starts the model with "
                        "a working previous-token + induction circuit)")
    return p.parse_args(argv)


def log(obj: dict):
    obj = {"t": round(time.time(), 1), **obj}
    print(json.dumps(obj), flush=True)


def progress(step: int, elapsed: float, args) -> float:
    """Fraction of the run done: by training time when a time budget is set, else by steps."""
    if args.time_budget_s > 0:
        return min(1.0, elapsed / args.time_budget_s)
    return min(1.0, step / max(1, args.steps))


def curriculum(f: float, max_ctx: int, short: str = "128,512") -> tuple[int, int]:
    """Context-length range (tokens) at curriculum fraction f: short contexts first, then up to max_ctx."""
    # the copy-from-context mechanism is learned on short, dense episodes (cheap steps, many answers);
    # long contexts then teach it to survive distance (RoPE positions up to max_ctx) and dilution
    if f < 0.3:
        lo, hi = (int(x) for x in short.split(","))
    elif f < 0.5:
        lo, hi = 256, 1024
    elif f < 0.7:
        lo, hi = 512, 2048
    else:
        lo, hi = 1024, max_ctx
    return lo, min(hi, max_ctx)


def parse_kinds(spec: str) -> tuple[tuple[str, float], ...]:
    """"kv:0.75,twohop:0.25" -> cumulative shares (("kv", 0.75), ("twohop", 1.0))."""
    parts = [(k, float(v)) for k, v in (x.split(":") for x in spec.split(","))]
    total = sum(v for _, v in parts)
    out, acc = [], 0.0
    for k, v in parts:
        if k not in FACT_TYPES or k == "passkey":
            raise SystemExit(f"--kinds: unknown kind {k!r}")
        acc += v / total
        out.append((k, acc))
    out[-1] = (out[-1][0], 1.0)
    return tuple(out)


PROSE: dict[str, list[list[str]]] = {"train": [], "heldout": []}


def make_batch(seed: int, step: int, f: float, args, bootstrap: bool | None = None):
    """Deterministic per (seed, step, f, bootstrap); the log records each step's context length. About
    `tokens_per_step` tokens of dense training episodes (make_train_episode: many facts, a question
    branch per fact) plus a share of induction-bootstrap copy sequences of the same length."""
    rng = random.Random(seed * 1_000_003 + step)
    lo, hi = curriculum(f, args.max_ctx, args.short_range)
    if args.ctx_range:
        lo, hi = (int(x) for x in args.ctx_range.split(","))
    # bias towards the long end of the range: long contexts are what the targets are about
    L = int(lo + (hi - lo) * math.sqrt(rng.random()))
    if bootstrap is None:
        bootstrap = f < 0.5
    copy_share = args.copy_share if bootstrap else args.copy_share / 3
    repeat_share = args.repeat_share if bootstrap else args.repeat_share / 3
    encs: list[Encoded] = []
    n_tok = 0
    while n_tok < args.tokens_per_step or not encs:
        r = rng.random()
        if r < copy_share:
            toks, loss = copy_sequence(rng, L)
            n = len(toks)
            e = Encoded(toks, list(range(n)), [-1] * n, loss, "full", [])
        elif r < copy_share + repeat_share:
            toks, loss = repeat_sequence(rng, L)
            n = len(toks)
            e = Encoded(toks, list(range(n)), [-1] * n, loss, "full", [])
        else:
            mode = "block" if rng.random() < args.block_share else "full"
            filler = "prose" if rng.random() < args.prose_share else "lexicon"
            ep = make_train_episode(rng, L, mode, filler, PROSE["train"], parse_kinds(args.kinds),
                                    args.passkey_share)
            e = encode_serving(ep) if rng.random() < args.serving_share else encode_episode(ep)
        encs.append(e)
        n_tok += len(e.tokens)
    return encs, L


def heldout(seed: int, lengths: list[int], n: int, kinds: list[str], fillers: list[str], serving: bool):
    """Fixed held-out single-question episodes: {(kind[/filler][/serving], mode, length): [Encoded]}, seeded
    per mode (episodes.heldout_episodes); prose from the held-out split of the collected documents. With
    `serving`, the prose kv/field/setting episodes are also encoded in the API's serving format."""
    out = {}
    for L in lengths:
        for kind in kinds:
            for filler in fillers:
                for mode in ("full", "block"):
                    eps = heldout_episodes(seed, kind, L, n, filler, PROSE["heldout"], mode)
                    name = kind if filler == "lexicon" else f"{kind}/{filler}"
                    out[(name, mode, L)] = [encode_episode(e) for e in eps]
                    if serving and filler == "prose" and kind in ("kv", "field", "setting"):
                        out[(f"{name}/serving", mode, L)] = [encode_serving(e) for e in eps]
    return out


def lm_targets(encs, T: int):
    """Next-token targets [B, T] for the auxiliary loss: token t+1 wherever it lies in the same
    segment as t (same chunk, the prefix, or the same question branch), so the target is always
    visible under both attention modes; -100 elsewhere."""
    out = torch.full((len(encs), T), -100, dtype=torch.long)
    for i, e in enumerate(encs):
        seg = torch.tensor(e.seg)
        tok = torch.tensor(e.tokens)
        same = seg[1:] == seg[:-1]
        out[i, : len(e.tokens) - 1] = torch.where(same, tok[1:], torch.full_like(tok[1:], -100))
    return out


def accumulate_grads(model, encs, bf16: bool, lm_weight: float, micro_tokens: int):
    """Backward over the step's sequences in micro-batches of similar length (sorted, at most
    `micro_tokens` padded tokens each), so padding and the [B, T, T] masks stay small. The gradient
    equals that of the whole batch's loss: answer CE averaged over all answer tokens plus lm_weight x
    the in-segment next-token CE averaged over all in-segment tokens. Returns (loss, answer loss,
    answer loss over the RAG episodes' answers alone)."""
    encs = sorted(encs, key=lambda e: len(e.tokens))
    groups: list[list] = [[]]
    for e in encs:
        g = groups[-1]
        if g and len(e.tokens) * (len(g) + 1) > micro_tokens:
            groups.append([e])
        else:
            g.append(e)
    n_ans = sum(sum(e.loss) for e in encs)
    n_lm = sum(sum(1 for a, b in zip(e.seg[1:], e.seg[:-1]) if a == b) for e in encs)
    n_qa = sum(sum(e.loss) for e in encs if e.answers)
    tot_ans, tot_lm, tot_qa = 0.0, 0.0, 0.0
    for g in groups:
        tokens, positions, targets, mask = collate(g)
        flat_t = targets.reshape(-1)
        idx = (flat_t != -100).nonzero().squeeze(1)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = model(tokens, positions, mask, hidden_only_at=None if lm_weight > 0 else idx)
        flat_l = logits.float().reshape(-1, logits.shape[-1])
        ans_tok = F.cross_entropy(flat_l[idx] if lm_weight > 0 else flat_l, flat_t[idx], reduction="none")
        ans = ans_tok.sum()
        loss = ans / n_ans
        tot_ans += float(ans)
        is_qa = torch.tensor([bool(e.answers) for e in g])[idx // tokens.shape[1]]
        tot_qa += float(ans_tok.detach()[is_qa].sum())
        if lm_weight > 0:
            lm = F.cross_entropy(flat_l, lm_targets(g, tokens.shape[1]).reshape(-1), ignore_index=-100,
                                 reduction="sum")
            loss = loss + lm_weight * lm / n_lm
            tot_lm += float(lm)
        loss.backward()
    a = tot_ans / n_ans
    return a + lm_weight * tot_lm / max(1, n_lm), a, tot_qa / max(1, n_qa)


@torch.no_grad()
def exact_match(model, encs, bf16: bool, batch: int = 4) -> float:
    """Teacher-forced exact match: every answer token (and the closing <|end|>) is the argmax given
    the gold prefix. For greedy decoding this is exactly greedy exact match: greedy reproduces the
    answer iff each step's argmax equals the gold token."""
    hits = 0
    for i in range(0, len(encs), batch):
        part = encs[i:i + batch]
        tokens, positions, targets, mask = collate(part)
        T = tokens.shape[1]
        flat_t = targets.reshape(-1)
        idx = (flat_t != -100).nonzero().squeeze(1)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = model(tokens, positions, mask, hidden_only_at=idx)
        ok = logits.argmax(-1) == flat_t[idx]
        row = idx // T
        for b in range(len(part)):
            hits += int(ok[row == b].all())
    return hits / len(encs)


@torch.no_grad()
def greedy_decode(model, enc, bf16: bool, max_new: int = 24) -> str:
    """Real greedy decode of the first branch (no KV cache; used for a few log samples)."""
    start = enc.answers[0][0]
    toks = list(enc.tokens[:start])
    pos = list(enc.positions[:start])
    seg = list(enc.seg[:start])
    out = []
    for _ in range(max_new):
        e = type(enc)(toks, pos, seg, [False] * len(toks), enc.mode, [])
        tokens, positions, _, mask = collate([e])
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = model(tokens, positions, mask, hidden_only_at=torch.tensor([len(toks) - 1]))
        nxt = int(logits[0].argmax())
        if nxt == END:
            break
        out.append(nxt)
        toks.append(nxt)
        pos.append(pos[-1] + 1)
        seg.append(seg[-1])
    return bytes(t for t in out if t < 256).decode("utf-8", "replace")


def run_eval(model, sets, bf16: bool, step: int, tag: str, samples: bool = True):
    model.eval()
    t0 = time.time()
    res = {}
    for (kind, mode, L), encs in sets.items():
        res[f"{kind}/{mode}/{L}"] = round(exact_match(model, encs, bf16), 4)
    rec = {"event": tag, "step": step, "exact_match": res, "eval_s": round(time.time() - t0, 1)}
    if samples:
        smp = []
        for (kind, mode, L), encs in sets.items():
            # one greedy sample per fact type and filler at the shortest length (decoding without a KV
            # cache is slow), not for the serving-format copies
            if mode == "full" and L == min(k[2] for k in sets) and not kind.endswith("/serving"):
                e = encs[0]
                smp.append({"kind": kind, "gold": e.answers[0][2].answer,
                            "greedy": greedy_decode(model, e, bf16)})
        rec["greedy_samples"] = smp
    log(rec)
    model.train()
    return res


def lr_at(step: int, f: float, args) -> float:
    """Linear warmup over `warmup` steps, then cosine to 10% over the run fraction f."""
    if step < args.warmup:
        return args.lr * (step + 1) / args.warmup
    return args.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, f))))


def model_card(cfg: LlamaConfig, n_params: int, step: int, final: bool, seed: int, evals: dict,
               init_from: str = "") -> str:
    status = f"final (step {step})" if final else f"INTERMEDIATE export at step {step} (run not finished)"
    if init_from:
        status += f"; fine-tuned from the checkpoint {os.path.relpath(init_from, ROOT)} (an earlier run)"
    lines = [
        "# kvrag-tiny",
        "",
        "A tiny byte-level Llama (GQA, rotate-half RoPE, SwiGLU) trained from scratch by kvrag on synthetic",
        "RAG episodes (gpu-runner/tools/train, episode format in gpu-runner/tools/train/EPISODES.md).",
        "It exists to give the engine real attention structure and a measurable accuracy for each KV",
        "reuse mode; it is not a general language model.",
        "",
        f"- status: {status}; seed {seed}",
        f"- parameters: {n_params:,} (F32 safetensors); layers {cfg.num_hidden_layers}, hidden {cfg.hidden_size},"
        f" {cfg.num_attention_heads} query heads / {cfg.num_key_value_heads} kv heads, head_dim {cfg.head_dim},"
        f" intermediate {cfg.intermediate_size}, rope_theta {cfg.rope_theta:g}",
        "- tokenizer: bytes 0..255 + specials (<|bos|> 256 ... <|end|> 264), vocab 272; chat template",
        "  `<|bos|>` then `<|role|>content<|end|>` per message, generation prompt `<|assistant|>`.",
        "",
        "## What it is trained to do (see the measured exact match below for what it actually does)",
        "Answer questions whose answer is copied from a chunk of the prompt, in the episode format and in",
        "the prompt kvrag's answer API builds (EPISODES.md, \"Serving format\"): a pass key, the value of a",
        "`Record XXXXX: NNNNNN.` record, a two-hop link (`Record A: B.` + `Record B: N.` -> answers `B: N`),",
        "a `Default port: 8080` line, a `max_pool_size = 512` setting and a `| key | value |` table row,",
        "in generated filler sentences or in real documentation prose. Trained with full",
        "causal attention and with block-diagonal chunk attention (chunks see only themselves, contiguous",
        "positions), so `independent` (TurboRAG-style) chunk KV reuse is in-distribution.",
        "",
        "## What it cannot do",
        "Anything else: no general knowledge, no free-form text, no instructions beyond the templates.",
        "Contexts beyond 4096 tokens were never trained; other fact phrasings and questions are out of",
        "distribution.",
        "Retrieval is only as good as the table below: a short CPU run may not have learned to copy.",
        "",
        "## Held-out exact match at this export (teacher-forced argmax == greedy exact match)",
        "",
        "```",
        json.dumps(evals, indent=1, sort_keys=True),
        "```",
        "",
    ]
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(argv)
    if args.smoke:
        args.steps, args.time_budget_s, args.eval_every_s, args.ckpt_every_s = 1000, 120, 60, 60
        args.max_ctx, args.warmup = 1024, 10
        args.eval_n, args.eval_lens, args.final_eval_lens, args.final_eval_n = 4, "512", "1024", 4
        args.tokens_per_step = min(args.tokens_per_step, 4096)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    bf16 = not args.no_bf16
    cfg = LlamaConfig(num_hidden_layers=args.layers, hidden_size=args.hidden,
                      intermediate_size=args.intermediate, num_attention_heads=args.heads,
                      num_key_value_heads=args.kv_heads, head_dim=args.head_dim,
                      rope_theta=args.rope_theta)
    model = LlamaForCausalLM(cfg)
    if args.init_from and os.path.isdir(args.init_from):
        model.load_state_dict(load_hf(args.init_from).state_dict())
        model.train()
    elif args.init_from:
        model.load_state_dict(torch.load(args.init_from)["model"])
    elif not args.no_induction_init:
        induction_init(model, seed=args.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.95),
                            weight_decay=args.weight_decay)
    os.makedirs(args.ckpt_dir, exist_ok=True)
    ckpt_path = os.path.join(args.ckpt_dir, "ckpt.pt")
    step, elapsed, tokens_seen, last_eval = 0, 0.0, 0, {}
    unlocked_at: float | None = None  # training seconds at which the adaptive curriculum moved on
    ema = None
    if args.resume and os.path.exists(ckpt_path):
        ck = torch.load(ckpt_path)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        step, elapsed, tokens_seen = ck["step"], ck["elapsed"], ck["tokens_seen"]
        last_eval = ck.get("last_eval", {})
        unlocked_at = ck.get("unlocked_at")
        torch.set_rng_state(ck["torch_rng"])
    n_params = sum(p.numel() for p in model.parameters())
    prose_info = {}
    if args.prose_share > 0:
        t0 = time.time()
        train_docs, held_docs, manifest = collect()
        PROSE["train"] = [d.lines for d in train_docs]
        PROSE["heldout"] = [d.lines for d in held_docs]
        if args.manifest:
            write_manifest(args.manifest, manifest)
        prose_info = {"train_docs": len(train_docs), "heldout_docs": len(held_docs),
                      "train_bytes": sum(r.get("bytes", 0) for r in manifest if r["use"] == "train"),
                      "excluded": sum(1 for r in manifest if r["use"].startswith("excluded")),
                      "manifest_digest": manifest_digest(manifest), "collect_s": round(time.time() - t0, 1)}
    log({"event": "start", "prose": prose_info, "seed": args.seed, "resumed_at": step, "params": n_params,
         "config": asdict(cfg), "args": vars(args), "torch": torch.__version__, "bf16": bf16,
         "ld_preload": os.environ.get("LD_PRELOAD", "")})
    kinds = ["passkey", *[k for k, _ in parse_kinds(args.kinds)]]
    fillers = ["lexicon", "prose"] if args.prose_share > 0 else ["lexicon"]
    serving = args.serving_share > 0
    eval_sets = heldout(args.seed, [int(x) for x in args.eval_lens.split(",")], args.eval_n, kinds, fillers,
                        serving)

    def save(step_now: int, final: bool = False):
        torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "step": step_now,
                    "elapsed": elapsed, "tokens_seen": tokens_seen, "last_eval": last_eval,
                    "torch_rng": torch.get_rng_state(), "args": vars(args),
                    "unlocked_at": unlocked_at}, ckpt_path + ".tmp")
        os.replace(ckpt_path + ".tmp", ckpt_path)
        export_hf(model, args.out_dir, args.tokenizer_dir,
                  model_card(cfg, n_params, step_now, final, args.seed, last_eval, args.init_from))
        log({"event": "checkpoint", "step": step_now, "ckpt": ckpt_path, "hf_dir": args.out_dir})

    if args.eval_at_start:
        last_eval = run_eval(model, eval_sets, bf16, step, "start_eval", samples=False)
    model.train()
    win_loss, win_ans, win_qa, win_tok, win_n, win_t = 0.0, 0.0, 0.0, 0, 0, time.time()
    next_eval = (elapsed // args.eval_every_s + 1) * args.eval_every_s
    next_ckpt = (elapsed // args.ckpt_every_s + 1) * args.ckpt_every_s
    while step < args.steps and progress(step, elapsed, args) < 1.0:
        t0 = time.time()
        f = progress(step, elapsed, args)
        if args.unlock_loss > 0:
            if unlocked_at is None and ((ema is not None and ema < args.unlock_loss) or f >= args.max_lock):
                unlocked_at = elapsed
                log({"event": "unlock", "step": step, "elapsed_s": round(elapsed, 1), "answer_loss_ema": ema})
            if unlocked_at is None:
                cf, boot = 0.0, True
            else:
                cf = 0.3 + 0.7 * (elapsed - unlocked_at) / max(1.0, args.time_budget_s - unlocked_at)
                boot = False
            encs, L = make_batch(args.seed, step, cf, args, boot)
        else:
            encs, L = make_batch(args.seed, step, f, args)
        lr = lr_at(step, f, args)
        for g in opt.param_groups:
            g["lr"] = lr
        opt.zero_grad(set_to_none=True)
        loss, ans_loss, qa_loss = accumulate_grads(model, encs, bf16, args.lm_weight, args.micro_tokens)
        gn = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        ntok = sum(len(e.tokens) for e in encs)
        tokens_seen += ntok
        elapsed += time.time() - t0
        win_loss += float(loss)
        win_ans += float(ans_loss)
        win_qa += qa_loss
        ema = qa_loss if ema is None else 0.95 * ema + 0.05 * qa_loss
        win_tok += ntok
        win_n += 1
        if step % 10 == 0 or step == 1:
            log({"event": "train", "step": step, "loss": round(win_loss / win_n, 4),
                 "answer_loss": round(win_ans / win_n, 4), "qa_loss": round(win_qa / win_n, 4), "ctx": L,
                 "seqs": len(encs), "lr": round(lr, 6), "grad_norm": round(float(gn), 3),
                 "tok_per_s": round(win_tok / (time.time() - win_t), 1), "tokens_seen": tokens_seen,
                 "elapsed_s": round(elapsed, 1), "progress": round(f, 4)})
            win_loss, win_ans, win_qa, win_tok, win_n, win_t = 0.0, 0.0, 0.0, 0, 0, time.time()
        if elapsed >= next_eval and progress(step, elapsed, args) < 1.0:
            last_eval = run_eval(model, eval_sets, bf16, step, "eval")
            next_eval += args.eval_every_s
            win_t = time.time()
        if elapsed >= next_ckpt:
            save(step)
            next_ckpt += args.ckpt_every_s
            win_t = time.time()
    final_sets = heldout(args.seed, [int(x) for x in args.final_eval_lens.split(",")], args.final_eval_n, kinds,
                         fillers, serving)
    last_eval = run_eval(model, {**eval_sets, **final_sets}, bf16, step, "final_eval")
    save(step, final=True)
    log({"event": "done", "step": step, "elapsed_s": round(elapsed, 1), "tokens_seen": tokens_seen})


if __name__ == "__main__":
    main()
