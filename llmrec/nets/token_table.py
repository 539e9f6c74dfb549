"""Token-SASRec's item table: each item's embedding is summed from its semantic-ID codes."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from llmrec.nets.table import ComputedTable


class TokenEmbedding(ComputedTable):
    """Stands in for SASRec's ``nn.Embedding(n_items + 1, dim, padding_idx=0)``.

    ``weight`` is ``(n_items + 1, dim)``: row 0 zeros (padding), row ``i + 1`` the sum of
    item ``i``'s code embeddings (+ mean tag embedding, + ID embedding).

    Args:
        codes: ``(n_items, T)`` int64 codes, column ``t`` in ``[0, sizes[t])``.
        sizes: codes per tuple position; each position gets its own rows of ``code_emb``.
        dim: embedding width.
        id_embedding: add a learned per-item embedding.
        tag_index: ``(n_items, max_tags)`` int64 tag indices, -1 = none (``None``: no tags).
    """

    codes: torch.Tensor
    tags: torch.Tensor

    def __init__(
        self,
        codes: np.ndarray,
        sizes: Sequence[int],
        dim: int,
        id_embedding: bool,
        tag_index: np.ndarray | None,
    ) -> None:
        super().__init__()
        self.embedding_dim = dim
        offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        self.register_buffer("codes", torch.as_tensor(codes + offsets[None, :]), False)
        self.code_emb = nn.Embedding(int(sum(sizes)), dim)
        nn.init.normal_(self.code_emb.weight, 0.0, 0.02)
        self.id_emb: nn.Embedding | None = None
        if id_embedding:
            self.id_emb = nn.Embedding(len(codes), dim)
            nn.init.normal_(self.id_emb.weight, 0.0, 0.02)
        self.tag_emb: nn.Embedding | None = None
        if tag_index is not None:
            self.register_buffer("tags", torch.as_tensor(tag_index), False)
            self.tag_emb = nn.Embedding(int(tag_index.max()) + 2, dim, padding_idx=0)
            nn.init.normal_(self.tag_emb.weight, 0.0, 0.02)

    def compute_weight(self) -> torch.Tensor:
        items = self.code_emb(self.codes).sum(dim=1)  # (n_items, dim)
        if self.id_emb is not None:
            items = items + self.id_emb.weight
        if self.tag_emb is not None:
            present = (self.tags >= 0).float()
            summed = (self.tag_emb(self.tags + 1) * present[..., None]).sum(dim=1)
            items = items + summed / present.sum(dim=1, keepdim=True).clamp(min=1.0)
        return torch.cat([items.new_zeros(1, items.shape[1]), items], dim=0)
