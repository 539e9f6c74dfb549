"""Conformance and behaviour of the popularity and item-kNN baselines."""

import numpy as np

from llmrec.models.itemknn import ItemKNN
from llmrec.models.popularity import Popularity
from llmrec.testing import RecommenderConformance, tiny_dataset


class TestPopularity(RecommenderConformance):
    def make_model(self):
        return Popularity()


class TestItemKNN(RecommenderConformance):
    def make_model(self):
        return ItemKNN(neighbors=10)


def test_popularity_ranks_by_training_count():
    data = tiny_dataset()
    model = Popularity().fit(data)
    empty = data.with_interactions(np.zeros(0), np.zeros(0))
    recs = model.recommend([0], 3, history=empty)
    counts = data.item_popularity()
    assert list(recs.items[0]) == list(np.argsort(-counts, kind="stable")[:3])


def test_itemknn_recommends_from_the_users_half_of_the_catalogue():
    data = tiny_dataset()
    model = ItemKNN(neighbors=10).fit(data)
    recs = model.recommend(np.arange(data.n_users), 5)
    half = data.n_items // 2
    even = recs.items[0::2]
    odd = recs.items[1::2]
    assert (even < half).mean() > 0.9
    assert (odd >= half).mean() > 0.9


def test_itemknn_keeps_at_most_the_configured_neighbours():
    model = ItemKNN(neighbors=3).fit(tiny_dataset())
    assert np.diff(model._sim.indptr).max() <= 3


def test_top_k_breaks_ties_at_the_cut_by_item_index():
    data = tiny_dataset()
    model = Popularity().fit(data)
    empty = data.with_interactions(np.zeros(0), np.zeros(0))
    full = model.recommend([0], data.n_items, history=empty).items[0]
    for k in (1, 3, 7, 10):
        assert model.recommend([0], k, history=empty).items[0].tolist() == full[:k].tolist()
    counts = data.item_popularity()
    assert full.tolist() == np.lexsort((np.arange(data.n_items), -counts)).tolist()
