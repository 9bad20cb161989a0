"""Llama-architecture model (GQA, rotate-half RoPE, SwiGLU, RMSNorm) with Hugging Face parameter names,
plus a dependency-free safetensors writer and the HF directory export the kvrag engine loads."""

from __future__ import annotations

import json
import math
import os
import shutil
import struct
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class LlamaConfig:
    vocab_size: int = 272
    hidden_size: int = 256
    intermediate_size: int = 768
    num_hidden_layers: int = 4
    num_attention_heads: int = 8
    num_key_value_heads: int = 2
    head_dim: int = 32
    rms_norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    max_position_embeddings: int = 8192
    tie_word_embeddings: bool = False


class RMSNorm(nn.Module):
    def __init__(self, d: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))
        self.eps = eps

    def forward(self, x):
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return (xf * self.weight).to(x.dtype)


def rope_cos_sin(positions, head_dim: int, theta: float):
    """cos, sin: [B, 1, T, head_dim] for rotate-half RoPE (HF convention: freqs repeated twice)."""
    inv = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
    ang = positions.float()[..., None] * inv  # [B, T, head_dim/2]
    emb = torch.cat([ang, ang], dim=-1)
    return emb.cos()[:, None], emb.sin()[:, None]


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat([-x[..., h:], x[..., :h]], dim=-1)


def attend(q, k, v, mask, g: int):
    """Masked softmax attention with GQA. q: [B, Hq, T, D] (pre-scaled), k, v: [B, Hkv, T, D],
    mask: [B, 1, T, T] bool. The T x T work runs in bf16 when the inputs are bf16-autocast (the
    elementwise passes over T x T dominate at head_dim 32, so halving their bytes matters); the
    softmax itself accumulates in f32 inside the kernel."""
    B, Hq, T, D = q.shape
    Hkv = k.shape[1]
    dt = torch.bfloat16 if torch.is_autocast_cpu_enabled() else torch.float32
    with torch.autocast("cpu", enabled=False):
        # q viewed [B, Hkv, g*T, D] so each kv head serves its query group (HF repeat_kv order)
        qg = q.to(dt).reshape(B, Hkv, g * T, D)
        s = torch.matmul(qg, k.to(dt).transpose(-1, -2)).view(B, Hkv, g, T, T)
        s = s.masked_fill(~mask[:, :, None], float("-inf"))
        p = torch.softmax(s, dim=-1).view(B, Hkv, g * T, T)
        o = torch.matmul(p, v.to(dt)).view(B, Hq, T, D)
    return o


