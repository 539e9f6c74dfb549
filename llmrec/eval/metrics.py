"""Ranking metrics as plain, vectorised functions over (ranked ids, truth).

``ranked`` is an ``(n_users, k)`` int64 matrix of item indices, best first, with -1 where a list
is shorter than k. ``truth`` is a :class:`Truth`: each user's relevant items in CSR layout. Every
function returns one value per user (``(n_users,)`` float64) unless it says otherwise, so that
slices (cold-start users, attribute groups) are a mask away.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from llmrec.data.dataset import ragged


@dataclass(frozen=True)
class Truth:
    """Relevant items per user: ``items[indptr[i]:indptr[i + 1]]`` for row ``i``."""

    indptr: np.ndarray
    items: np.ndarray

    @classmethod
    def from_lists(cls, lists: list[list[int]] | list[np.ndarray]) -> Truth:
        return cls(*ragged(lists, np.int64))

    @property
    def counts(self) -> np.ndarray:
        """``(n_users,)`` int64 number of relevant items per user."""
        return np.diff(self.indptr)


def hit_matrix(ranked: np.ndarray, truth: Truth) -> np.ndarray:
    """``(n_users, k)`` bool: whether each ranked item is relevant for its user."""
    n, k = ranked.shape
    if n == 0 or k == 0:
        return np.zeros((n, k), dtype=bool)
    span = int(max(ranked.max(initial=0), truth.items.max(initial=0))) + 2
    rows = np.repeat(np.arange(n, dtype=np.int64), truth.counts)
    relevant = rows * span + truth.items
    codes = np.arange(n, dtype=np.int64)[:, None] * span + ranked
    hits = np.isin(codes, relevant)
    return hits & (ranked >= 0)


def hit_rate(hits: np.ndarray, k: int) -> np.ndarray:
    """1 where any of the first ``k`` items is relevant."""
    return np.asarray(hits[:, :k].any(axis=1), dtype=np.float64)


def recall(hits: np.ndarray, truth: Truth, k: int) -> np.ndarray:
    """Relevant items found in the top ``k`` over the number of relevant items."""
    counts = truth.counts
    found = hits[:, :k].sum(axis=1)
    return _safe_divide(found, counts)


def precision(hits: np.ndarray, k: int) -> np.ndarray:
    """Relevant items in the top ``k`` over ``k``."""
    return hits[:, :k].sum(axis=1) / float(k)


def ndcg(hits: np.ndarray, truth: Truth, k: int) -> np.ndarray:
    """Binary-relevance NDCG@k: DCG of the list over the DCG of an ideal list.

    Discounts are computed only as far as a list or an ideal list reaches, so a ``k`` far
    beyond both (``10**9``) costs nothing extra."""
    top = hits[:, :k]
    ideal_len = np.minimum(truth.counts, k)
    depth = max(top.shape[1], int(ideal_len.max(initial=0)))
    discounts = 1.0 / np.log2(np.arange(2, depth + 2))
    dcg = (top * discounts[: top.shape[1]]).sum(axis=1)
    cum = np.concatenate([[0.0], np.cumsum(discounts)])
    idcg = cum[ideal_len]
    return _safe_divide(dcg, idcg)


def mrr(hits: np.ndarray, k: int) -> np.ndarray:
    """Reciprocal rank of the first relevant item in the top ``k`` (0 if none)."""
    top = hits[:, :k]
    first = top.argmax(axis=1)
    found = top.any(axis=1)
    return np.asarray(np.where(found, 1.0 / (first + 1), 0.0), dtype=np.float64)


def coverage(ranked: np.ndarray, n_items: int) -> float:
    """Share of the catalogue that appears in at least one list."""
    valid = ranked[ranked >= 0]
    return float(len(np.unique(valid)) / n_items) if n_items else 0.0


def average_popularity(ranked: np.ndarray, popularity: np.ndarray) -> np.ndarray:
    """Mean training popularity (interaction count) of each user's recommended items."""
    mask = ranked >= 0
    pops = np.where(mask, popularity[np.clip(ranked, 0, None)], 0.0)
    counts = mask.sum(axis=1)
    return _safe_divide(pops.sum(axis=1), counts)


def gini(ranked: np.ndarray, n_items: int) -> float:
    """Gini index of how often each catalogue item is recommended (0 = even, 1 = one item)."""
    counts = np.bincount(ranked[ranked >= 0], minlength=n_items).astype(np.float64)
    if counts.sum() == 0:
        return 0.0
    counts.sort()
    idx = np.arange(1, n_items + 1)
    return float(((2 * idx - n_items - 1) * counts).sum() / (n_items * counts.sum()))


def _safe_divide(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """``num / den`` with 0 where ``den`` is 0."""
    out = np.zeros(len(num), dtype=np.float64)
    np.divide(num, den, out=out, where=den > 0)
    return out


def per_user_metrics(
    ranked: np.ndarray, truth: Truth, ks: tuple[int, ...]
) -> dict[str, np.ndarray]:
    """Every per-user metric at every cutoff, keyed like ``"ndcg@10"``."""
    hits = hit_matrix(ranked, truth)
    out: dict[str, np.ndarray] = {}
    for k in ks:
        out[f"ndcg@{k}"] = ndcg(hits, truth, k)
        out[f"recall@{k}"] = recall(hits, truth, k)
        out[f"hr@{k}"] = hit_rate(hits, k)
        out[f"mrr@{k}"] = mrr(hits, k)
        out[f"precision@{k}"] = precision(hits, k)
    return out
