"""Shortcut floor: recommend what most often followed the user's last item. Nothing is trained.

Fitting counts, over every user's training sequence in time order, how often item j came
right after item i: an ``(n_items, n_items)`` sparse count matrix. A user's score for j is the
count of (last item -> j). With ``window`` > 1 it is a first-order Markov chain smoothed over
the last few items: ``sum_w decay**w * P(j | item_{-1-w})`` with ``P`` the row-normalised
counts. Items the chain cannot tell apart (ties, including every item after a last item never
followed by anything) are ordered by training popularity, then by item index; the user's seen
items are masked by the base class as for every model.

A sequential or LM model that does not beat this floor has learnt nothing a lookup table could
not (Rendle et al. 2010 for Markov chains in recommendation; the issue-19 motivation).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Self

import numpy as np
import scipy.sparse as sp
from pydantic import Field

from llmrec.data.dataset import Dataset, UserHistory
from llmrec.errors import ConfigError
from llmrec.models.base import ModelConfig, Recommender
from llmrec.models.saved import expect_square_csr, square_csr_from_state, square_csr_state


class TransitionConfig(ModelConfig):
    window: int = Field(1, ge=1, le=50, description="last items whose transitions are summed")
    decay: float = Field(
        0.5, gt=0, le=1, description="weight of each step further back in the window"
    )


class Transition(Recommender):
    """Last-item transition counts (first-order Markov chain), ties broken by popularity."""

    name = "transition"
    config_class = TransitionConfig
    config: TransitionConfig

    def __init__(
        self, config: TransitionConfig | Mapping[str, Any] | None = None, **overrides: Any
    ) -> None:
        super().__init__(config, **overrides)
        self._counts: sp.csr_matrix | None = None

    def fit(self, train: Dataset, valid: Dataset | None = None) -> Self:
        self._remember_catalogue(train)
        hist = train.history()
        items = hist.items.astype(np.int64)
        # a pair (items[p], items[p + 1]) is a transition unless p is a user's last position
        follows = np.ones(max(len(items) - 1, 0), dtype=bool)
        ends = hist.indptr[1:-1] - 1
        follows[ends[(ends >= 0) & (ends < len(follows))]] = False
        src, dst = items[:-1][follows], items[1:][follows]
        counts = sp.csr_matrix(
            (np.ones(len(src), dtype=np.float32), (src, dst)),
            shape=(self.n_items, self.n_items),
        )
        counts.sum_duplicates()
        self._counts = counts
        return self

    def score(self, users: np.ndarray, history: UserHistory) -> np.ndarray:
        """``(len(users), n_items)`` float32 ranks: higher is better, all distinct per row."""
        assert self._counts is not None and self._popularity is not None
        chain = self._chain_scores(users, history)
        # rank by (chain score, popularity, lower index first): exact, whatever the magnitudes
        index = np.broadcast_to(-np.arange(self.n_items), chain.shape)
        pop = np.broadcast_to(self._popularity, chain.shape)
        order = np.lexsort((index, pop, chain), axis=-1)
        ranks = np.empty(chain.shape, dtype=np.float32)
        np.put_along_axis(ranks, order, np.arange(self.n_items, dtype=np.float32), axis=-1)
        return ranks

    def _chain_scores(self, users: np.ndarray, history: UserHistory) -> np.ndarray:
        """``(len(users), n_items)`` float64: transition counts from the last item, or the
        decayed sum of transition probabilities from the last ``window`` items."""
        assert self._counts is not None
        window = self.config.window
        last = history.last(users, window)  # (n, window), newest in the last column
        rows, cols = np.nonzero(last >= 0)
        weights = self.config.decay ** (window - 1 - cols).astype(np.float64)
        pick = sp.csr_matrix((weights, (rows, last[rows, cols])), shape=(len(users), self.n_items))
        table = self._counts.astype(np.float64)
        if window > 1:
            out_degree = np.asarray(table.sum(axis=1)).ravel()
            inv = np.divide(1.0, out_degree, out=np.zeros_like(out_degree), where=out_degree > 0)
            table = sp.diags(inv) @ table
        return np.asarray((pick @ table).todense())

    def _state(self) -> dict[str, np.ndarray]:
        assert self._counts is not None
        return square_csr_state("counts", self._counts)

    def _check_state(self, state: Mapping[str, np.ndarray]) -> None:
        """``counts.*``: an ``(n_items, n_items)`` CSR matrix of non-negative counts."""
        data = expect_square_csr(state, "counts", self.n_items)
        if len(data) and not (np.isfinite(data).all() and (data >= 0).all()):
            raise ConfigError("array 'counts.data' holds negative or non-finite counts")

    def _load_state(self, state: dict[str, np.ndarray]) -> None:
        self._counts = square_csr_from_state(state, "counts", self.n_items)
