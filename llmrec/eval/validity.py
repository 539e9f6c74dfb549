"""Validity probes: can an entry's accuracy be trusted as a measure of what it learnt?

- :func:`invalid_output` — how often a model's lists held ids outside the catalogue, repeats or
  answers that could not be parsed (generative rankers and generative retrieval can emit them;
  the evaluation drops them, so accuracy alone hides them).
- :func:`truncate_history` and :func:`history_length_curve` — NDCG@10 when each user's
  query-time history is cut to its last L items: a sequential or LM model that reads history
  should gain from longer histories; a flat curve says it does not use them.
- :func:`prompt_sensitivity` — NDCG@10 of one LM ranker under paraphrased prompts: the spread
  says how much of a score is the wording of the prompt rather than the model.
- :func:`candidate_count_curve` — NDCG@10 as the LM ranks more candidates, beside what a random
  order would score on the same candidates (NDCG over n candidates falls with n by itself).

The last two score one relevant item per user (the first held-out item, the one the candidate
protocol samples around), so that the random expectation is exact; under leave-one-out that is
the evaluation's own NDCG.

Plain functions over arrays and a model's public ``recommend``; nothing here fits a model.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import numpy as np

from llmrec.data.dataset import UserHistory
from llmrec.eval.metrics import Truth, hit_matrix, ndcg

__all__ = [
    "candidate_count_curve",
    "gain",
    "history_length_curve",
    "invalid_output",
    "positions_of",
    "prompt_sensitivity",
    "random_gain",
    "spread_of",
    "truncate_history",
]


def invalid_output(
    violations: Mapping[str, float],
    n_users: int,
    k: int,
    ranker_stats: Mapping[str, float] | None = None,
) -> dict[str, float]:
    """Rates of invalid output over the ``n_users * k`` list slots evaluated.

    Args:
        violations: counts from :func:`llmrec.eval.protocols.clean_rankings`
            (``unknown_ids``, ``duplicates``, ``seen_items``, ``short_lists``).
        n_users, k: users evaluated and list length (slots = ``n_users * k``).
        ranker_stats: an LM ranker's :meth:`RankerStats.summary` (``unparseable`` answers,
            ``hallucinations``, ``duplicates``, ``users``), when the entry has one.

    Returns ``invalid_rate`` (unknown ids per slot), ``duplicate_rate`` (per slot),
    ``short_list_rate`` (users whose list came back short, per user), and with ranker stats
    ``unparsable_rate`` (answers naming no candidate, per ranked user),
    ``hallucination_rate`` and ``lm_duplicate_rate`` (answer entries per ranked candidate slot).

    Example:
        >>> invalid_output({"unknown_ids": 2, "duplicates": 1}, n_users=10, k=10)["invalid_rate"]
        0.02
    """
    slots = max(1, int(n_users) * int(k))
    out = {
        "invalid_rate": float(violations.get("unknown_ids", 0)) / slots,
        "duplicate_rate": float(violations.get("duplicates", 0)) / slots,
        "short_list_rate": float(violations.get("short_lists", 0)) / max(1, int(n_users)),
    }
    if ranker_stats:
        ranked_users = max(1.0, float(ranker_stats.get("users", 0.0)))
        cand_slots = max(1.0, float(ranker_stats.get("candidates", 0.0)))
        out["unparsable_rate"] = float(ranker_stats.get("unparseable", 0.0)) / ranked_users
        out["hallucination_rate"] = float(ranker_stats.get("hallucinations", 0.0)) / cand_slots
        out["lm_duplicate_rate"] = float(ranker_stats.get("duplicates", 0.0)) / cand_slots
    return out


def truncate_history(history: UserHistory, length: int) -> UserHistory:
    """``history`` with each user's items cut to the last ``length`` (the most recent ones)."""
    lengths = history.lengths()
    keep = np.minimum(lengths, int(length))
    indptr = np.zeros_like(history.indptr)
    np.cumsum(keep, out=indptr[1:])
    starts = history.indptr[1:] - keep
    take = np.concatenate(
        [np.arange(s, e, dtype=np.int64) for s, e in zip(starts, history.indptr[1:], strict=True)]
        or [np.zeros(0, dtype=np.int64)]
    )
    return UserHistory(indptr, history.items[take], history.timestamps[take], history.n_items)


