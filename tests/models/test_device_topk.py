"""The torch models rank on their device and move only the top K back: the same lists and
scores, bit for bit, as ranking their whole score matrix with numpy, ties included."""

from __future__ import annotations

import numpy as np
import pytest

from llmrec.data.dataset import UserHistory
from llmrec.data.splits import Split, leave_one_out
from llmrec.eval import evaluate
from llmrec.models._torch import ndcg_at_k, top_k
from llmrec.models.base import Recommender, _top_k
from llmrec.models.bpr import BPR
from llmrec.models.sasrec import SASRec
from llmrec.testing import tiny_dataset

torch = pytest.importorskip("torch")

SASREC = {"max_len": 6, "dim": 8, "n_heads": 1, "inner_dim": 16, "epochs": 3}
BPR_SMALL = {"dim": 8, "epochs": 3}


def _bits(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float32).view(np.int32)


def _tied_scores(rng: np.random.Generator, rows: int, items: int) -> np.ndarray:
    """Scores from a handful of values (most items tie with others), with -inf, -0.0 and 0.0."""
    values = np.array([-np.inf, -1.5, -0.0, 0.0, 0.25, 0.25, 2.0, np.inf], dtype=np.float32)
    return values[rng.integers(0, len(values), size=(rows, items))]


@pytest.mark.parametrize("seed", range(4))
def test_top_k_in_torch_is_the_numpy_ranking_ties_included(seed: int) -> None:
    rng = np.random.default_rng(seed)
    scores = _tied_scores(rng, 17, 23)
    for k in (0, 1, 2, 5, 11, 22, 23):
        want_items, want_scores = _top_k(scores.copy(), k)
        items, top = top_k(torch.from_numpy(scores.copy()), k)
        np.testing.assert_array_equal(items.numpy(), want_items)
        np.testing.assert_array_equal(_bits(top.numpy()), _bits(want_scores))


def test_ties_go_to_the_lower_item_index_at_the_cut() -> None:
    scores = torch.tensor([[1.0, 3.0, 3.0, 2.0, 3.0], [0.0, -0.0, 0.0, -0.0, 1.0]])
    items, top = top_k(scores, 2)
    assert items.tolist() == [[1, 2], [4, 0]]
    assert top.tolist() == [[3.0, 3.0], [1.0, 0.0]]


def _numpy_only(monkeypatch: pytest.MonkeyPatch, model: Recommender) -> None:
    """Rank ``model``'s full score matrix with numpy (the path before device ranking)."""
    monkeypatch.setattr(type(model), "_device_scores", Recommender._device_scores)


def _fitted(name: str) -> tuple[Recommender, Split]:
    from llmrec.paradigms.embeddings.lm_sasrec import LMSASRec
    from llmrec.paradigms.tokens.token_sasrec import TokenSASRec

    split = leave_one_out(tiny_dataset())
    text = {"encoder": "fake:16", "cache": False}
    model = {
        "sasrec": lambda: SASRec(SASREC),
        "bpr": lambda: BPR(BPR_SMALL),
        "lm-sasrec": lambda: LMSASRec({**SASREC, **text}),  # the adaptor's item table
        "token-sasrec": lambda: TokenSASRec({**SASREC, **text, "levels": 2, "codebook_size": 4}),
    }[name]()
    return model.fit(split.train, split.valid), split


@pytest.mark.parametrize("name", ["sasrec", "bpr", "lm-sasrec", "token-sasrec"])
def test_recommend_on_the_device_equals_numpy_ranking(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    model, split = _fitted(name)
    hist = split.train.history()
    # user 0 comes with no history at query time: the popularity fallback, ranked on the device
    rows = [hist.of(u) for u in range(hist.n_users)]
    rows[0] = rows[0][:0]
    query = UserHistory.from_rows(rows, hist.n_items)
    users = np.arange(hist.n_users)
    got = {
        (k, ex, bs): model.recommend(users, k, history=query, exclude_seen=ex, batch_size=bs)
        for k in (1, 10, hist.n_items, hist.n_items + 5)
        for ex in (True, False)
        for bs in (7, 1024)
    }
    _numpy_only(monkeypatch, model)
    for (k, ex, bs), recs in got.items():
        want = model.recommend(users, k, history=query, exclude_seen=ex, batch_size=bs)
        np.testing.assert_array_equal(recs.items, want.items)
        np.testing.assert_array_equal(_bits(recs.scores), _bits(want.scores))


def test_bpr_with_tied_item_vectors_ranks_ties_by_item_index(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    model, _ = _fitted("bpr")
    assert isinstance(model, BPR) and model.item_factors is not None
    model.item_factors = model.item_factors[np.arange(model.n_items) // 3].copy()  # triples
    model.item_factors[5] = np.nan  # a diverged item ranks last
    users = np.arange(model.n_users)
    recs = model.recommend(users, 12)
    tied = recs.scores[:, 1:] == recs.scores[:, :-1]
    assert tied.sum() > model.n_users and (np.diff(recs.items, axis=1)[tied] > 0).all()
    assert (recs.items != 5).all()
    _numpy_only(monkeypatch, model)
    want = model.recommend(users, 12)
    np.testing.assert_array_equal(recs.items, want.items)
    np.testing.assert_array_equal(_bits(recs.scores), _bits(want.scores))


@pytest.mark.parametrize("mask", ["known", "window", "none"])
def test_full_ranking_metrics_are_unchanged(mask: str, monkeypatch: pytest.MonkeyPatch) -> None:
    model, split = _fitted("sasrec")
    on_device = evaluate(model, split, ks=(1, 5, 10), mask=mask, mask_window=3)
    _numpy_only(monkeypatch, model)
    before = evaluate(model, split, ks=(1, 5, 10), mask=mask, mask_window=3)
    np.testing.assert_array_equal(on_device.ranked, before.ranked)
    assert on_device.metrics == before.metrics


def test_recommend_never_asks_for_the_whole_score_matrix(monkeypatch: pytest.MonkeyPatch) -> None:
    model, _ = _fitted("sasrec")

    def whole_matrix(*args: object, **kwargs: object) -> np.ndarray:
        raise AssertionError("the full score matrix came back to numpy")

    monkeypatch.setattr(model, "_scores_with_fallback", whole_matrix)
    monkeypatch.setattr(model, "score", whole_matrix)
    recs = model.recommend(np.arange(model.n_users), 5)
    assert recs.items.shape == (model.n_users, 5) and (recs.items >= 0).all()


def test_early_stopping_ranks_on_the_device_as_numpy_would() -> None:
    rng = np.random.default_rng(0)
    scores = _tied_scores(rng, 12, 15)
    users = np.arange(12)
    rows = [rng.choice(15, size=int(rng.integers(0, 6)), replace=False) for _ in users]
    rows[0] = np.array([3, 7])
    hist = UserHistory.from_rows(rows, 15)
    targets = rng.integers(0, 15, size=12)
    targets[0] = 7  # a target the user already has: masked, yet ranked by its own score
    masked = scores.copy()
    for row in users:
        masked[row, rows[row]] = -np.inf
    rank = (masked > scores[users, targets][:, None]).sum(axis=1)
    want = np.where(rank < 10, 1.0 / np.log2(rank + 2.0), 0.0).mean()
    assert ndcg_at_k(torch.from_numpy(scores), users, targets, hist) == want
