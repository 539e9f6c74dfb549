"""SASRec with LM item representations: conformance, whitening, items without interactions."""

import numpy as np
import pytest

from llmrec.data.splits import leave_one_out
from llmrec.models.base import Recommender
from llmrec.paradigms.embeddings.lm_sasrec import LMSASRec, whiten
from llmrec.testing import RecommenderConformance, tiny_dataset

SMALL = {"dim": 16, "n_heads": 1, "inner_dim": 32, "max_len": 8, "epochs": 4}


class TestLMSASRec(RecommenderConformance):
    def make_model(self):
        return LMSASRec(encoder="fake:16", **SMALL)


class TestLMSASRecTextOnly(RecommenderConformance):
    def make_model(self):
        return LMSASRec(encoder="fake:16", item_repr="text", whiten_dim=8, **SMALL)


def test_whitening_gives_identity_covariance():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((500, 6)) @ rng.standard_normal((6, 6)) + 3.0
    w = whiten(x)
    np.testing.assert_allclose(w.mean(axis=0), 0, atol=1e-4)
    np.testing.assert_allclose(np.cov(w.T), np.eye(6), atol=1e-2)  # eps shrinks tiny axes
    assert whiten(x, 2).shape == (500, 2)


@pytest.fixture(scope="module")
def cold_fit():
    """Items 0 and 1 are removed from training: they have text but no interactions."""
    data = tiny_dataset()
    split = leave_one_out(data)
    train = split.train.subset(~np.isin(split.train.items, [0, 1]))
    model = LMSASRec(encoder="fake:16", **SMALL).fit(train, split.valid)
    return model, train


def test_items_without_interactions_get_text_vectors_and_no_id(cold_fit):
    model, train = cold_fit
    table = model.net.item_emb.weight.detach().numpy()[1:]
    assert np.abs(table[[0, 1]]).sum() > 0
    mask = model.net.item_emb.id_mask.numpy()[1:, 0]
    assert mask[0] == 0 and mask[1] == 0 and mask[2:].all()
    # item 0's vector is its text's: items sharing its genre are closer than the others
    cos = table @ table[0] / (np.linalg.norm(table, axis=1) * np.linalg.norm(table[0]))
    half = train.n_items // 2
    assert cos[2:half].mean() > cos[half:].mean()


def test_plain_id_table_would_be_untrained_for_cold_items(cold_fit):
    model, _ = cold_fit
    ids = model.net.item_emb.ids.weight.detach().numpy()[1:]
    # the ID rows of cold items are masked out of the table, whatever they hold
    table = model.net.item_emb.weight.detach().numpy()[1:]
    text_only = (model.net.item_emb.adaptor(model.net.item_emb.text)).detach().numpy()[1:]
    np.testing.assert_allclose(table[:2], text_only[:2], atol=1e-6)
    assert not np.allclose(table[2:], text_only[2:])
    assert ids.shape == table.shape


def test_loaded_model_needs_no_encoder(cold_fit, tmp_path):
    model, train = cold_fit
    folder = model.save(tmp_path / "m")
    loaded = Recommender.load(folder)
    assert isinstance(loaded, LMSASRec)
    users = np.arange(5)
    np.testing.assert_allclose(
        model.score(users, train.history()), loaded.score(users, train.history()), atol=1e-5
    )
