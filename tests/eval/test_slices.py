"""Cold-start slices of an evaluation result."""

import numpy as np
import pytest

from llmrec.data.dataset import Dataset
from llmrec.data.splits import leave_one_out
from llmrec.errors import ConfigError
from llmrec.eval.protocols import evaluate
from llmrec.eval.slices import cold_item_mask, cold_user_mask, cold_user_split, slice_report
from llmrec.models.popularity import Popularity
from llmrec.testing import tiny_dataset


def hand_split():
    """Four users; item 9 is every user's last (test) item except user 3, whose test item is
    item 0, seen in training by all users. User 0 has a short history."""
    users, items, times = [], [], []
    seqs = {0: [0, 1, 9], 1: [0, 1, 2, 3, 4, 5, 9], 2: [0, 2, 3, 4, 5, 6, 9], 3: [1, 2, 3, 4, 0]}
    seqs[3] = [0, 1, 2, 3, 4, 0]  # the repeat of item 0 is the test item
    for u, seq in seqs.items():
        for t, i in enumerate(seq):
            users.append(u)
            items.append(i)
            times.append(t)
    data = Dataset(
        user_ids=np.arange(4),
        item_ids=np.arange(10),
        users=np.array(users),
        items=np.array(items),
        timestamps=np.array(times),
    )
    return leave_one_out(data)


def test_masks_follow_training_counts():
    split = hand_split()
    result = evaluate(Popularity().fit(split.train), split)
    np.testing.assert_array_equal(result.users, [0, 1, 2, 3])
    # item 9 never trained; item 0 trained by all 4 users
    np.testing.assert_array_equal(cold_item_mask(result, split, max_item_count=0), [1, 1, 1, 0])
    np.testing.assert_array_equal(cold_item_mask(result, split, max_item_count=4), [1, 1, 1, 1])
    # known at test: user 0 has train 1 + valid 1 = 2 interactions
    np.testing.assert_array_equal(cold_user_mask(result, split, max_user_count=2), [1, 0, 0, 0])


def test_report_holds_overall_and_slices():
    split = hand_split()
    result = evaluate(Popularity().fit(split.train), split)
    report = slice_report(result, split, max_item_count=0, max_user_count=2)
    assert report["overall"]["n_users"] == 4
    assert report["cold_items"]["n_users"] == 3
    assert report["cold_users"]["n_users"] == 1
    ndcg = result.per_user["ndcg@10"]
    assert report["cold_items"]["ndcg@10"] == pytest.approx(ndcg[:3].mean())
    assert report["overall"]["ndcg@10"] == pytest.approx(result.metrics["ndcg@10"])


def test_cold_user_split_removes_their_known_interactions():
    split = leave_one_out(tiny_dataset())
    cold_split, cold = cold_user_split(split, fraction=0.25, seed=3)
    assert len(cold) == 10
    assert not np.isin(cold_split.train.users, cold).any()
    assert not np.isin(cold_split.valid.users, cold).any()
    assert np.isin(cold, cold_split.test.users).all()
    result = evaluate(Popularity().fit(cold_split.train), cold_split, users=cold)
    assert cold_user_mask(result, cold_split, max_user_count=0).all()
    with pytest.raises(ConfigError):
        cold_user_split(split, fraction=1.5)
