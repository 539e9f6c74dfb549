"""SASRec: conformance, learning a deterministic sequence, query-time history, determinism."""

import numpy as np
import pytest

from llmrec.data.dataset import Dataset
from llmrec.data.splits import leave_one_out
from llmrec.errors import ConfigError
from llmrec.models.base import Recommender
from llmrec.models.sasrec import SASRec, _training_windows
from llmrec.testing import RecommenderConformance

FAST = {
    "max_len": 8,
    "dim": 16,
    "n_heads": 2,
    "inner_dim": 32,
    "dropout": 0.1,
    "attn_dropout": 0.1,
    "lr": 0.01,
    "batch_size": 32,
    "epochs": 40,
    "patience": 40,
}


class TestSASRec(RecommenderConformance):
    def make_model(self):
        return SASRec(**{**FAST, "epochs": 5})


class TestSASRecBCE(RecommenderConformance):
    def make_model(self):
        return SASRec(**{**FAST, "epochs": 5, "loss": "bce"})


class TestSASRecSampled(RecommenderConformance):
    def make_model(self):
        return SASRec(**{**FAST, "epochs": 5, "loss": "sampled", "n_negatives": 8})


def cycle_dataset(n_users: int = 60, n_items: int = 20, per_user: int = 12) -> Dataset:
    """Every user walks the catalogue in order from a random start: next = (last + 1) % n."""
    rng = np.random.default_rng(1)
    starts = rng.integers(0, n_items, size=n_users)
    users = np.repeat(np.arange(n_users), per_user)
    steps = np.tile(np.arange(per_user), n_users)
    items = (starts[users] + steps) % n_items
    return Dataset(
        user_ids=np.arange(n_users),
        item_ids=np.arange(n_items),
        users=users,
        items=items,
        timestamps=users * 100 + steps,
    )


@pytest.fixture(scope="module")
def cycle_split():
    return leave_one_out(cycle_dataset())


@pytest.fixture(scope="module")
def cycle_model(cycle_split):
    return SASRec(**FAST).fit(cycle_split.train, cycle_split.valid)


def test_sasrec_learns_the_next_item_of_a_cycle(cycle_model, cycle_split):
    users = cycle_split.test.active_users()
    recs = cycle_model.recommend(users, 1, history=cycle_split.known_at_test())
    truth = cycle_split.test.history()
    hits = [recs.items[r, 0] == truth.of(int(u))[0] for r, u in enumerate(users)]
    assert np.mean(hits) > 0.9


def test_sasrec_reads_the_query_time_history(cycle_model, cycle_split):
    """Given train + valid, the answer moves one step on: it is the test item, not the valid."""
    users = cycle_split.test.active_users()
    at_valid = cycle_model.recommend(users, 1, history=cycle_split.train)
    at_test = cycle_model.recommend(users, 1, history=cycle_split.known_at_test())
    n = cycle_split.train.n_items
    assert np.mean((at_valid.items[:, 0] + 1) % n == at_test.items[:, 0]) > 0.9


def test_sampled_softmax_learns_the_cycle_and_ranks_by_cosine(cycle_split):
    """8 shared negatives of 20 items suffice to learn the cycle; scores are cosines, the
    similarity the loss trained (query and item embeddings l2-normalised)."""
    import torch

    model = SASRec(**{**FAST, "loss": "sampled", "n_negatives": 8, "temperature": 0.1})
    model.fit(cycle_split.train, cycle_split.valid)
    users = cycle_split.test.active_users()
    recs = model.recommend(users, 1, history=cycle_split.known_at_test())
    truth = cycle_split.test.history()
    assert np.mean([recs.items[r, 0] == truth.of(int(u))[0] for r, u in enumerate(users)]) > 0.9
    scores = model.score(users, cycle_split.known_at_test().history())
    assert np.abs(scores).max() <= 1 + 1e-5  # cosines, not raw dot products
    table = model.net.item_emb.weight[1:].detach()
    assert not torch.allclose(table.norm(dim=-1), torch.ones(len(table)), atol=1e-3)


def test_sampled_softmax_masks_a_negative_that_is_the_target():
    """With every item drawn as a negative, the loss equals the full softmax on cosines minus
    nothing for the target's own copy: the accidental hit is masked, not counted twice."""
    import torch

    model = SASRec(**{**FAST, "loss": "sampled", "n_negatives": 4000, "temperature": 0.5})
    model.n_items = 3
    h = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    table = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    y = torch.tensor([0, 2])
    got = model._sampled_softmax(h, y, table, np.random.default_rng(0))
    cos = torch.nn.functional.normalize(h, dim=-1) @ torch.nn.functional.normalize(table, dim=-1).T
    # 4000 uniform draws: each of the 3 items about 1,333 times; exp-weighted by its count
    draws = np.bincount(np.random.default_rng(0).integers(0, 3, size=4000), minlength=3)
    logits = cos / 0.5
    weight = torch.tensor(draws, dtype=torch.float32).log()
    expected = []
    for row, target in enumerate(y.tolist()):
        others = [i for i in range(3) if i != target]
        denom = torch.logsumexp(
            torch.cat([logits[row, target : target + 1], logits[row, others] + weight[others]]), 0
        )
        expected.append(denom - logits[row, target])
    assert float(got) == pytest.approx(float(torch.stack(expected).mean()), rel=1e-4)


