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


def varied_length_dataset(n_users: int = 80, n_items: int = 30) -> Dataset:
    """The cycle walk with user sequences of 3 to 24 items: windows of many lengths."""
    rng = np.random.default_rng(2)
    lengths = rng.integers(3, 25, size=n_users)
    starts = rng.integers(0, n_items, size=n_users)
    users = np.repeat(np.arange(n_users), lengths)
    steps = np.concatenate([np.arange(n) for n in lengths])
    return Dataset(
        user_ids=np.arange(n_users),
        item_ids=np.arange(n_items),
        users=users,
        items=(starts[users] + steps) % n_items,
        timestamps=users * 100 + steps,
    )


def test_a_narrower_window_gets_the_same_hidden_states():
    """Cutting a right-aligned batch's unneeded left padding changes nothing the loss reads:
    positions count back from the newest item, padded keys are masked."""
    import torch

    model = SASRec(**{**FAST, "max_len": 16})
    model.n_items = 30
    with torch.no_grad():
        net = model._build_net().eval()
        tokens = torch.zeros((3, 16), dtype=torch.int64)
        tokens[0, -5:] = torch.tensor([3, 9, 4, 1, 7])
        tokens[1, -2:] = torch.tensor([2, 8])
        tokens[2, -4:] = torch.tensor([5, 5, 6, 30])
        full, narrow = net(tokens), net(tokens[:, -5:])
    assert narrow.shape == (3, 5, 16)
    real = tokens[:, -5:] > 0
    torch.testing.assert_close(narrow[real], full[:, -5:][real], rtol=1e-5, atol=1e-6)


def test_by_length_batches_hold_every_window_once_and_group_lengths():
    from llmrec.models.sasrec import _epoch_batches

    lengths = np.random.default_rng(0).integers(1, 200, size=1000)
    rng = np.random.default_rng(1)
    grouped = _epoch_batches(lengths, 10, "by_length", rng)
    np.testing.assert_array_equal(np.sort(np.concatenate(grouped)), np.arange(1000))
    spread = np.mean([np.ptp(lengths[b]) for b in grouped])
    shuffled = _epoch_batches(lengths, 10, "shuffled", np.random.default_rng(1))
    np.testing.assert_array_equal(np.sort(np.concatenate(shuffled)), np.arange(1000))
    assert spread < 0.2 * np.mean([np.ptp(lengths[b]) for b in shuffled])
    again = _epoch_batches(lengths, 10, "by_length", rng)  # a new grouping each epoch
    assert not all(np.array_equal(a, b) for a, b in zip(grouped, again, strict=True))


def test_shuffled_batches_are_the_permutation_cut_in_order():
    """The default keeps the draw order training always had (ML-100K figures unchanged)."""
    from llmrec.models.sasrec import _epoch_batches

    got = _epoch_batches(np.ones(25, dtype=np.int64), 10, "shuffled", np.random.default_rng(3))
    order = np.random.default_rng(3).permutation(25)
    np.testing.assert_array_equal(np.concatenate(got), order)
    assert [len(b) for b in got] == [10, 10, 5]


@pytest.mark.parametrize(
    "options",
    [
        {"batching": "by_length"},
        {"precision": "bf16"},
        {"batching": "by_length", "precision": "bf16"},
    ],
)
def test_fast_training_options_still_learn_the_cycle(options):
    split = leave_one_out(varied_length_dataset())
    model = SASRec(**{**FAST, "max_len": 24, **options}).fit(split.train, split.valid)
    from llmrec.eval import evaluate

    assert model.config.model_dump()[next(iter(options))] == next(iter(options.values()))
    assert evaluate(model, split, phase="test", ks=(10,)).metrics["ndcg@10"] > 0.8


def test_by_length_loss_equals_the_full_width_loss():
    """Per batch, the narrowed loss is the full-width loss (dropout off): the grouping changes
    which windows share a step, never what a window contributes."""
    import torch

    from llmrec.models.sasrec import _training_windows as windows

    split = leave_one_out(varied_length_dataset())
    model = SASRec(**{**FAST, "max_len": 24, "dropout": 0.0, "attn_dropout": 0.0})
    model.n_items = split.train.n_items
    model.net = model._build_net()
    inputs, targets = windows(split.train.history(), 24, None)
    x, y = torch.from_numpy(inputs[:16]), torch.from_numpy(targets[:16])
    width = int((x > 0).sum(1).max())
    assert width < 24
    rng = np.random.default_rng(0)
    full = model._loss(x, y, rng)
    narrow = model._loss(x[:, -width:], y[:, -width:], rng)
    torch.testing.assert_close(narrow, full, rtol=1e-5, atol=1e-6)


def test_bf16_head_loss_is_close_to_fp32():
    import torch

    model = SASRec(**FAST)
    model.n_items = 30
    model.net = model._build_net().eval()
    x = torch.randint(1, 31, (8, 8))
    y = torch.randint(0, 30, (8, 8))
    rng = np.random.default_rng(0)
    with torch.no_grad():
        fp32 = model._loss(x, y, rng)
        model.config = model.config.model_copy(update={"precision": "bf16"})
        bf16 = model._loss(x, y, rng)
    assert float(bf16) != float(fp32)  # the product did run in bfloat16 ...
    assert float(bf16) == pytest.approx(float(fp32), rel=1e-2)  # ... and stays close


def test_by_length_steps_weigh_a_batch_by_its_targets():
    """A grouped batch of short windows holds few targets: its step is scaled by its targets
    over the epoch's mean per batch, so every target weighs what it weighs in a shuffled batch
    (a plain per-batch mean slowed ML-1M's learning by ~15% per epoch)."""
    import torch

    class Probe(SASRec):
        def _loss(self, inputs, targets, rng):
            counts.append(int((targets >= 0).sum()))
            out = probe * 1.0
            out.register_hook(lambda g: scales.append(float(g)))
            return out

    counts: list[int] = []
    scales: list[float] = []
    probe = torch.ones((), requires_grad=True)
    split = leave_one_out(varied_length_dataset())
    Probe(**{**FAST, "max_len": 24, "batching": "by_length", "batch_size": 16, "epochs": 1}).fit(
        split.train
    )
    _, targets = _training_windows(split.train.history(), 24, FAST.get("stride", 10))
    per_batch = (targets >= 0).sum() / len(counts)
    assert len(counts) == -(-len(targets) // 16) and len(set(counts)) > 3
    np.testing.assert_allclose(scales, np.array(counts) / per_batch, rtol=1e-6)
    assert sum(counts) == (targets >= 0).sum()


def test_by_length_scores_are_the_full_width_scores_in_the_users_order():
    """Scoring grouped by history length (each batch cut to its longest) returns each user's
    own full-width scores, in the order asked. An empty history's row is finite and unused
    (users without history get the popularity fallback)."""
    split = leave_one_out(varied_length_dataset())
    model = SASRec(**{**FAST, "max_len": 24, "epochs": 2}).fit(split.train)
    grouped = SASRec(**{**FAST, "max_len": 24, "batching": "by_length"})
    grouped.n_items, grouped.net = model.n_items, model.net
    hist = split.known_at_test().history()
    users = np.random.default_rng(0).permutation(split.train.n_users)
    seqs = hist.last(users, 24)
    seqs[3] = -1  # a user with no history: padding only
    want = model._sequence_scores(seqs, batch=7).numpy()
    got = grouped._sequence_scores(seqs, batch=7).numpy()
    real = np.arange(len(users)) != 3
    np.testing.assert_allclose(got[real], want[real], rtol=1e-5, atol=1e-5)
    assert np.isfinite(got).all()
