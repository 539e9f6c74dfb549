"""TIGER's network: a pre-norm decoder-only transformer over semantic-ID tokens, with a
key/value cache so beam search reads each user's history once.

Token 0 pads (sequences are left-padded); positions count valid tokens only.
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import nn
from torch.nn import functional

#: the padding token
PAD = 0

KeyValue = tuple[torch.Tensor, torch.Tensor]


class TigerSettings(Protocol):
    """What the network reads (:class:`~llmrec.paradigms.tokens.generative.GenerativeConfig`)."""

    dim: int
    layers: int
    heads: int
    dropout: float


class KVCache:
    """Per-layer keys and values ``(rows, heads, seq, head_dim)`` and the key validity mask
    ``(rows, seq)``; :meth:`select` reorders rows as beams are chosen."""

    def __init__(self, valid: torch.Tensor) -> None:
        self.valid = valid
        self.layers: list[KeyValue] = []
        self.width = 1

    def select(self, rows: torch.Tensor, width: int) -> None:
        """Keep rows ``rows`` (indices into the current rows) as the new ``width`` beams."""
        self.valid = self.valid[rows]
        self.layers = [(k[rows], v[rows]) for k, v in self.layers]
        self.width = width


class TigerBlock(nn.Module):
    """Pre-norm block: causal self-attention (reading cached keys/values if given), then a
    GELU MLP four times as wide."""

    def __init__(self, cfg: TigerSettings) -> None:
        super().__init__()
        self.heads, self.head_dim, self.dropout = cfg.heads, cfg.dim // cfg.heads, cfg.dropout
        self.ln1, self.ln2 = nn.LayerNorm(cfg.dim), nn.LayerNorm(cfg.dim)
        self.qkv = nn.Linear(cfg.dim, 3 * cfg.heads * self.head_dim)
        self.proj = nn.Linear(cfg.heads * self.head_dim, cfg.dim)
        self.mlp = nn.Sequential(
            nn.Linear(cfg.dim, 4 * cfg.dim), nn.GELU(), nn.Linear(4 * cfg.dim, cfg.dim)
        )
        self.drop = nn.Dropout(cfg.dropout)

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor, past: KeyValue | None
    ) -> tuple[torch.Tensor, KeyValue]:
        """``x (b, s, dim)``, boolean ``mask`` broadcastable to ``(b, heads, s, keys)`` →
        ``(b, s, dim)`` and this layer's keys and values (``past`` ones first)."""
        b, s, _ = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(b, s, 3, self.heads, self.head_dim).unbind(2)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
        if past is not None:
            k, v = torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2)
        att = functional.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0
        )
        x = x + self.drop(self.proj(att.transpose(1, 2).reshape(b, s, -1)))
        x = x + self.drop(self.mlp(self.ln2(x)))
        return x, (k, v)


class TigerNet(nn.Module):
    """Tokens ``(b, s)`` int64 → hidden ``(b, s, dim)``; :meth:`head` maps hidden states to
    ``(…, vocab)`` logits. Example::

        net = TigerNet(vocab=20, max_len=16, cfg=GenerativeConfig(dim=32, heads=2))
        hidden, cache = net(tokens, tokens != PAD, use_cache=True)
        hidden = net.step(next_tokens, positions, cache)  # one more token per row
    """

    def __init__(self, vocab: int, max_len: int, cfg: TigerSettings) -> None:
        super().__init__()
        self.tok = nn.Embedding(vocab, cfg.dim, padding_idx=PAD)
        self.pos = nn.Embedding(max_len + 1, cfg.dim)
        self.blocks = nn.ModuleList([TigerBlock(cfg) for _ in range(cfg.layers)])
        self.ln = nn.LayerNorm(cfg.dim)
        self.out = nn.Linear(cfg.dim, vocab)
        self.drop = nn.Dropout(cfg.dropout)

    def head(self, hidden: torch.Tensor) -> torch.Tensor:
        """``(…, dim)`` → ``(…, vocab)`` logits."""
        out: torch.Tensor = self.out(hidden)
        return out

    def forward(
        self, tokens: torch.Tensor, valid: torch.Tensor, use_cache: bool = False
    ) -> tuple[torch.Tensor, KVCache | None]:
        """``tokens (b, s)`` left-padded, ``valid (b, s)`` bool -> hidden ``(b, s, dim)``, and
        the filled cache with ``use_cache``."""
        s = tokens.shape[1]
        pos = (valid.long().cumsum(dim=1) - 1).clamp(min=0)
        causal = torch.ones(s, s, dtype=torch.bool, device=tokens.device).tril()
        # pad queries may see themselves, so no softmax row is empty (NaN)
        mask = (causal & valid[:, None, :]) | torch.eye(s, dtype=torch.bool, device=tokens.device)
        x = self.drop(self.tok(tokens) + self.pos(pos))
        cache = KVCache(valid) if use_cache else None
        for block in self.blocks:
            x, kv = block(x, mask[:, None], None)
            if cache is not None:
                cache.layers.append(kv)
        return self.ln(x), cache

    def step(self, token: torch.Tensor, pos: torch.Tensor, cache: KVCache) -> torch.Tensor:
        """One new token per row ``(b, 1)`` at positions ``pos (b,)``, reading and extending
        ``cache``; returns hidden ``(b, 1, dim)``."""
        x = self.tok(token) + self.pos(pos)[:, None, :]
        cache.valid = torch.cat([cache.valid, torch.ones_like(token, dtype=torch.bool)], 1)
        mask = cache.valid[:, None, None, :]
        for i, block in enumerate(self.blocks):
            x, cache.layers[i] = block(x, mask, cache.layers[i])
        out: torch.Tensor = self.ln(x)
        return out
