"""Protocols check what models return instead of trusting them."""

import numpy as np
import pytest

from llmrec.data.splits import leave_one_out
from llmrec.eval import clean_rankings, evaluate, evaluate_candidates, sample_candidates
from llmrec.eval.protocols import truth_for
from llmrec.models.base import ModelConfig, Recommendations, Recommender
from llmrec.models.popularity import Popularity
from llmrec.testing import tiny_dataset


class Cheater(Recommender):
    """Returns the test item (an oracle) plus garbage: unknown ids, duplicates, seen items."""

    name = "cheater"
    config_class = ModelConfig

    def __init__(self, split, **kw):
        super().__init__(**kw)
        self.split = split

    def fit(self, train, valid=None):
        self._remember_catalogue(train)
        return self

    def score(self, users, history):
        raise AssertionError("not used")

    def recommend(self, users, k=10, *, history=None, exclude_seen=True, batch_size=1024):
        hist = self.split.known_at_test().history()
        test = self.split.test.history()
        rows = []
        for u in users:
            seen = int(hist.of(int(u))[0])
            rows.append([10_000, seen, int(test.of(int(u))[0]), 3, 3] + [-1] * (k - 5))
        items = np.array(rows, dtype=np.int64)
        return Recommendations(np.asarray(users), items, np.zeros(items.shape, np.float32))


def test_violations_are_counted_and_removed():
    split = leave_one_out(tiny_dataset())
    model = Cheater(split).fit(split.train)
    result = evaluate(model, split, phase="test", ks=(10,))
    n = len(result.users)
    assert result.violations["unknown_ids"] == n
    assert result.violations["seen_items"] >= n
    assert result.violations["duplicates"] >= n - 1  # item 3 may be seen for some users
    # the true item sat at rank 3 once garbage was removed from ranks 1 and 2
    assert result.metrics["mrr@10"] == pytest.approx(1 / 3)


def test_clean_rankings_keeps_first_duplicate():
    hist_split = leave_one_out(tiny_dataset())
    ranked, v = clean_rankings(np.array([[4, 4, 5, 99]]), np.array([0]), None, 30)
    assert ranked.tolist() == [[4, -1, 5, -1]]
    assert v == {"unknown_ids": 1, "duplicates": 1, "seen_items": 0}
    assert hist_split.train.n_items == 30


def test_full_ranking_test_phase_excludes_validation_item():
    split = leave_one_out(tiny_dataset())
    model = Popularity().fit(split.train, split.valid)
    result = evaluate(model, split, phase="test", ks=(5,))
    valid_items = {int(u): int(split.valid.history().of(int(u))[0]) for u in result.users}
    for row, user in enumerate(result.users):
        assert valid_items[int(user)] not in result.ranked[row].tolist()
    assert result.violations == {
        "unknown_ids": 0,
        "duplicates": 0,
        "seen_items": 0,
        "short_lists": 0,
    }


def test_candidates_hold_truth_and_unseen_negatives():
    split = leave_one_out(tiny_dataset())
    users = split.test.active_users()
    truth = truth_for(users, split.test)
    hist = split.known_at_test().history()
    cands = sample_candidates(users, truth, hist, split.train.n_items, n_negatives=5, seed=1)
    again = sample_candidates(users, truth, hist, split.train.n_items, n_negatives=5, seed=1)
    np.testing.assert_array_equal(cands, again)
    for row, user in enumerate(users):
        assert truth.items[row] in cands[row]
        assert len(set(cands[row].tolist())) == 6
        assert not set(cands[row].tolist()) & set(hist.of(int(user)).tolist())
    positions = [list(cands[r]).index(truth.items[r]) for r in range(len(users))]
    assert len(set(positions)) > 1, "truth must not always sit in the same slot"


def test_candidate_protocol_with_popularity_model():
    split = leave_one_out(tiny_dataset())
    model = Popularity().fit(split.train)
    res = evaluate_candidates(model, split, ks=(1, 5), n_negatives=9, sampling="popularity")
    assert res.ranked.shape == (len(res.users), 5)
    assert 0.0 <= res.metrics["ndcg@5"] <= 1.0
    assert res.protocol == "candidates"
