"""SASRec's network: learned positions, post-norm transformer blocks with a GELU feed-forward
layer, causal attention over non-padding keys (RecBole's SASRec, so figures compare directly).

Tokens are items + 1; token 0 pads, sequences are right-aligned (the newest item is last).
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import nn
from torch.nn import functional


class SASRecSettings(Protocol):
    """The hyper-parameters the network reads (:class:`~llmrec.models.sasrec.SASRecConfig`)."""

    max_len: int
    dim: int
    n_layers: int
    n_heads: int
    inner_dim: int
    dropout: float
    attn_dropout: float


class SASRecBlock(nn.Module):
    """Post-norm transformer block: self-attention, then a GELU feed-forward layer."""

    def __init__(self, cfg: SASRecSettings) -> None:
        super().__init__()
        self.n_heads = cfg.n_heads
        self.attn_dropout = cfg.attn_dropout
        self.qkv = nn.Linear(cfg.dim, 3 * cfg.dim)
        self.proj = nn.Linear(cfg.dim, cfg.dim)
        self.norm1 = nn.LayerNorm(cfg.dim, eps=1e-12)
        self.ff = nn.Sequential(
            nn.Linear(cfg.dim, cfg.inner_dim), nn.GELU(), nn.Linear(cfg.inner_dim, cfg.dim)
        )
        self.norm2 = nn.LayerNorm(cfg.dim, eps=1e-12)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, last_only: bool = False) -> torch.Tensor:
        """``(b, L, dim)`` → ``(b, L, dim)``, or ``(b, 1, dim)`` for the last position only
        (scoring needs no other query; keys and values still span the sequence).

        ``mask`` is ``(b, 1, L, L)`` additive (0 where a query may read a key)."""
        b, length, dim = x.shape
        q, k, v = self.qkv(x).view(b, length, 3, self.n_heads, -1).permute(2, 0, 3, 1, 4)
        if last_only:
            q, mask, x = q[:, :, -1:], mask[:, :, -1:], x[:, -1:]
        attn = functional.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=self.attn_dropout if self.training else 0.0
        )
        attn = attn.transpose(1, 2).reshape(b, x.shape[1], dim)
        x = self.norm1(x + self.drop(self.proj(attn)))
        return self.norm2(x + self.drop(self.ff(x)))


class SASRecNet(nn.Module):
    """Tokens ``(b, L)`` int64 (0 = padding) → hidden states ``(b, L, dim)`` float32.

    ``item_emb`` is the ``(n_items + 1, dim)`` item table (an ``nn.Embedding`` here; subclasses
    and models put a :class:`~llmrec.nets.table.ComputedTable` in its place): the model's loss
    and scores read ``item_emb.weight``. Example::

        net = SASRecNet(n_items=100, cfg=SASRecConfig(max_len=8, dim=16))
        net(torch.tensor([[0, 0, 3, 7]]))  # (1, 4, 16)
    """

    item_emb: nn.Module

    def __init__(self, n_items: int, cfg: SASRecSettings) -> None:
        super().__init__()
        self.item_emb = nn.Embedding(n_items + 1, cfg.dim, padding_idx=0)
        self.pos_emb = nn.Embedding(cfg.max_len, cfg.dim)
        self.norm = nn.LayerNorm(cfg.dim, eps=1e-12)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(SASRecBlock(cfg) for _ in range(cfg.n_layers))
        self.apply(init_weights)

    def forward(self, tokens: torch.Tensor, last_only: bool = False) -> torch.Tensor:
        """Hidden states of every position, or ``(b, 1, dim)`` of the last with
        ``last_only``.

        ``tokens`` may be narrower than ``max_len`` (a batch with its unneeded left padding cut
        off): positions count back from the newest item, which always sits at ``max_len - 1``,
        so a right-aligned sequence gets the same hidden states at any width."""
        length = tokens.shape[1]
        end = self.pos_emb.num_embeddings
        pos = torch.arange(end - length, end, device=tokens.device)
        x = self.drop(self.norm(self.item_emb(tokens) + self.pos_emb(pos)))
        causal = torch.ones(length, length, dtype=torch.bool, device=tokens.device).tril()
        allowed = causal[None] & (tokens > 0)[:, None, :]  # (b, L, L): key is real and past
        # additive mask, finite so fully padded rows stay NaN-free (they are never read)
        mask = torch.where(allowed, 0.0, -1e9).to(x.dtype)[:, None]  # one pass, not three
        for i, block in enumerate(self.blocks):
            x = block(x, mask, last_only and i == len(self.blocks) - 1)
        return x


def init_weights(module: nn.Module) -> None:
    """RecBole's initialisation: N(0, 0.02) weights, zero biases, unit layer norms."""
    if isinstance(module, nn.Linear | nn.Embedding):
        module.weight.data.normal_(0.0, 0.02)
    if isinstance(module, nn.Linear) and module.bias is not None:
        module.bias.data.zero_()
    if isinstance(module, nn.LayerNorm):
        module.weight.data.fill_(1.0)
        module.bias.data.zero_()