def test_default_loss_is_the_full_softmax():
    assert SASRec().config.loss == "ce"


def test_early_stopping_keeps_the_best_validation_weights(cycle_split):
    from llmrec.eval import evaluate

    model = SASRec(**{**FAST, "epochs": 15, "patience": 2, "lr": 0.05})
    model.fit(cycle_split.train, cycle_split.valid)
    log = model.train_log
    assert log is not None and log.best_score == max(log.scores)
    again = evaluate(model, cycle_split, phase="valid", ks=(10,)).metrics["ndcg@10"]
    assert again == pytest.approx(log.best_score, abs=1e-6)


def test_sasrec_is_deterministic_given_the_seed(cycle_split):
    users = np.arange(cycle_split.train.n_users)
    hist = cycle_split.known_at_test().history()
    cfg = {**FAST, "epochs": 3}
    a = SASRec(**cfg, seed=5).fit(cycle_split.train, cycle_split.valid).score(users, hist)
    b = SASRec(**cfg, seed=5).fit(cycle_split.train, cycle_split.valid).score(users, hist)
    c = SASRec(**cfg, seed=6).fit(cycle_split.train, cycle_split.valid).score(users, hist)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_loaded_model_scores_identically(cycle_model, cycle_split, tmp_path):
    users = np.arange(cycle_split.train.n_users)
    hist = cycle_split.known_at_test().history()
    loaded = Recommender.load(cycle_model.save(tmp_path / "sasrec"))
    np.testing.assert_array_equal(cycle_model.score(users, hist), loaded.score(users, hist))


def test_training_windows_cover_every_next_item_once():
    data = cycle_dataset(n_users=3, per_user=20)
    inputs, targets = _training_windows(data.history(), 8)
    assert inputs.shape == targets.shape and inputs.shape[1] == 8
    for user in range(3):
        seq = data.history().of(user)
        mine = np.isin(np.arange(len(inputs)), np.arange(user * 3, user * 3 + 3))
        got = np.sort(targets[mine][targets[mine] >= 0])
        np.testing.assert_array_equal(got, np.sort(seq[1:]))
    # the input before each target is the item that preceded it
    keep = targets >= 0
    prev = inputs[keep] - 1
    np.testing.assert_array_equal((prev + 1) % 20, targets[keep])


@pytest.mark.parametrize("stride", [1, 3, 8])
def test_strided_windows_keep_each_target_once_with_a_long_context(stride):
    seq = cycle_dataset(n_users=1, n_items=40, per_user=30).history().of(0)  # 30 distinct items
    inputs, targets = _training_windows(cycle_dataset(1, 40, 30).history(), 8, stride)
    assert len(inputs) == -(-29 // stride)  # one window per stride, covering 29 targets
    positions = []
    for x, y in zip(inputs, targets, strict=True):
        for j in np.flatnonzero(y >= 0):
            p = int(np.flatnonzero(seq == y[j])[0])  # the target's place in the sequence
            context = x[: j + 1][x[: j + 1] > 0] - 1
            np.testing.assert_array_equal(context, seq[p - len(context) : p])
            assert len(context) >= min(p, 8 - stride + 1)
            positions.append(p)
    assert sorted(positions) == list(range(1, 30))  # every item after the first, once


def test_heads_must_divide_the_dimension():
    with pytest.raises(ConfigError, match="divisible"):
        SASRec(dim=10, n_heads=3)


@pytest.mark.slow
@pytest.mark.realdata
def test_sasrec_beats_popularity_on_movielens_after_a_few_epochs():
    from llmrec.data.movielens import load_movielens_100k
    from llmrec.eval import evaluate
    from llmrec.models.popularity import Popularity

    split = leave_one_out(load_movielens_100k(fetch=False))
    pop = evaluate(Popularity().fit(split.train), split, phase="valid", ks=(10,))
    model = SASRec(epochs=5).fit(split.train, split.valid)
    ours = evaluate(model, split, phase="valid", ks=(10,))
    assert ours.metrics["ndcg@10"] > 1.3 * pop.metrics["ndcg@10"]
