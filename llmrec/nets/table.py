"""Item tables computed from other parameters (text adaptors, summed code embeddings)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class ComputedTable(nn.Module):
    """Base of item tables computed from other parameters.

    Subclasses implement :meth:`compute_weight` → ``(n_items + 1, dim)``. ``weight`` recomputes
    it while training; in eval mode without gradients (scoring) it is computed once and kept,
    since a served model would otherwise rebuild the whole table for every request. The kept
    table is dropped when the mode changes or weights are loaded.
    """

    _kept: torch.Tensor | None = None

    def compute_weight(self) -> torch.Tensor:
        raise NotImplementedError

    @property
    def weight(self) -> torch.Tensor:
        """``(n_items + 1, dim)`` float32 table, row 0 the padding token."""
        if self._kept is not None and not self.training:
            return self._kept
        table = self.compute_weight()
        if not self.training and not torch.is_grad_enabled():
            self._kept = table
        return table

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Rows of ``weight`` for ``tokens`` of any shape: ``(*tokens.shape, dim)``."""
        return self.weight[tokens]

    def train(self, mode: bool = True) -> ComputedTable:
        if mode != self.training:
            self._kept = None
        return super().train(mode)

    def _load_from_state_dict(self, *args: Any, **kwargs: Any) -> None:
        self._kept = None
        super()._load_from_state_dict(*args, **kwargs)
