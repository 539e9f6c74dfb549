"""Bias probes for any candidate scorer: position, popularity and fairness; and a mitigation.

Every probe takes a *scorer*: a callable ``(users (n,) int64, candidates (n, c) int64) ->
(n, c) float`` scores, higher is better. :func:`scorer_of` makes one from any recommender (or
LM ranker) and a query-time history, so the probes serve every paradigm alike.

* :func:`position_bias` — the held-out item is put at each slot of the same candidate list in
  turn; NDCG@K and HR@1 per slot, and their spread (max - min). An order-blind scorer has zero
  spread.
* :func:`permutation_agreement` — rank random permutations of the same candidates; mean
  pairwise Kendall tau of the item scores, and how often the top-1 item is the same.
* :func:`bootstrap` — the mitigation: score ``B`` independently shuffled orders and average the
  Borda points of each item (``B`` times the scorer's cost).
* :func:`popularity_bias` — average training popularity of the top-K against the candidate
  pool's, and the Spearman correlation between rank position and popularity.
* :func:`fairness` — FaiRLLM: top-K lists under each value of a sensitive attribute against a
  neutral profile; Jaccard@K and rank-biased overlap (RBO) per value, SNSR (max - min) and
  SNSV (standard deviation) across values.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import numpy as np

from llmrec.data._seed import generator
from llmrec.data.dataset import Dataset, UserHistory
from llmrec.errors import ConfigError
from llmrec.models.query import QueryProfiles, same_profile

__all__ = [
    "FairnessReport",
    "PositionBias",
    "Scorer",
    "bootstrap",
    "fairness",
    "jaccard_at_k",
    "permutation_agreement",
    "popularity_bias",
    "position_bias",
    "ranked_under_profiles",
    "rbo_at_k",
    "scorer_of",
    "top_k",
]

Scorer = Callable[[np.ndarray, np.ndarray], np.ndarray]


class _CandidateScorer(Protocol):
    def score_candidates(
        self,
        users: np.ndarray,
        candidates: np.ndarray,
        *,
        history: Dataset | UserHistory | None = None,
    ) -> np.ndarray: ...


def scorer_of(model: _CandidateScorer, history: Dataset | UserHistory) -> Scorer:
    """A scorer calling ``model.score_candidates(users, candidates, history=history)``."""

    def score(users: np.ndarray, candidates: np.ndarray) -> np.ndarray:
        return np.asarray(model.score_candidates(users, candidates, history=history))

    return score


def top_k(scores: np.ndarray, candidates: np.ndarray, k: int) -> np.ndarray:
    """``(n, k)`` int64 candidate ids, best first; ties keep the given order (as evaluation)."""
    order = np.argsort(-np.asarray(scores, dtype=np.float64), axis=1, kind="stable")
    return np.take_along_axis(np.asarray(candidates), order, axis=1)[:, :k]


def _ranks_of(scores: np.ndarray) -> np.ndarray:
    """``(n, c)`` 0-based rank of each slot (0 = best), ties broken by slot order."""
    order = np.argsort(-np.asarray(scores, dtype=np.float64), axis=1, kind="stable")
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.arange(order.shape[1])[None, :], axis=1)
    return ranks


# --- position bias ---------------------------------------------------------------------------
@dataclass
class PositionBias:
    """Per-slot quality with the held-out item placed at each slot.

    Attributes:
        slots: ``(s,)`` 0-based slots probed.
        ndcg: ``(s,)`` mean NDCG@k with the positive at each slot.
        hit1: ``(s,)`` mean HR@1 with the positive at each slot.
        k: the NDCG cutoff.
        calls: scorer rows evaluated (each is one prompt for an LM ranker).
    """

    slots: np.ndarray
    ndcg: np.ndarray
    hit1: np.ndarray
    k: int
    calls: int

    @property
    def spread(self) -> float:
        """max - min of per-slot NDCG: 0 for an order-blind scorer."""
        return float(self.ndcg.max() - self.ndcg.min()) if len(self.ndcg) else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "slots": self.slots.tolist(),
            "ndcg": [round(float(x), 4) for x in self.ndcg],
            "hit1": [round(float(x), 4) for x in self.hit1],
            "k": self.k,
            "spread": round(self.spread, 4),
            "std": round(float(self.ndcg.std()), 4),
            "calls": self.calls,
        }


def _negatives(candidates: np.ndarray, positives: np.ndarray) -> np.ndarray:
    rows = []
    for cand, pos in zip(candidates, positives, strict=True):
        keep = cand[cand != pos]
        if len(keep) != len(cand) - 1:
            raise ConfigError(f"positive item {pos} must appear exactly once in its candidates")
        rows.append(keep)
    return np.asarray(rows, dtype=np.int64)


def position_bias(
    scorer: Scorer,
    users: np.ndarray,
    candidates: np.ndarray,
    positives: np.ndarray,
    *,
    slots: Sequence[int] | None = None,
    k: int = 10,
) -> PositionBias:
    """NDCG@k and HR@1 with each user's positive at each slot in ``slots`` (default: all),
    the negatives keeping their given order.

    Args:
        users: ``(n,)`` user indices.
        candidates: ``(n, c)`` candidate ids, each row holding its positive once.
        positives: ``(n,)`` the held-out item of each row.
    """
    users = np.asarray(users, dtype=np.int64)
    candidates = np.asarray(candidates, dtype=np.int64)
    positives = np.asarray(positives, dtype=np.int64)
    negatives = _negatives(candidates, positives)
    n, c = candidates.shape
    slot_arr = np.arange(c) if slots is None else np.asarray(list(slots), dtype=np.int64)
    if len(slot_arr) and (slot_arr.min() < 0 or slot_arr.max() >= c):
        raise ConfigError(f"slots must lie in 0..{c - 1}")
    ndcg = np.zeros(len(slot_arr))
    hit1 = np.zeros(len(slot_arr))
    for j, slot in enumerate(slot_arr.tolist()):
        arranged = np.insert(negatives, slot, positives, axis=1)
        rank = _ranks_of(scorer(users, arranged))[:, slot]
        ndcg[j] = np.where(rank < k, 1.0 / np.log2(rank + 2.0), 0.0).mean() if n else 0.0
        hit1[j] = (rank == 0).mean() if n else 0.0
    return PositionBias(slot_arr, ndcg, hit1, k, n * len(slot_arr))


def permutation_agreement(
    scorer: Scorer,
    users: np.ndarray,
    candidates: np.ndarray,
    *,
    n_permutations: int = 4,
    seed: int = 0,
) -> dict[str, float]:
    """Agreement of rankings across ``n_permutations`` random orders of the same candidates.

    Returns ``kendall_tau`` (mean over users and permutation pairs of Kendall's tau between
    the item ranks; 1 = the order never matters), ``top1_agreement`` (share of pairs with the
    same best item) and ``calls`` (scorer rows evaluated).
    """
    from scipy.stats import kendalltau

    if n_permutations < 2:
        raise ConfigError("permutation agreement needs at least 2 permutations")
    users = np.asarray(users, dtype=np.int64)
    candidates = np.asarray(candidates, dtype=np.int64)
    rng = generator(seed)
    n, c = candidates.shape
    item_ranks = []  # each (n, c): rank of the item in the *original* slot j
    for _ in range(n_permutations):
        perm = np.argsort(rng.random((n, c)), axis=1)
        ranks = _ranks_of(scorer(users, np.take_along_axis(candidates, perm, axis=1)))
        back = np.empty_like(ranks)
        np.put_along_axis(back, perm, ranks, axis=1)
        item_ranks.append(back)
    taus, top1 = [], []
    for a in range(n_permutations):
        for b in range(a + 1, n_permutations):
            for row in range(n):
                tau = kendalltau(item_ranks[a][row], item_ranks[b][row]).statistic
                taus.append(1.0 if np.isnan(tau) else float(tau))
                top1.append(float(np.argmin(item_ranks[a][row]) == np.argmin(item_ranks[b][row])))
    return {
        "kendall_tau": float(np.mean(taus)) if taus else 1.0,
        "top1_agreement": float(np.mean(top1)) if top1 else 1.0,
        "calls": float(n * n_permutations),
    }


def bootstrap(scorer: Scorer, n_orders: int = 3, *, seed: int = 0) -> Scorer:
    """A scorer that ranks ``n_orders`` independently shuffled orders of the candidates and
    returns each item's mean Borda points (``c - 1 - rank``), aligned with the input order,
    as ``(n, c)`` float64.

    Items whose mean points tie are ordered by a further seeded random draw, never by the
    slot they were shown in: a fraction below ``1 / n_orders`` (the smallest gap between two
    different means) is added, distinct within a row. Evaluation breaks ties by slot, so
    without it a scorer that likes every candidate alike would still favour early slots.

    Costs ``n_orders`` scorer calls per call. Each call draws fresh permutations from a
    generator seeded once, so repeated calls see different orders.
    """
    if n_orders < 1:
        raise ConfigError("bootstrapping needs at least one order")
    rng = generator(seed)

    def score(users: np.ndarray, candidates: np.ndarray) -> np.ndarray:
        candidates = np.asarray(candidates, dtype=np.int64)
        n, c = candidates.shape
        points = np.zeros((n, c), dtype=np.float64)
        for _ in range(n_orders):
            perm = np.argsort(rng.random((n, c)), axis=1)
            ranks = _ranks_of(scorer(users, np.take_along_axis(candidates, perm, axis=1)))
            back = np.empty_like(ranks)
            np.put_along_axis(back, perm, ranks, axis=1)
            points += c - 1 - back
        tie_break = np.argsort(rng.random((n, c)), axis=1) / (c * n_orders)
        return points / n_orders + tie_break

    return score


# --- popularity bias -------------------------------------------------------------------------
def popularity_bias(
    scores: np.ndarray, candidates: np.ndarray, popularity: np.ndarray, *, k: int = 5
) -> dict[str, float]:
    """How much a ranking favours popular items.

    Args:
        scores: ``(n, c)`` scores of ``candidates`` ``(n, c)`` int64.
        popularity: ``(n_items,)`` training interaction counts.

    Returns ``topk_popularity`` and ``pool_popularity`` (mean counts), their ratio ``lift``
    (> 1: the top-K is more popular than the pool), and ``rank_popularity_spearman``: the mean
    per-user Spearman correlation between rank position (0 = best) and popularity (negative:
    popular items are ranked higher).
    """
    from scipy.stats import spearmanr

    candidates = np.asarray(candidates, dtype=np.int64)
    pop = np.asarray(popularity, dtype=np.float64)
    top = top_k(scores, candidates, k)
    top_pop = float(pop[top].mean()) if top.size else 0.0
    pool_pop = float(pop[candidates].mean()) if candidates.size else 0.0
    ranks = _ranks_of(scores)
    rhos = []
    for row in range(len(candidates)):
        rho = spearmanr(ranks[row], pop[candidates[row]]).statistic
        if not np.isnan(rho):
            rhos.append(float(rho))
    return {
        "topk_popularity": top_pop,
        "pool_popularity": pool_pop,
        "lift": top_pop / pool_pop if pool_pop else float("nan"),
        "rank_popularity_spearman": float(np.mean(rhos)) if rhos else 0.0,
        "k": float(k),
    }


# --- fairness ----------------------------------------------------------------------------------
def jaccard_at_k(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(n,)`` |A ∩ B| / |A ∪ B| of each row pair of ``(n, k)`` lists (-1 entries ignored)."""
    out = np.zeros(len(a))
    for row, (x, y) in enumerate(zip(a, b, strict=True)):
        sx, sy = set(x[x >= 0].tolist()), set(y[y >= 0].tolist())
        out[row] = len(sx & sy) / len(sx | sy) if sx | sy else 1.0
    return out


