"""Protocols check what models return instead of trusting them."""

from typing import Any

import numpy as np
import pytest

from llmrec.data.splits import leave_one_out, temporal
from llmrec.errors import ConfigError
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


class Recording(Popularity):
    """Popularity that records the list length and users it was asked for."""

    def recommend(self, users, k=10, **kw):
        self.asked = (len(users), k)
        return super().recommend(users, k, **kw)

    def score_candidates(self, users, candidates, **kw):
        self.asked = (len(users), candidates.shape[1])
        return super().score_candidates(users, candidates, **kw)


def test_an_absurd_cutoff_is_capped_at_the_catalogue_and_changes_no_figure():
    split = leave_one_out(tiny_dataset())
    model = Recording().fit(split.train)
    capped = evaluate(model, split, ks=(10, 10**9))
    assert model.asked[1] == split.train.n_items  # not 10**9: no (n_users, 10**9) matrix
    whole = evaluate(model, split, ks=(10, split.train.n_items))
    assert capped.ranked.shape == whole.ranked.shape == (len(whole.users), split.train.n_items)
    assert capped.metrics["ndcg@1000000000"] == whole.metrics[f"ndcg@{split.train.n_items}"]
    assert capped.metrics["ndcg@10"] == whole.metrics["ndcg@10"]
    cands = evaluate_candidates(model, split, ks=(1, 10**9), n_negatives=9)
    assert cands.ranked.shape == (len(cands.users), 10)


@pytest.mark.parametrize("ks", [(), (0,), (10, -1), (2.5,), (True,)])
def test_cutoffs_that_are_not_whole_numbers_from_one_are_refused(ks):
    split = leave_one_out(tiny_dataset())
    model = Popularity().fit(split.train)
    with pytest.raises(ConfigError, match="cutoffs ks must be whole numbers >= 1"):
        evaluate(model, split, ks=ks)
    with pytest.raises(ConfigError, match="cutoffs ks must be whole numbers >= 1"):
        evaluate_candidates(model, split, ks=ks)


@pytest.mark.parametrize(
    ("n_negatives", "message"),
    [
        (-1, "n_negatives must be at least 1, got -1"),
        (0, "n_negatives must be at least 1, got 0"),
        (10**12, "n_negatives=1000000000000 is more than the 29 items"),  # before allocating
    ],
)
def test_impossible_negative_counts_are_refused(n_negatives, message):
    split = leave_one_out(tiny_dataset())
    model = Popularity().fit(split.train)
    with pytest.raises(ConfigError, match=message):
        evaluate_candidates(model, split, n_negatives=n_negatives)


def test_a_negative_seed_for_candidates_is_a_config_error():
    split = leave_one_out(tiny_dataset())
    model = Popularity().fit(split.train)
    with pytest.raises(ConfigError, match="seed must be 0 or more, got -2"):
        evaluate_candidates(model, split, seed=-2)


@pytest.mark.parametrize("protocol", ["full", "candidates"])
def test_an_empty_held_out_part_gives_an_empty_result_without_asking_the_model(protocol):
    split = temporal(tiny_dataset(), valid_frac=0.0, test_frac=0.2)
    model = Recording().fit(split.train)
    model.asked = None
    run = evaluate if protocol == "full" else evaluate_candidates
    result = run(model, split, phase="valid")  # once: need at least one array to concatenate
    assert model.asked is None and len(result.users) == 0
    assert result.metrics["n_users"] == 0.0
    assert run(model, split, phase="test").metrics["n_users"] > 0


class Replayer(Recommender):
    """Ranks the user's known items (oldest first) above the test item: where the test item
    lands says which known items the protocol took out."""

    name = "replayer"
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
            known = [] if exclude_seen else hist.of(int(u)).tolist()
            row = ([*known, int(test.of(int(u))[0])] + [-1] * k)[:k]
            rows.append(row)
        items = np.array(rows, dtype=np.int64)
        return Recommendations(np.asarray(users), items, np.zeros(items.shape, np.float32))


@pytest.mark.parametrize("mask", ["known", "window", "none"])
def test_seen_mask_takes_out_the_known_items_it_names_and_no_others(mask):
    split = leave_one_out(tiny_dataset())
    model = Replayer(split).fit(split.train)
    k, window = split.train.n_items, 3
    result = evaluate(model, split, ks=(k,), mask=mask, mask_window=window)
    lengths = split.known_at_test().history().lengths()[result.users]
    before = {"known": 0 * lengths, "window": np.maximum(lengths - window, 0), "none": lengths}
    assert result.metrics[f"mrr@{k}"] == pytest.approx(np.mean(1 / (before[mask] + 1)))
    assert result.violations["seen_items"] == 0
    assert result.extra["mask"] == (f"window:{window}" if mask == "window" else mask)


def test_a_window_mask_shorter_than_every_history_is_not_the_strict_protocol():
    split = leave_one_out(tiny_dataset())
    model = Replayer(split).fit(split.train)
    strict = evaluate(model, split, ks=(5,))
    windowed = evaluate(model, split, ks=(5,), mask="window", mask_window=1)
    assert windowed.metrics["ndcg@5"] < strict.metrics["ndcg@5"]


def test_an_unknown_mask_is_a_config_error():
    unknown: Any = "some"
    split = leave_one_out(tiny_dataset())
    with pytest.raises(ConfigError, match="mask must be"):
        evaluate(Popularity().fit(split.train), split, mask=unknown)
