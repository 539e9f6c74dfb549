"""Evaluation protocols: full ranking and candidate ranking.

Evaluation never trusts a model. It asks for ranked item ids, then checks them itself: ids
outside the catalogue, duplicates within a list and items the user already has are counted as
violations and removed (the slot becomes a miss) before any metric is computed.

Nor does it trust its arguments: cutoffs must be whole numbers >= 1, and a model is never asked
for more items than the catalogue (full ranking) or the candidate list holds, so ``ks=[10**9]``
costs what ``ks=[n_items]`` costs and gives the same figures. With no user to evaluate (an
empty held-out part) the result is empty, with ``n_users`` 0, and the model is not called.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from llmrec import progress
from llmrec.data._seed import generator
from llmrec.data.dataset import Dataset, UserHistory
from llmrec.data.splits import Split
from llmrec.errors import ConfigError
from llmrec.eval import metrics as M
from llmrec.models.base import Recommender

Phase = Literal["valid", "test"]
#: which of a user's known items full ranking leaves out: ``known`` all of them (llmrec's strict
#: protocol), ``window`` only the most recent ``mask_window`` (the items a sequence model reads:
#: HSTU's and LlamaRec's protocols), ``none`` none
SeenMask = Literal["known", "window", "none"]

#: users per call to a model that queries an LM at query time and names no batch size of its
#: own (:meth:`~llmrec.models.base.Recommender.lm_batch_size`): small enough that progress moves
#: every few LM batches, so a log shows the phase alive even at ~10 s per user
LM_CHUNK = 8


@dataclass
class EvalResult:
    """What an evaluation measured.

    Attributes:
        metrics: mean of each per-user metric plus catalogue-level ones, e.g. ``"ndcg@10"``.
        per_user: ``(n_users,)`` arrays of each per-user metric, aligned with ``users``.
        users: ``(n_users,)`` int64 evaluated user indices.
        ranked: ``(n_users, max_k)`` int64 cleaned ranked lists (-1 = empty slot).
        violations: counts of ``unknown_ids``, ``duplicates``, ``seen_items``, ``short_lists``.
        timings: seconds: ``total``, and ``per_user_ms`` (mean milliseconds per user).
    """

    metrics: dict[str, float]
    per_user: dict[str, np.ndarray]
    users: np.ndarray
    ranked: np.ndarray
    violations: dict[str, int]
    timings: dict[str, float]
    protocol: str = "full"
    extra: dict[str, object] = field(default_factory=dict)

    def slice(self, mask: np.ndarray) -> dict[str, float]:
        """Mean per-user metrics over the users where ``mask`` (aligned with ``users``) holds."""
        mask = np.asarray(mask, dtype=bool)
        out = {
            name: float(vals[mask].mean()) if mask.any() else float("nan")
            for name, vals in self.per_user.items()
        }
        out["n_users"] = float(mask.sum())
        return out


def phase_data(split: Split, phase: Phase) -> tuple[Dataset, Dataset]:
    """(history known at query time, held-out truth) for a phase of a split."""
    if phase == "valid":
        return split.train, split.valid
    if phase == "test":
        return split.known_at_test(), split.test
    raise ConfigError(f"unknown phase {phase!r}; choose valid or test")


def truth_for(users: np.ndarray, heldout: Dataset) -> M.Truth:
    """Each user's held-out items as a :class:`~llmrec.eval.metrics.Truth`."""
    hist = heldout.history()
    lengths = hist.lengths()[users]
    indptr = np.zeros(len(users) + 1, dtype=np.int64)
    np.cumsum(lengths, out=indptr[1:])
    items = np.concatenate([hist.of(int(u)) for u in users]) if len(users) else np.zeros(0)
    return M.Truth(indptr, items.astype(np.int64))