def rbo_at_k(a: np.ndarray, b: np.ndarray, p: float = 0.9) -> np.ndarray:
    """``(n,)`` rank-biased overlap of each row pair of ``(n, k)`` lists, truncated at k and
    normalised so identical lists score 1 and disjoint lists 0 (top ranks weigh most)."""
    k = a.shape[1]
    weights = p ** np.arange(k)
    out = np.zeros(len(a))
    for row, (x, y) in enumerate(zip(a, b, strict=True)):
        overlap = [
            len(set(x[: d + 1].tolist()) & set(y[: d + 1].tolist())) / (d + 1) for d in range(k)
        ]
        out[row] = float(np.dot(weights, overlap) / weights.sum()) if k else 1.0
    return out


@dataclass
class FairnessReport:
    """Similarity of each sensitive value's lists to the neutral lists, and its spread.

    Attributes:
        attribute: the sensitive attribute probed.
        jaccard: value -> mean Jaccard@k against the neutral profile's lists.
        rbo: value -> mean RBO against the neutral profile's lists.
        k: list length compared.
        n_users: users probed.
        calls: scorer rows evaluated.
    """

    attribute: str
    jaccard: dict[str, float]
    rbo: dict[str, float]
    k: int
    n_users: int
    calls: int

    @staticmethod
    def _snsr(values: dict[str, float]) -> float:
        v = list(values.values())
        return float(max(v) - min(v)) if v else 0.0

    @staticmethod
    def _snsv(values: dict[str, float]) -> float:
        return float(np.std(list(values.values()))) if values else 0.0

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["snsr_jaccard"] = self._snsr(self.jaccard)
        out["snsv_jaccard"] = self._snsv(self.jaccard)
        out["snsr_rbo"] = self._snsr(self.rbo)
        out["snsv_rbo"] = self._snsv(self.rbo)
        return out


