"""Most-popular baseline: every user gets the items with the most training interactions."""

from __future__ import annotations

from typing import Self

import numpy as np

from llmrec.data.dataset import Dataset, UserHistory
from llmrec.models.base import ModelConfig, Recommender


class PopularityConfig(ModelConfig):
    pass


class Popularity(Recommender):
    """Scores each item by its training interaction count."""

    name = "popularity"
    config_class = PopularityConfig
    config: PopularityConfig

    def fit(self, train: Dataset, valid: Dataset | None = None) -> Self:
        self._remember_catalogue(train)
        return self

    def score(self, users: np.ndarray, history: UserHistory) -> np.ndarray:
        assert self._popularity is not None
        return np.broadcast_to(self._popularity, (len(users), self.n_items)).copy()
