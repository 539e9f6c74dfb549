"""Conformance checks every recommender must pass, for its tests to subclass (and
:class:`~llmrec.lm.conformance.LMConformance`, the same for LM backends).

Usage in a model's test file::

    from llmrec.testing import RecommenderConformance

    class TestMyModel(RecommenderConformance):
        def make_model(self):
            return MyModel(epochs=2)

The checks fit the model on tiny seeded data (:func:`tiny_dataset`) and verify that
``recommend`` returns ``k`` valid, unseen, unique ids, that users with no history and
out-of-range users are handled, and that config and save/load round-trip.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from llmrec.data.dataset import Dataset
from llmrec.data.splits import Split, leave_one_out
from llmrec.errors import ConfigError, NotFittedError
from llmrec.lm.conformance import LMConformance
from llmrec.models.base import Recommender
from llmrec.models.registry import load_model

__all__ = ["LMConformance", "RecommenderConformance", "tiny_dataset"]


def tiny_dataset(n_users: int = 40, n_items: int = 30, per_user: int = 8, seed: int = 0) -> Dataset:
    """A small dataset with structure: users in two groups prefer two halves of the catalogue,
    and each user's sequence walks forward through their half (so sequence models can learn).

    Items carry a title and genres; users carry a gender and an age.
    """
    rng = np.random.default_rng(seed)
    users, items, times = [], [], []
    half = n_items // 2
    for u in range(n_users):
        offset = 0 if u % 2 == 0 else half
        start = int(rng.integers(0, half))
        for step in range(per_user):
            users.append(u)
            items.append(offset + (start + step) % half)
            times.append(1_000_000 + u * 1000 + step)
    item_text = pd.DataFrame(
        {
            "title": [f"Movie {i}" for i in range(n_items)],
            "genres": ["Drama" if i < half else "Comedy" for i in range(n_items)],
        }
    )
    user_attrs = pd.DataFrame(
        {
            "gender": ["F" if u % 3 else "M" for u in range(n_users)],
            "age": [18 + u % 40 for u in range(n_users)],
        }
    )
    return Dataset(
        user_ids=np.array([f"u{u}" for u in range(n_users)], dtype=object),
        item_ids=np.array([f"i{i}" for i in range(n_items)], dtype=object),
        users=np.array(users),
        items=np.array(items),
        timestamps=np.array(times),
        item_text=item_text,
        user_attrs=user_attrs,
        name="tiny",
    )


class RecommenderConformance:
    """Checks shared by every recommender. Subclasses implement :meth:`make_model`."""

    k = 5

    def make_model(self) -> Recommender:
        raise NotImplementedError

    # Class-scoped fixtures must not be instance methods (pytest deprecation), so they are
    # static and reach the subclass through ``request.cls``.
    @pytest.fixture(scope="class")
    @staticmethod
    def split() -> Split:
        return leave_one_out(tiny_dataset())

    @pytest.fixture(scope="class")
    @staticmethod
    def fitted(request: pytest.FixtureRequest, split: Split) -> Recommender:
        model: Recommender = request.cls().make_model()
        return model.fit(split.train, split.valid)

    def test_recommend_returns_k_valid_unseen_unique_ids(
        self, fitted: Recommender, split: Split
    ) -> None:
        users = split.test.active_users()
        recs = fitted.recommend(users, self.k)
        assert recs.items.shape == (len(users), self.k)
        assert recs.scores.shape == (len(users), self.k)
        hist = split.train.history()
        for row, user in enumerate(users):
            got = recs.items[row]
            assert (got >= 0).all() and (got < split.train.n_items).all()
            assert len(set(got.tolist())) == self.k
            assert not set(got.tolist()) & set(hist.of(int(user)).tolist())
            assert (np.diff(recs.scores[row]) <= 1e-6).all(), "scores must be sorted best first"

    def test_query_history_is_excluded(self, fitted: Recommender, split: Split) -> None:
        known = split.known_at_test()
        users = split.test.active_users()[:5]
        recs = fitted.recommend(users, self.k, history=known)
        hist = known.history()
        for row, user in enumerate(users):
            assert not set(recs.items[row].tolist()) & set(hist.of(int(user)).tolist())

    def test_user_without_history_gets_valid_list(self, fitted: Recommender, split: Split) -> None:
        empty = split.train.with_interactions(np.zeros(0), np.zeros(0))
        recs = fitted.recommend([0, 1], self.k, history=empty)
        assert ((recs.items >= 0) & (recs.items < split.train.n_items)).all()

    def test_out_of_range_user_is_a_clear_error(self, fitted: Recommender, split: Split) -> None:
        with pytest.raises(ConfigError, match="outside"):
            fitted.recommend([split.train.n_users + 5], self.k)

    def test_k_larger_than_catalogue_pads_with_minus_one(
        self, fitted: Recommender, split: Split
    ) -> None:
        recs = fitted.recommend([0], split.train.n_items + 3)
        row = recs.items[0]
        assert (row[-3:] == -1).all()
        valid = row[row >= 0]
        assert len(valid) == len(set(valid.tolist()))

    def test_unfitted_model_says_so(self) -> None:
        with pytest.raises(NotFittedError):
            self.make_model().recommend([0], self.k)

    def test_config_round_trips(self) -> None:
        model = self.make_model()
        dumped = model.config.model_dump(mode="json")
        again = type(model)(dumped)
        assert again.config == model.config

    def test_unknown_config_key_is_rejected(self) -> None:
        model = self.make_model()
        with pytest.raises(ValueError):
            type(model)({**model.config.model_dump(), "no_such_option": 1})

    def test_save_load_round_trip(self, fitted: Recommender, split: Split, tmp_path: Path) -> None:
        users = split.test.active_users()
        before = fitted.recommend(users, self.k, history=split.known_at_test())
        folder = fitted.save(tmp_path / "model")
        loaded = load_model(folder)
        assert type(loaded) is type(fitted)
        after = loaded.recommend(users, self.k, history=split.known_at_test())
        np.testing.assert_array_equal(before.items, after.items)
        np.testing.assert_allclose(before.scores, after.scores, rtol=1e-5, atol=1e-6)