def clean_rankings(
    ranked: np.ndarray, users: np.ndarray, history: UserHistory | None, n_items: int
) -> tuple[np.ndarray, dict[str, int]]:
    """Remove unknown ids, duplicates and (if ``history`` is given) seen items; count each."""
    ranked = np.array(ranked, dtype=np.int64, copy=True)
    present = ranked >= 0
    unknown = present & (ranked >= n_items)
    ranked[unknown] = -1
    # duplicates: keep the first occurrence in each row
    order = np.argsort(ranked, axis=1, kind="stable")
    sorted_vals = np.take_along_axis(ranked, order, axis=1)
    dup_sorted = np.zeros_like(sorted_vals, dtype=bool)
    dup_sorted[:, 1:] = (sorted_vals[:, 1:] == sorted_vals[:, :-1]) & (sorted_vals[:, 1:] >= 0)
    dup = np.zeros_like(dup_sorted)
    np.put_along_axis(dup, order, dup_sorted, axis=1)
    ranked[dup] = -1
    seen_count = 0
    if history is not None:
        seen = _seen(ranked, users, history, n_items)
        seen_count = int(seen.sum())
        ranked[seen] = -1
    violations = {
        "unknown_ids": int(unknown.sum() + (ranked < -1).sum()),
        "duplicates": int(dup.sum()),
        "seen_items": seen_count,
    }
    ranked[ranked < -1] = -1
    return ranked, violations


def _seen(ranked: np.ndarray, users: np.ndarray, history: UserHistory, n_items: int) -> np.ndarray:
    """``ranked``'s shape, True where row ``i`` holds an item of ``users[i]`` in ``history``."""
    if not history.items.size or not len(users):
        return np.zeros(ranked.shape, dtype=bool)
    span = n_items + 1
    starts, ends = history.indptr[users], history.indptr[users + 1]
    rows = np.repeat(np.arange(len(users), dtype=np.int64), ends - starts)
    seen_items = np.concatenate([history.items[s:e] for s, e in zip(starts, ends, strict=True)])
    codes = np.arange(len(users), dtype=np.int64)[:, None] * span + ranked
    return np.isin(codes, rows * span + seen_items) & (ranked >= 0)


def _apply_mask(
    ranked: np.ndarray, users: np.ndarray, hist: UserHistory, n_items: int, window: int
) -> np.ndarray:
    """The lists with each user's ``window`` most recent known items taken out, the rest moved
    up in order (rows end in -1 where too few items remain)."""
    drop = _seen(ranked, users, hist.recent(window), n_items) | (ranked < 0)
    order = np.argsort(drop, axis=1, kind="stable")  # kept items first, in rank order
    out = np.take_along_axis(ranked, order, axis=1)
    out[np.take_along_axis(drop, order, axis=1)] = -1
    return out


def evaluate(
    model: Recommender,
    split: Split,
    *,
    phase: Phase = "test",
    ks: tuple[int, ...] = (10, 20),
    users: np.ndarray | None = None,
    batch_size: int = 1024,
    mask: SeenMask = "known",
    mask_window: int = 200,
) -> EvalResult:
    """Full-ranking evaluation: rank all items except the user's known ones.

    With ``mask="window"`` only each user's ``mask_window`` most recent known items are left
    out (the input sequence of HSTU's and LlamaRec's evaluations); with ``mask="none"`` nothing
    is, and the held-out item may rank below items the user already has. Under both the model
    is asked for its lists with nothing excluded, and known items in them are not violations.

    Args:
        model: a fitted recommender.
        split: the split the model was fitted on (``split.train``).
        phase: ``"valid"`` (history = train) or ``"test"`` (history = train + valid).
        ks: cutoffs (whole numbers >= 1); lists of ``min(max(ks), n_items)`` items are
            requested.
        users: evaluate only these user indices (default: every user with held-out items).

    Raises:
        ConfigError: a cutoff that is not a whole number >= 1, or an unknown phase.
    """
    ks = check_ks(ks)
    if mask not in ("known", "window", "none") or mask_window < 1:
        raise ConfigError(
            f"mask must be known, window or none and mask_window >= 1; got {mask!r}, {mask_window}"
        )
    history, heldout = phase_data(split, phase)
    eval_users = _eval_users(heldout, users)
    n_items = split.train.n_items
    width = min(max(ks), n_items)  # a longer list cannot hold more items
    # room for the known items the protocol takes out of the model's unmasked lists
    asked = min(width + mask_window, n_items) if mask == "window" else width
    hist = history.history()
    start = time.perf_counter()
    parts = [np.zeros((0, asked), dtype=np.int64)]
    for rows in _chunks(model, eval_users, phase, batch_size):
        recs = model.recommend(
            eval_users[rows],
            asked,
            history=hist,
            exclude_seen=mask == "known",
            batch_size=batch_size,
        )
        parts.append(_fit_width(np.asarray(recs.items, dtype=np.int64), asked))
    ranked = np.concatenate(parts)
    elapsed = time.perf_counter() - start
    if mask == "window":
        ranked = _apply_mask(ranked, eval_users, hist, n_items, mask_window)
    ranked, violations = clean_rankings(
        ranked, eval_users, hist if mask == "known" else None, n_items
    )
    ranked = _fit_width(ranked, width)
    violations["short_lists"] = int((ranked < 0).any(axis=1).sum())
    result = _summarise(ranked, eval_users, heldout, split.train, ks, violations, elapsed, "full")
    result.extra["mask"] = mask if mask != "window" else f"window:{mask_window}"
    return result


