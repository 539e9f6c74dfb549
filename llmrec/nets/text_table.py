"""LM-SASRec's network: SASRec whose item table is a learned adaptor over frozen, whitened LM
vectors of item text (plus an ID embedding for items seen in training)."""

from __future__ import annotations

from typing import Literal, Protocol

import numpy as np
import torch
from torch import nn

from llmrec.nets.sasrec import SASRecNet, SASRecSettings
from llmrec.nets.table import ComputedTable


class TextTableSettings(Protocol):
    """What :class:`TextItemTable` reads (:class:`~llmrec.paradigms.embeddings.lm_sasrec.
    LMSASRecConfig`)."""

    dim: int
    item_repr: Literal["text", "text+id"]
    adaptor_hidden: int
    adaptor_dropout: float


class LMSASRecSettings(SASRecSettings, TextTableSettings, Protocol):
    """SASRec's hyper-parameters and the text table's."""


class TextItemTable(ComputedTable):
    """Item table ``(n_items + 1, dim)``: adaptor(whitened text) [+ ID embedding]; row 0
    (padding) is zero. ``weight`` is computed on access (kept while scoring), so SASRec's
    loss and scoring, which read ``item_emb.weight``, use it unchanged.

    Args:
        text: ``(n_items, d)`` float32 whitened text vectors (a buffer, saved as ``text``).
        has_id: ``(n_items,)`` bool, items that get an ID embedding (buffer ``id_mask``).
    """

    text: torch.Tensor
    id_mask: torch.Tensor
    real: torch.Tensor

    def __init__(
        self, n_items: int, cfg: TextTableSettings, text: np.ndarray, has_id: np.ndarray
    ) -> None:
        super().__init__()
        padded = np.zeros((n_items + 1, text.shape[1]), dtype=np.float32)
        padded[1:] = text
        mask = np.zeros((n_items + 1, 1), dtype=np.float32)
        mask[1:, 0] = has_id
        self.register_buffer("text", torch.from_numpy(padded))
        self.register_buffer("id_mask", torch.from_numpy(mask))
        real = torch.ones(n_items + 1, 1)
        real[0] = 0.0
        self.register_buffer("real", real)
        self.adaptor = nn.Sequential(
            nn.Dropout(cfg.adaptor_dropout),
            nn.Linear(text.shape[1], cfg.adaptor_hidden),
            nn.GELU(),
            nn.Linear(cfg.adaptor_hidden, cfg.dim),
        )
        self.ids: nn.Embedding | None = None
        if cfg.item_repr == "text+id":
            self.ids = nn.Embedding(n_items + 1, cfg.dim, padding_idx=0)
            self.ids.weight.data.normal_(0.0, 0.02)
            self.ids.weight.data[0] = 0.0

    def compute_weight(self) -> torch.Tensor:
        table: torch.Tensor = self.adaptor(self.text) * self.real
        if self.ids is not None:
            table = table + self.ids.weight * self.id_mask
        return table


class LMSASRecNet(SASRecNet):
    """SASRec's network whose ``item_emb`` is a :class:`TextItemTable`."""

    def __init__(
        self, n_items: int, cfg: LMSASRecSettings, text: np.ndarray, has_id: np.ndarray
    ) -> None:
        super().__init__(n_items, cfg)
        self.item_emb = TextItemTable(n_items, cfg, text, has_id)
