"""Item-based k-nearest-neighbours with cosine similarity (Sarwar et al., 2001).

A user's score for item j is the sum of similarities between j and the items in the user's
history, keeping for each item only its ``neighbors`` most similar items.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Self

import numpy as np
import scipy.sparse as sp
from pydantic import Field

from llmrec.data.dataset import Dataset, UserHistory
from llmrec.models.base import ModelConfig, Recommender
from llmrec.models.saved import expect_square_csr, square_csr_from_state, square_csr_state


class ItemKNNConfig(ModelConfig):
    neighbors: int = Field(100, ge=1, description="similar items kept per item")
    shrink: float = Field(0.0, ge=0, description="added to the cosine denominator")


class ItemKNN(Recommender):
    """Cosine item-kNN over the binary user-item matrix."""

    name = "itemknn"
    config_class = ItemKNNConfig
    config: ItemKNNConfig

    def __init__(
        self, config: ItemKNNConfig | Mapping[str, Any] | None = None, **overrides: Any
    ) -> None:
        super().__init__(config, **overrides)
        self._sim: sp.csr_matrix | None = None

    def fit(self, train: Dataset, valid: Dataset | None = None) -> Self:
        self._remember_catalogue(train)
        x = train.history().to_csr().tocsc()
        norms = np.sqrt(np.asarray(x.power(2).sum(axis=0)).ravel())
        co = (x.T @ x).tocsr().astype(np.float32)
        co.setdiag(0)
        co.eliminate_zeros()
        coo = co.tocoo()
        denom = norms[coo.row] * norms[coo.col] + self.config.shrink + 1e-12
        sim = sp.csr_matrix((coo.data / denom, (coo.row, coo.col)), shape=co.shape)
        self._sim = _keep_top_per_row(sim, self.config.neighbors)
        return self

    def score(self, users: np.ndarray, history: UserHistory) -> np.ndarray:
        assert self._sim is not None
        rows = history.to_csr()[users]
        return np.asarray((rows @ self._sim).todense(), dtype=np.float32)

    def _state(self) -> dict[str, np.ndarray]:
        assert self._sim is not None
        return square_csr_state("sim", self._sim)

    def _check_state(self, state: Mapping[str, np.ndarray]) -> None:
        """``sim.*``: an ``(n_items, n_items)`` CSR matrix."""
        expect_square_csr(state, "sim", self.n_items)

    def _load_state(self, state: dict[str, np.ndarray]) -> None:
        self._sim = square_csr_from_state(state, "sim", self.n_items)


def _keep_top_per_row(mat: sp.csr_matrix, k: int) -> sp.csr_matrix:
    """Keep the ``k`` largest entries of each row; the result is (n, n) float32 CSR."""
    mat = mat.tocsr()
    data, indices, indptr = [], [], [0]
    for row in range(mat.shape[0]):
        start, end = mat.indptr[row], mat.indptr[row + 1]
        vals = mat.data[start:end]
        cols = mat.indices[start:end]
        if len(vals) > k:
            keep = np.argpartition(-vals, k - 1)[:k]
            vals, cols = vals[keep], cols[keep]
        data.append(vals)
        indices.append(cols)
        indptr.append(indptr[-1] + len(vals))
    return sp.csr_matrix(
        (
            np.concatenate(data).astype(np.float32) if data else np.zeros(0, np.float32),
            np.concatenate(indices).astype(np.int32) if indices else np.zeros(0, np.int32),
            np.asarray(indptr, dtype=np.int64),
        ),
        shape=mat.shape,
    )