def sample_candidates(
    users: np.ndarray,
    truth: M.Truth,
    history: UserHistory,
    n_items: int,
    *,
    n_negatives: int = 19,
    sampling: Literal["uniform", "popularity"] = "uniform",
    popularity: np.ndarray | None = None,
    seed: int = 0,
) -> np.ndarray:
    """``(n_users, 1 + n_negatives)`` int64 candidates: each user's first held-out item plus
    negatives the user never interacted with, shuffled per user (seeded).

    Raises:
        ConfigError: ``n_negatives < 1``, more negatives than the catalogue holds besides the
            positive (or than a user has left unseen), a negative seed, an unknown sampling.
    """
    if isinstance(n_negatives, bool) or not isinstance(n_negatives, int | np.integer):
        raise ConfigError(f"n_negatives must be a whole number, got {n_negatives!r}")
    if n_negatives < 1:
        raise ConfigError(f"n_negatives must be at least 1, got {n_negatives}")
    if n_negatives > n_items - 1:
        raise ConfigError(
            f"n_negatives={n_negatives} is more than the {n_items - 1} items a catalogue of "
            f"{n_items} holds besides the positive"
        )
    rng = generator(seed)
    if sampling == "popularity":
        if popularity is None:
            raise ConfigError("popularity sampling needs item popularity")
        probs = popularity.astype(np.float64) + 1e-9
        probs /= probs.sum()
    elif sampling == "uniform":
        probs = None
    else:
        raise ConfigError(f"unknown negative sampling {sampling!r}; choose uniform or popularity")
    out = np.empty((len(users), 1 + n_negatives), dtype=np.int64)
    for row, user in enumerate(users):
        positive = truth.items[truth.indptr[row]]
        exclude = set(history.of(int(user)).tolist())
        exclude.update(truth.items[truth.indptr[row] : truth.indptr[row + 1]].tolist())
        available = n_items - len(exclude)
        if available < n_negatives:
            raise ConfigError(
                f"user index {user} has only {available} unseen items left to sample "
                f"{n_negatives} negatives from; lower n_negatives"
            )
        chosen: list[int] = []
        seen_now = set(exclude)
        while len(chosen) < n_negatives:
            draw = rng.choice(n_items, size=2 * n_negatives, p=probs)
            for item in draw.tolist():
                if item not in seen_now:
                    seen_now.add(item)
                    chosen.append(item)
                    if len(chosen) == n_negatives:
                        break
        row_items = np.array([positive, *chosen], dtype=np.int64)
        out[row] = row_items[rng.permutation(len(row_items))]
    return out


