"""A small decoder-only transformer (GPT), written to be read, in the style of nanoGPT's model file.

Shapes: ``B`` batch, ``T`` sequence length, ``C`` = ``n_embd``, ``h`` = ``n_head``, ``hd = C / h``,
``V`` vocabulary size. One block, pre-norm (the LayerNorm comes *before* each sub-layer, as in GPT-2):

    x = x + attn(ln_1(x))        # causal multi-head self-attention
    x = x + mlp(ln_2(x))         # Linear(C, 4C) → GELU → Linear(4C, C)

Every projection is an ``nn.Linear`` (``attn.c_attn`` [3C, C], ``attn.c_proj`` [C, C], ``mlp.c_fc`` [4C, C],
``mlp.c_proj`` [C, 4C]), so quantization, pruning and calibration hooks apply to them unchanged; their
names are listed by :func:`block_linear_names`.

Two optional mechanisms for the compression notebooks, both off by default:

* ``head_mask`` ``[n_layer, n_head]`` (or ``[n_head]`` per attention call): multiplies each head's output
  before the heads are merged; 0 removes a head, and a mask with ``requires_grad`` gives each head's
  importance as a gradient (Michel et al. 2019).
* a KV cache (:class:`KVCache`): keys and values of earlier positions are stored, so generating one token
  costs one position's work. A subclass may transform what it stores (``kdcore.llm.quantize`` quantizes
  it, as KIVI does).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from kdcore import _validate as v

__all__ = ["GPTConfig", "GPT", "Block", "CausalSelfAttention", "MLP", "KVCache", "block_linear_names",
           "TEACHER_CONFIG", "STUDENT_CONFIGS"]


@dataclass(frozen=True)
class GPTConfig:
    vocab_size: int = 96
    block_size: int = 128     # longest context (learned position embeddings)
    n_layer: int = 6
    n_head: int = 4
    n_embd: int = 128
    dropout: float = 0.0
    bias: bool = True         # biases in the Linears and LayerNorms
    tie_weights: bool = True  # the output head shares the token embedding matrix

    def __post_init__(self) -> None:
        v.integer("vocab_size", self.vocab_size, minimum=2)
        v.integer("block_size", self.block_size, minimum=1)
        v.integer("n_layer", self.n_layer, minimum=1)
        v.integer("n_head", self.n_head, minimum=1)
        v.integer("n_embd", self.n_embd, minimum=1)
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd must be a multiple of n_head, got n_embd={self.n_embd}, "
                             f"n_head={self.n_head}")
        v.in_unit_interval("dropout", self.dropout)

    def to_dict(self) -> dict:
        return asdict(self)


# The course's teacher (about 1.21 M parameters) and students 4–8× smaller (same vocabulary and context).
# Width 128 so that the quantization group sizes 32, 64 and 128 divide every Linear's input dimension
# (128 and 512).
TEACHER_CONFIG = GPTConfig(n_layer=6, n_head=4, n_embd=128)
STUDENT_CONFIGS: dict[str, GPTConfig] = {
    "small": GPTConfig(n_layer=4, n_head=4, n_embd=64),    # ~0.21 M parameters, ~6× smaller
    "shallow": GPTConfig(n_layer=2, n_head=4, n_embd=96),  # ~0.24 M, ~5× smaller (fewer, wider blocks)
    "tiny": GPTConfig(n_layer=3, n_head=4, n_embd=64),     # ~0.16 M, ~8× smaller
}


class KVCache:
    """Keys and values of the positions seen so far, one entry per layer.

    ``update(layer, k, v)`` appends the new positions' ``k, v`` ``[B, h, T_new, hd]`` and returns the
    tensors attention should use, ``[B, h, T_past + T_new, hd]``. ``length`` is the number of positions
    stored (it sets the position of the next token); ``crop(n)`` forgets every position from ``n`` on
    (speculative decoding rolls back rejected draft tokens this way).
    """

    def __init__(self, n_layer: int) -> None:
        self.keys: list[torch.Tensor | None] = [None] * n_layer
        self.values: list[torch.Tensor | None] = [None] * n_layer

    def layer_length(self, layer: int) -> int:
        return 0 if self.keys[layer] is None else self.keys[layer].shape[2]

    @property
    def length(self) -> int:
        return self.layer_length(0)

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.keys[layer] is not None:
            k = torch.cat([self.keys[layer], k], dim=2)
            v = torch.cat([self.values[layer], v], dim=2)
        self.keys[layer], self.values[layer] = k, v
        return k, v

    def crop(self, length: int) -> None:
        v.integer("length", length, minimum=0, maximum=self.length)
        for i in range(len(self.keys)):
            if self.keys[i] is not None:
                self.keys[i] = self.keys[i][:, :, :length]
                self.values[i] = self.values[i][:, :, :length]


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.n_head = config.n_head
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)  # q, k, v in one matmul
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)      # merge the heads
        self.dropout = config.dropout

    def forward(self, x: torch.Tensor, head_mask: torch.Tensor | None = None,
                cache: KVCache | None = None, layer: int = 0) -> torch.Tensor:
        B, T, C = x.shape
        h = self.n_head
        q, k, v = self.c_attn(x).split(C, dim=2)                 # each [B, T, C]
        q = q.view(B, T, h, C // h).transpose(1, 2)              # [B, h, T, hd]
        k = k.view(B, T, h, C // h).transpose(1, 2)
        v = v.view(B, T, h, C // h).transpose(1, 2)
        past = 0
        if cache is not None:
            past = cache.layer_length(layer)
            k, v = cache.update(layer, k, v)                     # [B, h, past + T, hd]
        drop = self.dropout if self.training else 0.0
        if past == 0:
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=drop, is_causal=True)  # [B, h, T, hd]
        else:
            # the T new queries sit at positions past .. past+T-1: query i sees keys 0 .. past+i
            allowed = torch.ones(T, past + T, dtype=torch.bool, device=x.device).tril(diagonal=past)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, dropout_p=drop)
        if head_mask is not None:
            y = y * head_mask.view(1, h, 1, 1).to(y.dtype)      # gate each head's output
        y = y.transpose(1, 2).contiguous().view(B, T, C)         # [B, T, C]: heads side by side
        return F.dropout(self.c_proj(y), drop, self.training)


class MLP(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = config.dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.gelu(self.c_fc(x))                                 # [B, T, 4C]
        return F.dropout(self.c_proj(x), self.dropout, self.training)  # [B, T, C]


class Block(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor, head_mask: torch.Tensor | None = None,
                cache: KVCache | None = None, layer: int = 0) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), head_mask, cache, layer)
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    """``idx [B, T]`` (int64 token ids, ``T <= block_size``) → ``logits [B, T, V]``; position t sees 0..t."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        if not isinstance(config, GPTConfig):
            raise TypeError(f"config must be a GPTConfig, got {type(config).__name__}")
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)   # token embeddings [V, C]
        self.wpe = nn.Embedding(config.block_size, config.n_embd)   # position embeddings [block_size, C]
        self.drop = nn.Dropout(config.dropout)
        self.h = nn.ModuleList([Block(config) for _ in range(config.n_layer)])
        self.ln_f = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        if config.tie_weights:
            self.lm_head.weight = self.wte.weight
        self.apply(self._init_weights)
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):  # GPT-2: residual projections scaled by 1/sqrt(2·n_layer)
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def num_parameters(self) -> int:
        """Parameters counted once (a tied head is not counted twice)."""
        return sum(p.numel() for p in self.parameters())

    def forward(self, idx: torch.Tensor, head_mask: torch.Tensor | None = None,
                cache: KVCache | None = None) -> torch.Tensor:
        """Logits ``[B, T, V]``. ``head_mask``: ``[n_layer, n_head]`` gates, 1 = keep. ``cache``: see
        :class:`KVCache`; the new tokens are placed after the ``cache.length`` stored positions."""
        v.tensor("idx", idx, ndim=2)
        B, T = idx.shape
        past = cache.length if cache is not None else 0
        if past + T > self.config.block_size:
            raise ValueError(f"sequence length {past + T} (cached {past} + new {T}) exceeds block_size "
                             f"{self.config.block_size}")
        if head_mask is not None and tuple(head_mask.shape) != (self.config.n_layer, self.config.n_head):
            raise ValueError(f"head_mask must have shape [n_layer, n_head] = "
                             f"{[self.config.n_layer, self.config.n_head]}, got {list(head_mask.shape)}")
        pos = torch.arange(past, past + T, device=idx.device)  # [T]
        x = self.drop(self.wte(idx) + self.wpe(pos))          # [B, T, C]
        for i, block in enumerate(self.h):
            x = block(x, None if head_mask is None else head_mask[i], cache, i)
        return self.lm_head(self.ln_f(x))                       # [B, T, V]

    @torch.no_grad()
    def generate(self, idx: torch.Tensor, max_new_tokens: int, temperature: float = 1.0,
                 top_k: int | None = None, use_cache: bool = True,
                 generator: torch.Generator | None = None, cache: KVCache | None = None) -> torch.Tensor:
        """Append ``max_new_tokens`` tokens to ``idx [B, T0]``; returns ``[B, T0 + max_new_tokens]``.

        ``temperature == 0`` is greedy (argmax); otherwise sampling from ``softmax(logits / temperature)``,
        restricted to the ``top_k`` most likely tokens if given, drawn with ``generator`` (seeded runs repeat).
        With ``use_cache`` the keys and values of the context are kept (``cache``, an empty
        :class:`KVCache` or subclass, or a fresh one), so each step runs one position; the result equals ``use_cache=False`` (which
        re-runs the whole context each step). Past ``block_size`` both keep only the last ``block_size``
        tokens as context (the cache is then rebuilt from them each step).
        """
        v.tensor("idx", idx, ndim=2)
        v.integer("max_new_tokens", max_new_tokens, minimum=0)
        temperature = v.real("temperature", temperature)
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0 (0 = greedy), got {temperature}")
        if top_k is not None:
            v.integer("top_k", top_k, minimum=1, maximum=self.config.vocab_size)
        if idx.shape[1] == 0:
            raise ValueError("idx must hold at least one token per row, got shape "
                             f"{tuple(idx.shape)}")
        if cache is not None and not use_cache:
            raise ValueError("cache was given but use_cache=False")
        if cache is not None and cache.length != 0:
            raise ValueError(f"cache must be empty (length 0), got length {cache.length}")
        was_training = self.training
        self.eval()
        try:
            block = self.config.block_size
            if use_cache and cache is None:
                cache = KVCache(self.config.n_layer)
            for _ in range(max_new_tokens):
                if cache is None:
                    logits = self(idx[:, -block:])               # the whole (cropped) context every step
                elif idx.shape[1] > block:                       # the window slid: rebuild the cache
                    cache.crop(0)
                    logits = self(idx[:, -block:], cache=cache)
                else:
                    logits = self(idx[:, cache.length:], cache=cache)  # only the tokens not yet cached
                logits = logits[:, -1, :]                        # [B, V]
                if temperature == 0:
                    nxt = logits.argmax(dim=-1, keepdim=True)    # [B, 1]
                else:
                    logits = logits / temperature
                    if top_k is not None:
                        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]
                        logits = logits.masked_fill(logits < kth, float("-inf"))
                    nxt = torch.multinomial(F.softmax(logits, dim=-1), 1, generator=generator)  # [B, 1]
                idx = torch.cat([idx, nxt], dim=1)
            return idx
        finally:
            self.train(was_training)


def block_linear_names(model: GPT) -> list[str]:
    """Qualified names of the blocks' Linears, in forward order (``h.0.attn.c_attn`` … ``h.3.mlp.c_proj``):
    the layers the compression methods act on (embeddings and the head are usually kept in float)."""
    return [name for name, m in model.named_modules() if isinstance(m, nn.Linear) and name.startswith("h.")]
