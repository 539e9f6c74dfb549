"""Train / validation / test splits. Each is seeded and deterministic.

Every split returns a :class:`Split` of three datasets in the same index space. The held-out
parts hold the interactions to predict; users absent from a held-out part are not evaluated.
A split that would leave nothing to evaluate (no test interaction), nothing to train on, or no
validation interaction although one was asked for is refused with a :class:`DataError` saying
what the data lacks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from llmrec.data._seed import generator
from llmrec.data.dataset import Dataset
from llmrec.errors import ConfigError, DataError

SplitKind = Literal["loo", "temporal", "random"]


@dataclass(eq=False)
class Split:
    """Three interaction sets over one index space."""

    train: Dataset
    valid: Dataset
    test: Dataset
    kind: str = "loo"

    def known_at_test(self) -> Dataset:
        """Interactions known when the test items are predicted: train plus validation."""
        return self.train.concat(self.valid, name=self.train.name)


def leave_one_out(data: Dataset, *, min_history: int = 3) -> Split:
    """Per user, the last interaction (by time) is test and the second last validation.

    Ties in time keep the input order (the later row of a file is the later interaction), so
    the split is deterministic. Users with fewer than ``min_history`` interactions keep
    everything in training.

    Raises:
        ConfigError: ``min_history < 3``.
        DataError: no user has ``min_history`` interactions (nothing to evaluate).
    """
    if min_history < 3:
        raise ConfigError("leave-one-out needs min_history >= 3 (one train, one valid, one test)")
    order = np.lexsort((np.arange(len(data)), data.timestamps, data.users))
    counts = np.bincount(data.users, minlength=data.n_users)
    ends = np.cumsum(counts)  # one past the last interaction of each user in sorted order
    eligible = np.flatnonzero(counts >= min_history)
    if not len(eligible):
        raise DataError(
            f"leave-one-out split: no user has the {min_history} interactions it needs "
            f"(min_history={min_history}: one to test, one to validate, the rest to train on); "
            f"the most any of the {data.n_users:,} users of {data.name!r} has is "
            f"{int(counts.max(initial=0))}"
        )
    role = np.zeros(len(data), dtype=np.int8)  # 0 train, 1 valid, 2 test
    role_sorted = np.zeros(len(data), dtype=np.int8)
    role_sorted[ends[eligible] - 1] = 2
    role_sorted[ends[eligible] - 2] = 1
    role[order] = role_sorted
    return Split(
        train=data.subset(role == 0),
        valid=data.subset(role == 1),
        test=data.subset(role == 2),
        kind="loo",
    )


def temporal(data: Dataset, *, valid_frac: float = 0.1, test_frac: float = 0.1) -> Split:
    """Global time split: the latest ``test_frac`` of interactions are test, the
    ``valid_frac`` before them validation, the rest training (ties in time keep input order).

    Raises:
        ConfigError: fractions outside ``0 <= valid < 1, 0 < test < 1, valid + test < 1``.
        DataError: a part comes out empty (too few interactions for the fractions).
    """
    _check_fracs(valid_frac, test_frac)
    order = np.lexsort((np.arange(len(data)), data.timestamps))
    n = len(data)
    n_test = round(n * test_frac)
    n_valid = round(n * valid_frac)
    role = np.zeros(n, dtype=np.int8)
    role[order[n - n_test :]] = 2
    role[order[n - n_test - n_valid : n - n_test]] = 1
    return _checked("temporal", data, role, valid_frac, test_frac, "")


def random_split(
    data: Dataset, *, valid_frac: float = 0.1, test_frac: float = 0.1, seed: int = 0
) -> Split:
    """Each interaction goes to test / validation / training at random (seeded).

    Raises:
        ConfigError: bad fractions or a negative seed.
        DataError: a part comes out empty (too few interactions for the fractions).
    """
    _check_fracs(valid_frac, test_frac)
    draw = generator(seed).random(len(data))
    role = np.where(draw < test_frac, 2, np.where(draw < test_frac + valid_frac, 1, 0))
    return _checked("random", data, role, valid_frac, test_frac, f", seed {seed}")


def _checked(
    kind: str, data: Dataset, role: np.ndarray, valid_frac: float, test_frac: float, how: str
) -> Split:
    """The split of ``data`` by ``role`` (0 train, 1 valid, 2 test), refused when a part that
    must hold interactions is empty."""
    sizes = np.bincount(role, minlength=3)
    given = f"{len(data):,} interactions, valid_frac={valid_frac}, test_frac={test_frac}{how}"
    empty = [
        part
        for part, size, needed in (
            ("test", sizes[2], True),
            ("validation", sizes[1], valid_frac > 0),
            ("training", sizes[0], True),
        )
        if needed and size == 0
    ]
    if empty:
        raise DataError(
            f"{kind} split: no interaction falls into {empty[0]} ({given}); "
            f"use more data or other fractions"
        )
    return Split(data.subset(role == 0), data.subset(role == 1), data.subset(role == 2), kind=kind)


def make_split(data: Dataset, kind: str = "loo", *, seed: int = 0, **kwargs: float) -> Split:
    """Dispatch on a split name: ``loo``, ``temporal`` or ``random``."""
    if kind == "loo":
        return leave_one_out(data, **{k: int(v) for k, v in kwargs.items()})
    if kind == "temporal":
        return temporal(data, **kwargs)
    if kind == "random":
        return random_split(data, seed=seed, **kwargs)
    raise ConfigError(f"unknown split {kind!r}; choose loo, temporal or random")


def _check_fracs(valid_frac: float, test_frac: float) -> None:
    if not (0 <= valid_frac < 1 and 0 < test_frac < 1 and valid_frac + test_frac < 1):
        raise ConfigError(
            f"split fractions must satisfy 0 <= valid < 1, 0 < test < 1, valid + test < 1; "
            f"got valid={valid_frac}, test={test_frac}"
        )