class _Recommender(Protocol):
    def recommend(
        self, users: np.ndarray, k: int = 10, *, history: UserHistory | None = None
    ) -> object: ...


def history_length_curve(
    model: _Recommender,
    users: np.ndarray,
    history: UserHistory,
    truth: Truth,
    lengths: Sequence[int],
    *,
    k: int = 10,
) -> dict[str, list[float]]:
    """NDCG@``k`` of ``model`` over ``users`` when it knows only each user's last L items.

    For each L in ``lengths`` the model is queried with :func:`truncate_history` (items older
    than the last L are unknown to it) for ``k + 50`` items; every item of the whole history is
    then dropped, as the evaluation does, and the first ``k`` kept. The last point is the whole
    history (``L = 0`` in the returned lengths means "all").

    Returns ``{"lengths": [...L, 0], "ndcg": [...], "n_users": [n]}``.
    """
    from llmrec.eval.protocols import clean_rankings

    out_l: list[float] = []
    out_v: list[float] = []
    for length in [*lengths, 0]:
        hist = truncate_history(history, length) if length else history
        # ask for more, then drop every item of the whole history, as the evaluation does:
        # the curve then measures what the model reads, not what it is allowed to repeat
        recs = model.recommend(users, k + (_SPARE if length else 0), history=hist)
        ranked = np.asarray(recs.items, dtype=np.int64)  # type: ignore[attr-defined]
        ranked, _ = clean_rankings(ranked, users, history, history.n_items)
        ranked = _compact(ranked, k)
        out_l.append(float(length))
        out_v.append(float(ndcg(hit_matrix(ranked, truth), truth, k).mean()) if len(users) else 0.0)
    return {"lengths": out_l, "ndcg": out_v, "n_users": [float(len(users))]}


#: extra list slots asked for under a cut history, to make up for the older items dropped
_SPARE = 50


def _compact(ranked: np.ndarray, k: int) -> np.ndarray:
    """The first ``k`` valid ids of each row, shifted left; -1 pads."""
    out = np.full((len(ranked), k), -1, dtype=np.int64)
    for i, row in enumerate(ranked):
        valid = row[row >= 0][:k]
        out[i, : len(valid)] = valid
    return out


# --- prompt and candidate-count sensitivity ---------------------------------------------------
def positions_of(ranked: np.ndarray, positives: np.ndarray) -> np.ndarray:
    """``(n,)`` int64 1-based position of ``positives[i]`` in row ``i`` of ``ranked``
    ``(n, w)``; 0 where the row does not hold it."""
    ranked = np.asarray(ranked, dtype=np.int64)
    hits = ranked == np.asarray(positives, dtype=np.int64)[:, None]
    return np.where(hits.any(axis=1), hits.argmax(axis=1) + 1, 0).astype(np.int64)


def gain(positions: np.ndarray, k: int = 10) -> np.ndarray:
    """``(n,)`` NDCG@``k`` of a list whose one relevant item sits at each 1-based position
    (0: absent): ``1 / log2(1 + p)`` for ``p <= k``, else 0.

    Example:
        >>> gain(np.array([1, 3, 0, 11])).round(3).tolist()
        [1.0, 0.5, 0.0, 0.0]
    """
    p = np.asarray(positions, dtype=np.float64)
    inside = (p >= 1) & (p <= k)
    return np.where(inside, 1.0 / np.log2(1.0 + np.maximum(p, 1.0)), 0.0)


def random_gain(positions: np.ndarray, n_candidates: int, k: int = 10) -> tuple[np.ndarray, ...]:
    """Expected NDCG@``k`` and HR@``k`` per user when the first ``n_candidates`` items of a
    list are put in a random order and the rest keep their places (the two-stage list: the LM
    orders the retriever's top n, the retriever's order follows).

    Args:
        positions: ``(n,)`` 1-based position of each user's relevant item in the list before
            the reordering (0: not in the list). Under the candidate protocol every position is
            at most ``n_candidates``.

    Returns ``(ndcg, hit)``, each ``(n,)`` float64.

    Example:
        >>> ndcg, hit = random_gain(np.array([5]), 20)
        >>> round(float(ndcg[0]), 4), float(hit[0])  # sum of 1/log2(1+p), p <= 10, over 20
        (0.2272, 0.5)
    """
    p = np.asarray(positions, dtype=np.int64)
    reordered = (p >= 1) & (p <= n_candidates)
    shuffled_ndcg = float(gain(np.arange(1, n_candidates + 1), k).sum()) / n_candidates
    shuffled_hit = min(k, n_candidates) / n_candidates
    ndcg_v = np.where(reordered, shuffled_ndcg, gain(p, k))
    hit_v = np.where(reordered, shuffled_hit, ((p >= 1) & (p <= k)).astype(np.float64))
    return ndcg_v, hit_v


