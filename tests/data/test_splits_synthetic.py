"""The splits on synthetic data: what each holds out, checked against the timestamps."""

from __future__ import annotations

import numpy as np
import pytest

from llmrec.data import leave_one_out, random_split, synthetic, temporal


@pytest.fixture(scope="module")
def data():
    return synthetic(300, 500, 6_000, seed=4)


def test_leave_one_out_holds_out_the_two_latest_per_eligible_user(data):
    split = leave_one_out(data, min_history=3)
    counts = np.bincount(data.users, minlength=data.n_users)
    eligible = counts >= 3
    assert (np.bincount(split.test.users, minlength=data.n_users) == eligible).all()
    assert (np.bincount(split.valid.users, minlength=data.n_users) == eligible).all()
    assert len(split.train) + len(split.valid) + len(split.test) == len(data)
    latest = np.full(data.n_users, -1, dtype=np.int64)
    np.maximum.at(latest, split.train.users, split.train.timestamps)
    valid_time = np.full(data.n_users, -1, dtype=np.int64)
    valid_time[split.valid.users] = split.valid.timestamps
    test_time = np.full(data.n_users, -1, dtype=np.int64)
    test_time[split.test.users] = split.test.timestamps
    users = np.flatnonzero(eligible)
    assert (test_time[users] > valid_time[users]).all()
    assert (valid_time[users] > latest[users]).all()
    # users with fewer than three interactions keep them all in training
    short = np.flatnonzero(~eligible & (counts > 0))
    assert np.isin(short, split.train.users).all()


def test_temporal_split_cuts_global_time(data):
    split = temporal(data, valid_frac=0.1, test_frac=0.2)
    assert len(split.test) == round(0.2 * len(data)) and len(split.valid) == round(0.1 * len(data))
    assert split.train.timestamps.max() <= split.valid.timestamps.min()
    assert split.valid.timestamps.max() <= split.test.timestamps.min()


def test_random_split_is_seeded(data):
    a, b = random_split(data, seed=3), random_split(data, seed=3)
    np.testing.assert_array_equal(a.test.items, b.test.items)
    c = random_split(data, seed=4)
    assert not np.array_equal(a.test.items, c.test.items)
    assert 0.05 < len(a.test) / len(data) < 0.15
