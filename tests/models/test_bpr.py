"""BPR-MF: conformance, learning on block-structured data, determinism, early stopping."""

import numpy as np
import pytest

from llmrec.data.splits import leave_one_out
from llmrec.models._torch import TorchConfig, train_loop
from llmrec.models.bpr import BPR, _sample_negatives, _unique_pairs
from llmrec.testing import RecommenderConformance, tiny_dataset

FAST = {"epochs": 30, "lr": 0.05, "batch_size": 64, "patience": 30, "dim": 16, "init_std": 0.1}


class TestBPR(RecommenderConformance):
    def make_model(self):
        return BPR(**FAST)


def test_bpr_recommends_from_the_users_block():
    data = tiny_dataset()
    model = BPR(**FAST).fit(data)
    recs = model.recommend(np.arange(data.n_users), 5)
    half = data.n_items // 2
    assert (recs.items[0::2] < half).mean() > 0.9
    assert (recs.items[1::2] >= half).mean() > 0.9


def test_bpr_is_deterministic_given_the_seed():
    split = leave_one_out(tiny_dataset())
    users = np.arange(split.train.n_users)
    a = BPR(**FAST, seed=3).fit(split.train, split.valid)
    b = BPR(**FAST, seed=3).fit(split.train, split.valid)
    c = BPR(**FAST, seed=4).fit(split.train, split.valid)
    hist = split.train.history()
    np.testing.assert_array_equal(a.score(users, hist), b.score(users, hist))
    assert not np.array_equal(a.score(users, hist), c.score(users, hist))


def test_early_stopping_keeps_the_best_validation_weights():
    from llmrec.eval import evaluate

    split = leave_one_out(tiny_dataset())
    model = BPR(**{**FAST, "epochs": 40, "patience": 3, "lr": 0.2}).fit(split.train, split.valid)
    log = model.train_log
    assert log is not None and log.best_epoch in log.epochs
    assert log.best_score == max(log.scores)
    again = evaluate(model, split, phase="valid", ks=(10,)).metrics["ndcg@10"]
    assert again == pytest.approx(log.best_score, abs=1e-9)


def test_negatives_avoid_the_users_positives():
    data = tiny_dataset()
    users, items = _unique_pairs(data.history())
    codes = users * data.n_items + items
    rng = np.random.default_rng(0)
    neg = _sample_negatives(rng, users, codes, data.n_items, 8)
    assert neg.shape == (len(users), 8)
    assert not np.isin(users[:, None] * data.n_items + neg, codes).any()


def test_train_loop_stops_on_patience_and_restores_the_best():
    scores = iter([0.1, 0.3, 0.2, 0.25, 0.1, 0.9])
    restored = []
    state = {"epoch": 0}

    def run_epoch(epoch: int) -> float:
        state["epoch"] = epoch + 1
        return 0.0

    log = train_loop(
        TorchConfig(epochs=10, patience=3),
        run_epoch,
        lambda: next(scores),
        lambda: {"epoch": state["epoch"]},  # type: ignore[dict-item]
        lambda snap: restored.append(snap),
    )
    assert log.epochs == [1, 2, 3, 4, 5]
    assert log.best_epoch == 2 and log.best_score == 0.3
    assert restored == [{"epoch": 2}]


@pytest.mark.slow
@pytest.mark.realdata
def test_bpr_beats_popularity_on_movielens():
    from llmrec.data.movielens import load_movielens_100k
    from llmrec.eval import evaluate
    from llmrec.models.popularity import Popularity

    split = leave_one_out(load_movielens_100k(fetch=False))
    pop = evaluate(Popularity().fit(split.train), split, phase="valid", ks=(10,))
    model = BPR(epochs=20).fit(split.train, split.valid)
    ours = evaluate(model, split, phase="valid", ks=(10,))
    assert ours.metrics["ndcg@10"] > 1.2 * pop.metrics["ndcg@10"]
