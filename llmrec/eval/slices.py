"""Cold-start slices: metrics on the users whose target items, or whose own histories, are rare.

The paradigm that encodes item text promises most where interactions are few. These helpers
name the slices and report them beside the overall figures of an
:class:`~llmrec.eval.protocols.EvalResult`:

* **cold items** — evaluated users whose held-out item had at most ``max_item_count``
  training interactions (with several held-out items: any of them);
* **cold users** — evaluated users with at most ``max_user_count`` interactions known at
  query time;
* :func:`cold_user_split` makes truly history-less users by removing a random share of users'
  training and validation interactions (their test items stay), so that models fitted on the
  rest can be asked about users they have never seen.

Example::

    result = evaluate(model, split)
    report = slice_report(result, split, max_item_count=5)
    report["cold_items"]["ndcg@10"], report["cold_items"]["n_users"]
"""

from __future__ import annotations

import numpy as np

from llmrec.data._seed import generator
from llmrec.data.dataset import Dataset
from llmrec.data.splits import Split
from llmrec.errors import ConfigError
from llmrec.eval.protocols import EvalResult, Phase, phase_data

__all__ = ["cold_item_mask", "cold_user_mask", "cold_user_split", "slice_report"]


def cold_item_mask(
    result: EvalResult, split: Split, *, max_item_count: int = 5, phase: Phase = "test"
) -> np.ndarray:
    """``(len(result.users),)`` bool: the user's held-out items include one with at most
    ``max_item_count`` interactions in ``split.train``."""
    counts = split.train.item_popularity()
    _, heldout = phase_data(split, phase)
    hist = heldout.history()
    return np.array(
        [bool((counts[hist.of(int(u))] <= max_item_count).any()) for u in result.users],
        dtype=bool,
    )


def cold_user_mask(
    result: EvalResult, split: Split, *, max_user_count: int = 5, phase: Phase = "test"
) -> np.ndarray:
    """``(len(result.users),)`` bool: the user has at most ``max_user_count`` interactions
    known at query time (train, plus validation in the test phase)."""
    known, _ = phase_data(split, phase)
    lengths = known.history().lengths()
    return lengths[result.users] <= max_user_count


def slice_report(
    result: EvalResult,
    split: Split,
    *,
    max_item_count: int = 5,
    max_user_count: int = 5,
    phase: Phase = "test",
) -> dict[str, dict[str, float]]:
    """Overall metrics and the cold-item and cold-user slices, each with its ``n_users``.

    Slice values are means of per-user metrics; a slice with no users has NaN metrics.
    """
    overall = result.slice(np.ones(len(result.users), dtype=bool))
    items = result.slice(cold_item_mask(result, split, max_item_count=max_item_count, phase=phase))
    users = result.slice(cold_user_mask(result, split, max_user_count=max_user_count, phase=phase))
    items["max_item_count"] = float(max_item_count)
    users["max_user_count"] = float(max_user_count)
    return {"overall": overall, "cold_items": items, "cold_users": users}


def cold_user_split(
    split: Split, *, fraction: float = 0.1, seed: int = 0
) -> tuple[Split, np.ndarray]:
    """A split where a random ``fraction`` of the test users lose all training and validation
    interactions (their test interactions stay); returns it and those users' indices.

    Models fitted on the new ``train`` have never seen these users; evaluating them with
    ``users=cold_users`` measures recommendations from no history at all.
    """
    if not 0 < fraction < 1:
        raise ConfigError(f"cold-user fraction must be in (0, 1), got {fraction}")
    candidates = split.test.active_users()
    rng = generator(seed)
    n_cold = max(1, round(fraction * len(candidates)))
    cold = np.sort(rng.choice(candidates, n_cold, replace=False)).astype(np.int64)
    out = Split(
        train=_drop_users(split.train, cold),
        valid=_drop_users(split.valid, cold),
        test=split.test,
        kind=f"{split.kind}+cold_users",
    )
    return out, cold


def _drop_users(data: Dataset, users: np.ndarray) -> Dataset:
    return data.subset(~np.isin(data.users, users))