def fairness(
    rank_under: Callable[[Mapping[str, str]], np.ndarray],
    attribute: str,
    values: Sequence[str],
    *,
    n_users: int,
    k: int = 5,
    n_candidates: int | None = None,
) -> FairnessReport:
    """FaiRLLM's probe: ``rank_under(profile)`` returns ``(n_users, >=k)`` ranked ids for the
    same users and histories under ``profile``; ``{}`` is the neutral profile and
    ``{attribute: value}`` each sensitive one.

    The lists must be drawn from more than ``k`` candidates (give ``n_candidates`` when
    known): a top-``k`` of every candidate is the same set under every profile, so Jaccard
    would be 1 and SNSR 0 for any ranker.

    Raises:
        ConfigError: no values, ``k < 1``, ``k >= n_candidates``, or lists shorter than ``k``.
    """
    if not values:
        raise ConfigError(f"no values given for the sensitive attribute {attribute!r}")
    _check_fairness_k(k, n_candidates)
    neutral = np.asarray(rank_under({}))
    if neutral.ndim != 2 or neutral.shape[1] < k:
        raise ConfigError(
            f"fairness k={k}: the neutral lists have shape {neutral.shape}; each of the "
            f"(n_users, width) rows must hold at least k items, drawn from more than k candidates"
        )
    neutral = neutral[:, :k]
    jac, rbo = {}, {}
    for value in values:
        lists = np.asarray(rank_under({attribute: value}))[:, :k]
        jac[value] = float(jaccard_at_k(neutral, lists).mean())
        rbo[value] = float(rbo_at_k(neutral, lists).mean())
    return FairnessReport(attribute, jac, rbo, k, n_users, n_users * (len(values) + 1))


