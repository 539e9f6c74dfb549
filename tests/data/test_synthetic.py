"""The synthetic generator: seeded, exact sizes, power-law popularity, taste clusters, time."""

from __future__ import annotations

import numpy as np
import pytest

from llmrec.data import synthetic
from llmrec.errors import ConfigError


@pytest.fixture(scope="module")
def data():
    return synthetic(600, 2_000, 30_000, n_clusters=8, seed=7)


def test_same_seed_same_data_other_seed_other_data(data):
    again = synthetic(600, 2_000, 30_000, n_clusters=8, seed=7)
    for attr in ("users", "items", "timestamps", "user_ids", "item_ids"):
        np.testing.assert_array_equal(getattr(again, attr), getattr(data, attr))
    assert again.item_text.equals(data.item_text) and again.user_attrs.equals(data.user_attrs)
    other = synthetic(600, 2_000, 30_000, n_clusters=8, seed=8)
    assert not np.array_equal(other.items, data.items)


def test_sizes_ids_and_fields(data):
    assert (data.n_users, data.n_items, data.n_interactions) == (600, 2_000, 30_000)
    assert data.name == "synthetic:600x2000x30000"
    assert data.user_ids[0] == 1 and data.item_ids[-1] == 2_000
    assert list(data.item_text.columns) == ["title", "genres", "year"]
    assert list(data.user_attrs.columns) == ["gender", "age_group", "occupation"]
    assert data.item_text["title"].str.startswith("The ").all()
    assert np.bincount(data.users, minlength=data.n_users).min() >= 1


def test_no_user_has_the_same_item_twice(data):
    keys = data.users.astype(np.int64) * data.n_items + data.items
    assert len(np.unique(keys)) == len(keys)


def test_timestamps_strictly_increase_within_each_user(data):
    hist = data.history()
    same_user = np.repeat(np.arange(data.n_users), hist.lengths())
    steps = np.diff(hist.timestamps)[same_user[1:] == same_user[:-1]]
    assert (steps > 0).all()


def _loglog_slope(popularity: np.ndarray, top: int) -> float:
    counts = np.sort(popularity)[::-1][:top].astype(float)
    ranks = np.arange(1, top + 1)
    return float(np.polyfit(np.log(ranks), np.log(counts), 1)[0])


def test_popularity_follows_a_power_law():
    # many light users, so that "no item twice per user" does not flatten the head
    steep = synthetic(20_000, 5_000, 100_000, n_clusters=1, taste=0.0, seed=1).item_popularity()
    flat = synthetic(
        20_000, 5_000, 100_000, n_clusters=1, taste=0.0, popularity_exponent=0.0, seed=1
    ).item_popularity()
    slope = _loglog_slope(steep, 200)
    assert -1.3 < slope < -0.7  # rank-frequency slope near -exponent
    assert abs(_loglog_slope(flat, 200)) < 0.2
    top_share = np.sort(steep)[::-1][:50].sum() / steep.sum()  # top 1% of items
    assert top_share > 0.3 > np.sort(flat)[::-1][:50].sum() / flat.sum()


def test_users_keep_to_their_cluster_when_taste_is_one():
    data = synthetic(200, 1_000, 6_000, n_clusters=10, taste=1.0, seed=2)
    primary = data.item_text["genres"].str.split("|").str[0].to_numpy()
    hist = data.history()
    sizes = np.bincount(data.item_text["genres"].str.split("|").str[0].factorize()[0])
    fits = [u for u in range(data.n_users) if 0 < len(hist.of(u)) <= sizes.min() // 2]
    assert len(fits) > 150
    # every item of a user (whose cluster has room) names the user's cluster genre first
    assert all(len(set(primary[hist.of(u)])) == 1 for u in fits)


def test_mixed_taste_spreads_over_clusters():
    data = synthetic(200, 1_000, 6_000, n_clusters=10, taste=0.5, seed=2)
    primary = data.item_text["genres"].str.split("|").str[0].to_numpy()
    hist = data.history()
    heavy = [u for u in range(data.n_users) if len(hist.of(u)) >= 20]
    assert heavy and np.mean([len(set(primary[hist.of(u)])) for u in heavy]) > 3


def test_small_catalogue_still_meets_the_count():
    data = synthetic(100, 60, 2_000, seed=0)
    assert data.n_interactions == 2_000


def test_bad_arguments():
    with pytest.raises(ConfigError):
        synthetic(0, 10, 10)
    with pytest.raises(ConfigError):
        synthetic(10, 10, 10, taste=1.5)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"popularity_exponent": float("nan")}, "finite popularity_exponent"),
        ({"popularity_exponent": float("inf")}, "finite popularity_exponent"),
        ({"seed": -1}, "seed must be 0 or more, got -1"),
    ],
)
def test_arguments_numpy_would_take_or_trip_on(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        synthetic(10, 10, 10, **kwargs)
