"""SASRec over semantic-ID features: conformance, shared codes share parameters, tags."""

import numpy as np
import pytest

from llmrec.data.splits import leave_one_out
from llmrec.models.base import Recommender
from llmrec.paradigms.tokens.quantize import RQKMeans
from llmrec.paradigms.tokens.token_sasrec import TokenSASRec
from llmrec.testing import RecommenderConformance, tiny_dataset

FAST = {
    "encoder": "fake:16",
    "levels": 2,
    "codebook_size": 4,
    "max_len": 8,
    "dim": 16,
    "n_heads": 2,
    "inner_dim": 32,
    "dropout": 0.1,
    "attn_dropout": 0.1,
    "lr": 0.01,
    "batch_size": 32,
    "epochs": 5,
}


class TestTokenSASRec(RecommenderConformance):
    def make_model(self):
        return TokenSASRec(**FAST)


class TestTokenSASRecWithTags(RecommenderConformance):
    def make_model(self):
        tags = [["drama"] if i < 15 else ["comedy", "fun"] for i in range(30)]
        return TokenSASRec(**FAST, tags=tags)


@pytest.fixture(scope="module")
def split():
    return leave_one_out(tiny_dataset())


def shared_code_ids(n_items: int):
    """IDs where items 0 and 1 share every code (they differ only in the dedup digit)."""
    vectors = np.random.default_rng(0).standard_normal((n_items, 8))
    vectors[1] = vectors[0]
    ids = RQKMeans(levels=2, codebook_size=4).fit(vectors)
    assert (ids.codes[0, :-1] == ids.codes[1, :-1]).all()
    return ids


def test_items_with_the_same_codes_share_their_embedding(split):
    ids = shared_code_ids(split.train.n_items)
    model = TokenSASRec(**{**FAST, "id_embedding": False}, ids=ids).fit(split.train)
    table = model.net.item_emb.weight.detach().numpy()  # row i + 1 is item i
    np.testing.assert_allclose(table[1], table[2])
    assert not np.allclose(table[1], table[3])
    # parameters grow with the codebooks, not with the catalogue
    n_params = sum(p.numel() for p in model.net.item_emb.parameters())
    assert n_params == sum(ids.vocab_sizes[:-1]) * FAST["dim"]


def test_id_embedding_separates_items_that_share_codes(split):
    ids = shared_code_ids(split.train.n_items)
    model = TokenSASRec(**{**FAST, "id_embedding": True}, ids=ids).fit(split.train)
    table = model.net.item_emb.weight.detach().numpy()
    assert not np.allclose(table[1], table[2])


def test_an_item_never_trained_on_scores_like_its_code_twin(split):
    # item 1 never occurs in training; it shares all codes with item 0, which does
    ids = shared_code_ids(split.train.n_items)
    train = split.train.subset(split.train.items != 1)
    assert train.item_popularity()[0] > 0
    model = TokenSASRec(**{**FAST, "id_embedding": False}, ids=ids).fit(train)
    scores = model.score(np.arange(4), train.history())
    np.testing.assert_allclose(scores[:, 1], scores[:, 0], rtol=1e-5)
    assert np.ptp(scores[0]) > 0


def test_it_learns_the_users_half_of_the_catalogue(split):
    model = TokenSASRec(**{**FAST, "epochs": 40, "patience": 40}).fit(split.train, split.valid)
    users = split.test.active_users()
    recs = model.recommend(users, 5, history=split.known_at_test())
    half = split.train.n_items // 2
    own = np.where((users % 2 == 0)[:, None], recs.items < half, recs.items >= half)
    assert own.mean() > 0.7


def test_saved_model_keeps_codes_and_tags(split, tmp_path):
    tags = [["drama"] if i % 2 else [] for i in range(split.train.n_items)]
    model = TokenSASRec(**FAST, tags=tags).fit(split.train)
    loaded = Recommender.load(model.save(tmp_path / "m"))
    assert isinstance(loaded, TokenSASRec)
    np.testing.assert_array_equal(loaded.ids.codes, model.ids.codes)
    np.testing.assert_array_equal(loaded.tag_index, model.tag_index)