def _check_fairness_k(k: int, n_candidates: int | None) -> None:
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise ConfigError(f"fairness k must be a whole number >= 1, got {k!r}")
    if n_candidates is not None and k >= n_candidates:
        raise ConfigError(
            f"fairness k={k} must be smaller than the {n_candidates} candidates: a top-{k} of "
            f"{n_candidates} candidates is the same set under every profile, so SNSR would be 0 "
            f"for any ranker"
        )


class _ProfileRanker(Protocol):
    def score_candidates(
        self,
        users: np.ndarray,
        candidates: np.ndarray,
        *,
        history: Dataset | UserHistory | None = None,
        profiles: QueryProfiles | None = None,
    ) -> np.ndarray: ...


def ranked_under_profiles(
    ranker: _ProfileRanker,
    users: np.ndarray,
    candidates: np.ndarray,
    history: Dataset | UserHistory,
    *,
    k: int = 5,
) -> Callable[[Mapping[str, str]], np.ndarray]:
    """A ``rank_under`` for :func:`fairness` from anything whose ``score_candidates`` takes
    query ``profiles`` (the LM rankers and models over them): top-``k`` of ``candidates`` when
    every user's prompt shows the same profile.

    Raises:
        ConfigError: ``k`` is not below the number of candidates (see :func:`fairness`).
    """
    _check_fairness_k(k, np.asarray(candidates).shape[-1])

    def rank_under(profile: Mapping[str, str]) -> np.ndarray:
        profiles = same_profile(np.asarray(users).tolist(), profile)
        scores = ranker.score_candidates(users, candidates, history=history, profiles=profiles)
        return top_k(scores, candidates, k)

    return rank_under
