"""What every stage of a comparison shares: the split, query-time history, seeded user samples
and candidates, training popularity."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from llmrec.compare.config import CompareConfig
from llmrec.data.dataset import Dataset, UserHistory
from llmrec.data.splits import Split
from llmrec.eval.metrics import Truth

__all__ = ["StageContext", "load_data", "popularity_deciles"]


def load_data(name: str, data_dir: Path | None = None, *, seed: int = 0) -> Dataset:
    """Load a dataset by name or path through :func:`llmrec.data.load_dataset`."""
    from llmrec.data import load_dataset

    return load_dataset(name, data_dir=data_dir, seed=seed)


def popularity_deciles(popularity: np.ndarray) -> np.ndarray:
    """``(n_items,)`` int decile of each item by training popularity: 0 = the least popular
    tenth of the catalogue, 9 = the most popular (ties broken by item index)."""
    order = np.lexsort((np.arange(len(popularity)), popularity))
    deciles = np.empty(len(popularity), dtype=np.int64)
    deciles[order] = (np.arange(len(popularity)) * 10) // max(1, len(popularity))
    return deciles


class StageContext:
    """What every stage shares: the split, query-time history, user samples, candidates."""

    def __init__(self, config: CompareConfig, data: Dataset, split: Split) -> None:
        self.config = config
        self.data = data
        self.split = split
        self.known = split.known_at_test()
        self.hist: UserHistory = self.known.history()
        self.test_users = split.test.active_users().astype(np.int64)
        rng = np.random.default_rng(config.seed)
        p = config.probes
        order = rng.permutation(self.test_users)
        self.sample = np.sort(order[: p.sample_users])
        self.latency_users = order[: p.latency_users]
        self.probe_users = np.sort(order[: p.probe_users])
        self.popularity = split.train.item_popularity().astype(np.float64)
        self.deciles = popularity_deciles(self.popularity)
        self._candidates: dict[int, np.ndarray] = {}

    def probe_candidates(self, n_candidates: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``(probe users, n_candidates)`` seeded candidates and ``(probe users,)`` positives.

        The default count, ``1 + eval.n_negatives``, is what the bias and memorisation probes
        rank; the candidate-count probe asks for others, drawn with the same seed."""
        from llmrec.eval.protocols import truth_for

        n = 1 + self.config.eval.n_negatives if n_candidates is None else n_candidates
        truth = truth_for(self.probe_users, self.split.test)
        if n not in self._candidates:
            self._candidates[n] = self._sample(self.probe_users, truth, self.config.seed + 1, n)
        positives = truth.items[truth.indptr[:-1]]
        return self._candidates[n], positives

    def latency_candidates(self) -> np.ndarray:
        """Seeded candidates of the latency users (for candidate-protocol entries)."""
        from llmrec.eval.protocols import truth_for

        users = self.latency_users
        truth = truth_for(users, self.split.test)
        return self._sample(users, truth, self.config.seed + 2, 1 + self.config.eval.n_negatives)

    def _sample(self, users: np.ndarray, truth: Truth, seed: int, n_candidates: int) -> np.ndarray:
        from llmrec.eval.protocols import sample_candidates

        ev = self.config.eval
        return sample_candidates(
            users,
            truth,
            self.hist,
            self.split.train.n_items,
            n_negatives=n_candidates - 1,
            sampling=ev.sampling,
            popularity=self.popularity,
            seed=seed,
        )
