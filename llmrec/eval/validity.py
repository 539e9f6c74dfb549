"""Validity probes: can an entry's accuracy be trusted as a measure of what it learnt?

- :func:`invalid_output` — how often a model's lists held ids outside the catalogue, repeats or
  answers that could not be parsed (generative rankers and generative retrieval can emit them;
  the evaluation drops them, so accuracy alone hides them).
- :func:`truncate_history` and :func:`history_length_curve` — NDCG@10 when each user's
  query-time history is cut to its last L items: a sequential or LM model that reads history
  should gain from longer histories; a flat curve says it does not use them.

Plain functions over arrays and a model's public ``recommend``; nothing here fits a model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

import numpy as np

from llmrec.data.dataset import UserHistory
from llmrec.eval.metrics import Truth, hit_matrix, ndcg

__all__ = ["history_length_curve", "invalid_output", "truncate_history"]


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