class Attention(nn.Module):
    def __init__(self, c: LlamaConfig):
        super().__init__()
        self.c = c
        self.q_proj = nn.Linear(c.hidden_size, c.num_attention_heads * c.head_dim, bias=False)
        self.k_proj = nn.Linear(c.hidden_size, c.num_key_value_heads * c.head_dim, bias=False)
        self.v_proj = nn.Linear(c.hidden_size, c.num_key_value_heads * c.head_dim, bias=False)
        self.o_proj = nn.Linear(c.num_attention_heads * c.head_dim, c.hidden_size, bias=False)

    def forward(self, x, cos, sin, mask):
        c = self.c
        B, T, _ = x.shape
        # q: [B, Hq, T, D]; k, v: [B, Hkv, T, D]
        q = self.q_proj(x).view(B, T, c.num_attention_heads, c.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(B, T, c.num_key_value_heads, c.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(B, T, c.num_key_value_heads, c.head_dim).transpose(1, 2)
        q = q.float() * cos + rotate_half(q.float()) * sin
        k = k.float() * cos + rotate_half(k.float()) * sin
        o = attend(q * (1.0 / math.sqrt(c.head_dim)), k, v, mask, c.num_attention_heads // c.num_key_value_heads)
        return self.o_proj(o.transpose(1, 2).reshape(B, T, -1))


class MLP(nn.Module):
    def __init__(self, c: LlamaConfig):
        super().__init__()
        self.gate_proj = nn.Linear(c.hidden_size, c.intermediate_size, bias=False)
        self.up_proj = nn.Linear(c.hidden_size, c.intermediate_size, bias=False)
        self.down_proj = nn.Linear(c.intermediate_size, c.hidden_size, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Layer(nn.Module):
    def __init__(self, c: LlamaConfig):
        super().__init__()
        self.self_attn = Attention(c)
        self.mlp = MLP(c)
        self.input_layernorm = RMSNorm(c.hidden_size, c.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(c.hidden_size, c.rms_norm_eps)

    def forward(self, x, cos, sin, mask):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, mask)
        return x + self.mlp(self.post_attention_layernorm(x))


class Backbone(nn.Module):
    def __init__(self, c: LlamaConfig):
        super().__init__()
        self.embed_tokens = nn.Embedding(c.vocab_size, c.hidden_size)
        self.layers = nn.ModuleList([Layer(c) for _ in range(c.num_hidden_layers)])
        self.norm = RMSNorm(c.hidden_size, c.rms_norm_eps)


class LlamaForCausalLM(nn.Module):
    def __init__(self, c: LlamaConfig):
        super().__init__()
        self.config = c
        self.model = Backbone(c)
        self.lm_head = nn.Linear(c.hidden_size, c.vocab_size, bias=False)
        if c.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight
        self._init()

    def _init(self):
        std = 0.02
        out_std = std / math.sqrt(2 * self.config.num_hidden_layers)
        for name, p in self.named_parameters():
            if p.dim() == 2:
                s = out_std if name.endswith(("o_proj.weight", "down_proj.weight")) else std
                nn.init.normal_(p, 0.0, s)

    def forward(self, tokens, positions, mask, hidden_only_at=None):
        """logits [B, T, V] (or only at the flat indices `hidden_only_at` of [B*T], to save the head)."""
        c = self.config
        cos, sin = rope_cos_sin(positions, c.head_dim, c.rope_theta)
        x = self.model.embed_tokens(tokens)
        for layer in self.model.layers:
            x = layer(x, cos, sin, mask)
        x = self.model.norm(x)
        if hidden_only_at is not None:
            x = x.reshape(-1, x.shape[-1])[hidden_only_at]
        return self.lm_head(x)


# ---------------------------------------------------------------- safetensors + HF directory export

def write_safetensors(path: str, tensors: dict[str, torch.Tensor], metadata: dict | None = None):
    """u64 LE header length, JSON header {name: {dtype, shape, data_offsets}}, raw LE data."""
    names = sorted(tensors)
    header: dict = {"__metadata__": metadata or {"format": "pt"}}
    blobs = []
    off = 0
    for n in names:
        t = tensors[n].detach().to(torch.float32).contiguous().cpu()
        b = t.numpy().astype("<f4").tobytes()
        header[n] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)  # keep the data 8-byte aligned
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)


def read_safetensors(path: str) -> dict[str, torch.Tensor]:
    """The F32 tensors of a safetensors file (what write_safetensors writes)."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        assert info["dtype"] == "F32", (name, info["dtype"])
        a, b = info["data_offsets"]
        buf = bytearray(data[8 + n + a:8 + n + b])
        out[name] = torch.frombuffer(buf, dtype=torch.float32).reshape(info["shape"]).clone()
    return out


def load_hf(model_dir: str) -> LlamaForCausalLM:
    """An exported HF directory (config.json + model.safetensors) read back, in eval mode."""
    with open(os.path.join(model_dir, "config.json")) as f:
        raw = json.load(f)
    fields = LlamaConfig.__dataclass_fields__
    cfg = LlamaConfig(**{k: v for k, v in raw.items() if k in fields})
    model = LlamaForCausalLM(cfg)
    sd = read_safetensors(os.path.join(model_dir, "model.safetensors"))
    if cfg.tie_word_embeddings:
        sd["lm_head.weight"] = sd["model.embed_tokens.weight"]
    model.load_state_dict(sd, strict=True)
    return model.eval()


def hf_config(c: LlamaConfig) -> dict:
    d = asdict(c)
    d.update({
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_act": "silu",
        "attention_bias": False,
        "mlp_bias": False,
        "rope_scaling": None,
        "bos_token_id": 256,
        "eos_token_id": [264, 257],
        "pad_token_id": 258,
        "torch_dtype": "float32",
        "initializer_range": 0.02,
    })
    return d


def export_hf(model: LlamaForCausalLM, out_dir: str, tokenizer_dir: str, readme: str):
    """Write config.json, model.safetensors, tokenizer files, generation_config.json, README.md."""
    os.makedirs(out_dir, exist_ok=True)
    sd = {k: v for k, v in model.state_dict().items()}
    if model.config.tie_word_embeddings:
        sd.pop("lm_head.weight", None)
    write_safetensors(os.path.join(out_dir, "model.safetensors"), sd)
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(hf_config(model.config), f, indent=2)
    with open(os.path.join(out_dir, "generation_config.json"), "w") as f:
        json.dump({"bos_token_id": 256, "eos_token_id": [264, 257], "pad_token_id": 258,
                   "do_sample": False, "max_new_tokens": 32}, f, indent=2)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copyfile(os.path.join(tokenizer_dir, name), os.path.join(out_dir, name))
    with open(os.path.join(out_dir, "README.md"), "w") as f:
        f.write(readme)


# ---------------------------------------------------------------- structured initialisation

@torch.no_grad()
def induction_init(model: LlamaForCausalLM, seed: int = 0, n_id: int = 24, prev_pairs: int = 6):
    """Write a working induction circuit into a freshly initialised model, so training starts with the
    copy mechanism that a tiny model on a 2-core CPU budget otherwise finds only after a long loss
    plateau (measured: no progress on plain repetition in 300+ steps). Everything stays trainable;
    only the starting point changes.

    Residual layout: dim 0 a constant (every embedding row has 1 there); dims A = 1..n_id a random
    unit identity vector per token; B = the previous token's identity (written by layer 0, head 0);
    C = the identity of the token that followed the previous occurrence of the current token
    (written by layer 1, head 0); lm_head reads C back as a logit boost for that token.
    - Layer 0 head 0 (a previous-token head): q and k are functions of the constant dim only, in the
      `prev_pairs` highest-frequency RoPE pairs, k rotated by one position, so the score peaks at
      offset -1. v copies A; o writes it to B.
    - Layer 1 head 0 (the induction head): q reads A, k reads B, in the lowest-frequency RoPE pairs
      (rotation-insensitive over the trained lengths when rope_theta is large), so the score peaks
      where the previous token equals the current one; v copies A; o writes it to C.
    Needs head_dim >= 2 * n_id and hidden_size > 3 * n_id.
    """
    c = model.config
    D, h = c.head_dim, c.head_dim // 2
    assert D >= 2 * n_id and c.hidden_size > 3 * n_id + 1
    g = torch.Generator().manual_seed(seed)
    A = slice(1, 1 + n_id)
    B = slice(1 + n_id, 1 + 2 * n_id)
    C = slice(1 + 2 * n_id, 1 + 3 * n_id)
    emb = model.model.embed_tokens.weight
    u = torch.randn(c.vocab_size, n_id, generator=g)
    u = u / u.norm(dim=1, keepdim=True)
    emb[:, 0] = 1.0
    emb[:, A] = u
    emb[:, B] = 0.0
    emb[:, C] = 0.0
    # magnitude of the constant dim after RMSNorm (the rest of the row is ~1 in norm + small noise)
    xn = math.sqrt(c.hidden_size / 2.0)
    inv = 1.0 / (c.rope_theta ** (torch.arange(0, D, 2, dtype=torch.float32) / D))
    low = list(range(h - n_id // 2, h))  # lowest-frequency pairs
    low_dims = low + [d + h for d in low]

    # layer 0, q head 0 / kv head 0: previous-token head
    a0 = model.model.layers[0].self_attn
    a0.q_proj.weight[:D].zero_()
    a0.k_proj.weight[:D].zero_()
    amp = 9.0
    for d in range(prev_pairs):
        th = float(inv[d])
        a0.q_proj.weight[d, 0] = amp / xn
        a0.k_proj.weight[d, 0] = amp * math.cos(th) / xn
        a0.k_proj.weight[d + h, 0] = amp * math.sin(th) / xn
    a0.v_proj.weight[:D].zero_()
    a0.v_proj.weight[:n_id, A] = torch.eye(n_id) / xn
    a0.o_proj.weight[:, :D].zero_()
    a0.o_proj.weight[B, :n_id] = torch.eye(n_id)
    # layer 1, q head 0 / kv head 0: induction head (query: my identity; key: previous identity)
    a1 = model.model.layers[1].self_attn
    a1.q_proj.weight[:D].zero_()
    a1.k_proj.weight[:D].zero_()
    beta = 6.0
    for i, d in enumerate(low_dims):
        a1.q_proj.weight[d, A.start + i] = beta
        a1.k_proj.weight[d, B.start + i] = beta
    a1.v_proj.weight[:D].zero_()
    a1.v_proj.weight[:n_id, A] = torch.eye(n_id) / xn
    a1.o_proj.weight[:, :D].zero_()
    a1.o_proj.weight[C, :n_id] = torch.eye(n_id)
    # the MLPs must not overwrite the layout at the start
    for layer in model.model.layers:
        layer.mlp.down_proj.weight.mul_(0.1)
    # lm_head: logit of token t += gamma * <u_t, C>
    model.lm_head.weight[:, C] = 8.0 * u
