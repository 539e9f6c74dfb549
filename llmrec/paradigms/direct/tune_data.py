"""Training and validation examples for fine-tuning an LM ranker, built from training data only.

An example is one training target: a user, the items before one position of their training
sequence (the history the prompt shows), the item at that position (the answer) and the
candidate list it hides among. Each user gives up to ``targets_per_user`` targets, the newest
positions of their sequence, each with the history before it only.

No leakage, by construction:

* only the training split is read, so a validation or test interaction is never an answer or a
  history line;
* negatives are drawn only from items that occur in the training interactions, so an item seen
  only in validation or test never reaches a prompt, and never from the user's own training
  sequence (no false negatives);
* the validation slice is the last training target of ``valid_users`` users; their training
  examples use only the positions before it, so that item is never in their training prompts.

Candidates come from one of two first stages that have not seen the target interaction:
``uniform`` (negatives drawn uniformly, as the 1 + 19 candidate protocol draws them) or
``popularity`` (the most popular training items with the target interaction's own count taken
off, the user's training items excluded). When the first stage misses the target — always the
case for ``uniform`` — its last candidate gives way and the target goes into a uniformly random
slot, so the slot is no shortcut. ``order="shuffled"`` then shuffles every list;
``"retriever"`` keeps the first stage's order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from llmrec.data.dataset import UserHistory

__all__ = ["Example", "build_examples"]


@dataclass(frozen=True)
class Example:
    """One target.

    Attributes:
        user: user index.
        history: ``(t,)`` int64 items before the target, oldest first.
        candidates: ``(c,)`` int64 items in the order shown; the target is among them.
        answer: the target's slot in ``candidates``.
    """

    user: int
    history: np.ndarray
    candidates: np.ndarray
    answer: int


@dataclass(frozen=True)
class _Setup:
    popularity: np.ndarray  # (n_items,) training interaction counts
    pool: np.ndarray  # items with at least one training interaction
    n_candidates: int
    negatives: Literal["uniform", "popularity"]
    order: Literal["retriever", "shuffled"]


def build_examples(
    history: UserHistory,
    popularity: np.ndarray,
    *,
    targets_per_user: int,
    min_history: int,
    n_candidates: int,
    negatives: Literal["uniform", "popularity"],
    order: Literal["retriever", "shuffled"],
    valid_users: int,
    seed: int,
) -> tuple[list[Example], list[Example]]:
    """``(train, valid)`` examples from the training interactions ``history``.

    ``popularity`` is ``(n_items,)`` training interaction counts. Validation users are a seeded
    sample of the users with at least ``min_history + 2`` training items.
    """
    rng = np.random.default_rng(seed)
    pop = np.asarray(popularity, dtype=np.float64)
    setup = _Setup(pop, np.flatnonzero(pop > 0), n_candidates, negatives, order)
    lengths = history.lengths()
    eligible = np.flatnonzero(lengths >= min_history + 2)
    n_valid = min(valid_users, len(eligible))
    valid = set(rng.choice(eligible, size=n_valid, replace=False).tolist()) if n_valid else set()
    train: list[Example] = []
    held: list[Example] = []
    for user in range(len(lengths)):
        seq = history.of(user)
        end = len(seq)
        if user in valid:
            held.append(_example(user, seq, end - 1, setup, rng))
            end -= 1
        for pos in range(max(min_history, end - targets_per_user), end):
            train.append(_example(user, seq, pos, setup, rng))
    return train, held


def _example(
    user: int, seq: np.ndarray, pos: int, setup: _Setup, rng: np.random.Generator
) -> Example:
    target = int(seq[pos])
    own = np.zeros(len(setup.popularity), dtype=bool)
    own[seq] = True  # the user's whole training sequence: never a negative
    n_neg = min(setup.n_candidates - 1, int((~own[setup.pool]).sum()))
    if setup.negatives == "popularity":
        scores = setup.popularity.copy()
        scores[target] -= 1.0  # the first stage has not seen this interaction
        scores[own | (setup.popularity <= 0)] = -np.inf  # seen, or never in training
        scores[target] = setup.popularity[target] - 1.0
        ranked = np.argsort(-scores, kind="stable")[: n_neg + 1]
        cands = [int(i) for i in ranked]
        if target not in cands:
            cands = cands[:n_neg]
            cands.insert(int(rng.integers(0, n_neg + 1)), target)
    else:
        pool = setup.pool[~own[setup.pool]]
        negs = rng.choice(pool, size=n_neg, replace=False).tolist()
        cands = [int(i) for i in negs]
        cands.insert(int(rng.integers(0, n_neg + 1)), target)
    out = np.asarray(cands, dtype=np.int64)
    if setup.order == "shuffled":
        out = out[rng.permutation(len(out))]
    answer = int(np.flatnonzero(out == target)[0])
    return Example(user, np.asarray(seq[:pos], dtype=np.int64), out, answer)