def evaluate_candidates(
    model: Recommender,
    split: Split,
    *,
    phase: Phase = "test",
    ks: tuple[int, ...] = (1, 5, 10),
    n_negatives: int = 19,
    sampling: Literal["uniform", "popularity"] = "uniform",
    candidates: np.ndarray | None = None,
    users: np.ndarray | None = None,
    seed: int = 0,
) -> EvalResult:
    """Candidate ranking: each user's held-out item among ``n_negatives`` sampled negatives
    (or among given ``candidates``, e.g. from a retriever — the truth may then be absent).

    Ranked lists are ``min(max(ks), n_candidates)`` wide; ties in score keep candidate order.

    Raises:
        ConfigError: bad ``ks`` (see :func:`evaluate`), ``n_negatives`` or seed (see
            :func:`sample_candidates`), or ``candidates`` of the wrong shape.
    """
    ks = check_ks(ks)
    history, heldout = phase_data(split, phase)
    eval_users = _eval_users(heldout, users)
    hist = history.history()
    truth = truth_for(eval_users, heldout)
    if candidates is None:
        candidates = sample_candidates(
            eval_users,
            truth,
            hist,
            split.train.n_items,
            n_negatives=n_negatives,
            sampling=sampling,
            popularity=split.train.item_popularity(),
            seed=seed,
        )
    candidates = np.asarray(candidates, dtype=np.int64)
    if candidates.ndim != 2 or candidates.shape[0] != len(eval_users):
        raise ConfigError(
            f"candidates of shape {candidates.shape} for {len(eval_users)} users; "
            f"wanted ({len(eval_users)}, n_candidates)"
        )
    start = time.perf_counter()
    scores = np.zeros(candidates.shape)
    for rows in _chunks(model, eval_users, phase, len(eval_users)):
        got = np.asarray(model.score_candidates(eval_users[rows], candidates[rows], history=hist))
        if got.shape != candidates[rows].shape:
            raise ConfigError(
                f"model returned scores of shape {got.shape}, wanted {candidates[rows].shape}"
            )
        scores[rows] = got
    elapsed = time.perf_counter() - start
    scores = np.where(np.isfinite(scores), scores, -np.inf)
    order = np.argsort(-scores, axis=1, kind="stable")
    ranked = np.take_along_axis(candidates, order, axis=1)
    ranked, violations = clean_rankings(ranked, eval_users, None, split.train.n_items)
    ranked = _fit_width(ranked, min(max(ks), candidates.shape[1]))
    result = _summarise(
        ranked, eval_users, heldout, split.train, ks, violations, elapsed, "candidates"
    )
    result.extra["candidates"] = candidates
    return result


def check_ks(ks: tuple[int, ...] | list[int]) -> tuple[int, ...]:
    """``ks`` as a tuple of cutoffs, each a whole number >= 1.

    Raises:
        ConfigError: no cutoff, or one that is not a whole number >= 1.
    """
    out = tuple(ks)
    bad = [k for k in out if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1]
    if not out or bad:
        raise ConfigError(f"cutoffs ks must be whole numbers >= 1, got {list(out)}")
    return tuple(int(k) for k in out)


def _eval_users(heldout: Dataset, users: np.ndarray | None) -> np.ndarray:
    active = heldout.active_users()
    if users is None:
        return active.astype(np.int64)
    users = np.asarray(users, dtype=np.int64)
    return users[np.isin(users, active)]


def _chunks(model: Recommender, users: np.ndarray, phase: str, size: int) -> Iterator[slice]:
    """Row slices of ``users`` to ask ``model`` about in turn, with progress (users done):
    ``size`` users at a time; a model that queries an LM gets one LM batch at a time (its
    :meth:`~llmrec.models.base.Recommender.lm_batch_size`, else :data:`LM_CHUNK`)."""
    step = min(size, model.lm_batch_size() or LM_CHUNK) if model.queries_lm else size
    return progress.batches(len(users), max(1, step), desc=f"evaluate {phase}", unit="user")


def _fit_width(ranked: np.ndarray, width: int) -> np.ndarray:
    if ranked.shape[1] >= width:
        return ranked[:, :width]
    pad = np.full((ranked.shape[0], width - ranked.shape[1]), -1, dtype=np.int64)
    return np.concatenate([ranked, pad], axis=1)


def _summarise(
    ranked: np.ndarray,
    users: np.ndarray,
    heldout: Dataset,
    train: Dataset,
    ks: tuple[int, ...],
    violations: dict[str, int],
    elapsed: float,
    protocol: str,
) -> EvalResult:
    truth = truth_for(users, heldout)
    per_user = M.per_user_metrics(ranked, truth, tuple(ks))
    popularity = train.item_popularity().astype(np.float64)
    per_user["avg_popularity"] = M.average_popularity(ranked, popularity)
    metrics = {name: float(vals.mean()) if len(vals) else 0.0 for name, vals in per_user.items()}
    metrics["coverage"] = M.coverage(ranked, train.n_items)
    metrics["gini"] = M.gini(ranked, train.n_items)
    metrics["n_users"] = float(len(users))
    timings = {
        "total_s": elapsed,
        "per_user_ms": 1000.0 * elapsed / max(1, len(users)),
    }
    return EvalResult(metrics, per_user, users, ranked, violations, timings, protocol)
