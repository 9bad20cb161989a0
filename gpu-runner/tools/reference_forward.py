#!/usr/bin/python3
"""PyTorch reference forward for kvrag's engine (the oracle for golden logits).

Implements the Llama / Mistral / Qwen2 decoder forward directly in torch (transformers is not
needed), in float32, following the Hugging Face modelling code: RMSNorm, rotate-half RoPE (with
llama3 / linear rope scaling), GQA attention with a causal mask, SwiGLU MLP, tied embeddings.
Weights are read from model.safetensors or a sharded index with the `safetensors` module when it is
installed, else with the small reader below; BF16/F16 are widened to float32.

usage: /usr/bin/python3 reference_forward.py PROMPTS_JSON MODEL_DIR OUT_BIN [MODEL_DIR OUT_BIN ...]
  PROMPTS_JSON: {"prompts": [[token ids], ...]}
  (several models per run, so torch is imported once)
  OUT_BIN: float32 little-endian logits of every position of every prompt, prompts concatenated:
           [sum(len(prompt)), vocab_size]
"""
import json
import math
import os
import struct
import sys

import numpy as np
import torch

torch.set_num_threads(2)


def read_safetensors(path):
    try:
        from safetensors.torch import load_file  # type: ignore

        return {k: v.float() for k, v in load_file(path).items()}
    except ImportError:
        pass
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8 : 8 + n])
    base = 8 + n
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        start, end = e["data_offsets"]
        raw = blob[base + start : base + end]
        if e["dtype"] == "F32":
            arr = np.frombuffer(raw, dtype="<f4").copy()
        elif e["dtype"] == "F16":
            arr = np.frombuffer(raw, dtype="<f2").astype(np.float32)
        elif e["dtype"] == "BF16":
            arr = (np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16).view(np.float32)
        else:
            raise ValueError(f"{path}: unsupported dtype {e['dtype']}")
        out[name] = torch.from_numpy(arr.reshape(e["shape"]))
    return out


def load_weights(model_dir):
    index = os.path.join(model_dir, "model.safetensors.index.json")
    if os.path.exists(index):
        with open(index) as f:
            files = sorted(set(json.load(f)["weight_map"].values()))
    else:
        files = ["model.safetensors"]
    w = {}
    for fn in files:
        w.update(read_safetensors(os.path.join(model_dir, fn)))
    return w


def inv_freq_of(cfg, head_dim):
    params = cfg.get("rope_parameters") or cfg.get("rope_scaling") or {}
    theta = (cfg.get("rope_parameters") or {}).get("rope_theta", cfg.get("rope_theta", 10000.0))
    kind = params.get("rope_type", params.get("type", "default"))
    inv = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim))
    if kind == "linear":
        inv = inv / params["factor"]
    elif kind == "llama3":
        factor = params["factor"]
        low, high = params["low_freq_factor"], params["high_freq_factor"]
        old = params["original_max_position_embeddings"]
        low_wavelen, high_wavelen = old / low, old / high
        wavelen = 2 * math.pi / inv
        inv_l = torch.where(wavelen > low_wavelen, inv / factor, inv)
        smooth = (old / wavelen - low) / (high - low)
        smoothed = (1 - smooth) * inv_l / factor + smooth * inv_l
        medium = ~(wavelen < high_wavelen) * ~(wavelen > low_wavelen)
        inv = torch.where(medium, smoothed, inv_l)
    elif kind != "default":
        raise ValueError(f"unsupported rope type {kind}")
    return inv


def rms_norm(x, w, eps):
    var = x.pow(2).mean(-1, keepdim=True)
    return w * (x * torch.rsqrt(var + eps))


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def forward(cfg, w, ids):
    d = cfg["hidden_size"]
    nh = cfg["num_attention_heads"]
    nkv = cfg.get("num_key_value_heads") or nh
    hd = cfg.get("head_dim") or d // nh
    eps = cfg.get("rms_norm_eps", 1e-6)
    is_qwen2 = cfg.get("model_type") == "qwen2"
    t = len(ids)
    x = w["model.embed_tokens.weight"][torch.tensor(ids)]
    pos = torch.arange(t, dtype=torch.float32)
    freqs = pos[:, None] * inv_freq_of(cfg, hd)[None, :]
    emb = torch.cat((freqs, freqs), dim=-1)
    cos, sin = emb.cos()[None], emb.sin()[None]  # [1, t, hd]
    mask = torch.full((t, t), float("-inf")).triu(1)
    for layer in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{layer}."

        def lin(name, inp, bias_ok):
            y = inp @ w[p + name + ".weight"].T
            b = w.get(p + name + ".bias")
            if b is not None and bias_ok:
                y = y + b
            return y

        h = rms_norm(x, w[p + "input_layernorm.weight"], eps)
        bias = is_qwen2 or cfg.get("attention_bias", False)
        q = lin("self_attn.q_proj", h, bias).view(t, nh, hd).transpose(0, 1)
        k = lin("self_attn.k_proj", h, bias).view(t, nkv, hd).transpose(0, 1)
        v = lin("self_attn.v_proj", h, bias).view(t, nkv, hd).transpose(0, 1)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k = k.repeat_interleave(nh // nkv, dim=0)
        v = v.repeat_interleave(nh // nkv, dim=0)
        scores = (q @ k.transpose(1, 2)) / math.sqrt(hd) + mask
        a = torch.softmax(scores, dim=-1) @ v  # [nh, t, hd]
        a = a.transpose(0, 1).reshape(t, nh * hd)
        o_bias = cfg.get("attention_bias", False) and not is_qwen2
        x = x + lin("self_attn.o_proj", a, o_bias)
        h = rms_norm(x, w[p + "post_attention_layernorm.weight"], eps)
        mlp_bias = cfg.get("mlp_bias", False)
        g = lin("mlp.gate_proj", h, mlp_bias)
        u = lin("mlp.up_proj", h, mlp_bias)
        x = x + lin("mlp.down_proj", torch.nn.functional.silu(g) * u, mlp_bias)
    x = rms_norm(x, w["model.norm.weight"], eps)
    head = w.get("lm_head.weight")
    if head is None or cfg.get("tie_word_embeddings", False):
        head = w["model.embed_tokens.weight"]
    return x @ head.T


def main():
    args = sys.argv[1:]
    if len(args) < 3 or len(args) % 2 != 1:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    with open(args[0]) as f:
        prompts = json.load(f)["prompts"]
    for model_dir, out_path in zip(args[1::2], args[2::2]):
        with open(os.path.join(model_dir, "config.json")) as f:
            cfg = json.load(f)
        w = load_weights(model_dir)
        with torch.no_grad():
            logits = torch.cat([forward(cfg, w, ids) for ids in prompts], dim=0)
        logits.numpy().astype("<f4").tofile(out_path)


if __name__ == "__main__":
    main()