def spread_of(values: Sequence[float]) -> dict[str, float]:
    """``mean``, ``spread`` (max - min) and ``sd`` (population standard deviation)."""
    v = np.asarray(values, dtype=np.float64)
    if not len(v):
        return {"mean": 0.0, "spread": 0.0, "sd": 0.0}
    return {"mean": float(v.mean()), "spread": float(v.max() - v.min()), "sd": float(v.std())}


def prompt_sensitivity(
    rank_under: Callable[[str], np.ndarray],
    variants: Sequence[str],
    positives: np.ndarray,
    *,
    k: int = 10,
) -> dict[str, Any]:
    """NDCG@``k`` of one ranker under each prompt variant, and their spread.

    Args:
        rank_under: ``variant -> (n_users, w)`` int64 ranked items of the probe users
            (best first, -1 pads) with the ranker prompted by that variant.
        variants: variant names, in the order to report.
        positives: ``(n_users,)`` each user's relevant item.

    Returns ``{"variants": [...], "ndcg": [...], "hit": [...], "mean", "spread", "sd",
    "n_users"}`` (``hit``: HR@k per variant).
    """
    ndcg_v: list[float] = []
    hit_v: list[float] = []
    for name in variants:
        pos = positions_of(rank_under(name), positives)
        ndcg_v.append(_mean(gain(pos, k)))
        hit_v.append(_mean(((pos >= 1) & (pos <= k)).astype(np.float64)))
    return {
        "variants": list(variants),
        "ndcg": ndcg_v,
        "hit": hit_v,
        **spread_of(ndcg_v),
        "n_users": float(len(positives)),
    }


def candidate_count_curve(
    rank_with: Callable[[int], tuple[np.ndarray, np.ndarray]],
    counts: Sequence[int],
    positives: np.ndarray,
    *,
    k: int = 10,
) -> dict[str, list[float]]:
    """NDCG@``k`` and HR@``k`` when the ranker orders ``n`` candidates, for each n in
    ``counts``, beside a random order's expectation on the same candidates.

    Args:
        rank_with: ``n -> (ranked, drawn)``: ``(n_users, w)`` ranked items with ``n``
            candidates, and ``(n_users,)`` 1-based positions of each user's relevant item in
            the list as drawn, before the ranker ordered it (0: not drawn); see
            :func:`random_gain`.
        counts: candidate counts, in the order to report.
        positives: ``(n_users,)`` each user's relevant item.

    Returns ``{"counts", "ndcg", "hit", "random_ndcg", "random_hit", "recall", "n_users"}``,
    one value per count (``recall``: share of users whose relevant item was among the ``n``
    candidates; 1 under the candidate protocol, the retriever's recall@n under two-stage).
    """
    keys = ("ndcg", "hit", "random_ndcg", "random_hit", "recall")
    out: dict[str, list[float]] = {"counts": [float(n) for n in counts], **{k_: [] for k_ in keys}}
    for n in counts:
        ranked, drawn = rank_with(n)
        pos = positions_of(ranked, positives)
        rnd_ndcg, rnd_hit = random_gain(drawn, n, k)
        out["ndcg"].append(_mean(gain(pos, k)))
        out["hit"].append(_mean(((pos >= 1) & (pos <= k)).astype(np.float64)))
        out["random_ndcg"].append(_mean(rnd_ndcg))
        out["random_hit"].append(_mean(rnd_hit))
        out["recall"].append(_mean(((drawn >= 1) & (drawn <= n)).astype(np.float64)))
    out["n_users"] = [float(len(positives))]
    return out


def _mean(values: np.ndarray) -> float:
    return float(values.mean()) if len(values) else 0.0
