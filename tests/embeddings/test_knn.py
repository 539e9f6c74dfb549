"""Text-kNN: conformance, recency weighting, cold items, approximate index and its file."""

import numpy as np
import pandas as pd
import pytest

from llmrec.data.dataset import Dataset
from llmrec.data.splits import leave_one_out
from llmrec.models.base import Recommender
from llmrec.paradigms.embeddings.index import IndexConfig
from llmrec.paradigms.embeddings.knn import INDEX_FILE, TextKNN
from llmrec.testing import RecommenderConformance, tiny_dataset


class TestTextKNN(RecommenderConformance):
    def make_model(self):
        return TextKNN(encoder="fake:16", item_template="{title}. {genres}")


class TestTextKNNWithHNSW(RecommenderConformance):
    def make_model(self):
        return TextKNN(encoder="fake:16", index=IndexConfig(kind="hnsw", exact_max=0))


def genre_catalogue() -> Dataset:
    """Six items in two genres; user 0 saw two westerns, user 1 a western then two comedies.

    Item 5 (a western) has no interactions at all."""
    titles = [
        "dusty western trail",
        "western gunfight",
        "silly comedy",
        "comedy of errors",
        "comedy night",
        "lonely western sunset",
    ]
    return Dataset(
        user_ids=np.array(["a", "b"], dtype=object),
        item_ids=np.arange(6),
        users=np.array([0, 0, 1, 1, 1]),
        items=np.array([0, 1, 0, 2, 3]),
        timestamps=np.array([1, 2, 1, 2, 3]),
        item_text=pd.DataFrame({"title": titles}),
    )


def test_cold_item_with_matching_text_is_recommended():
    data = genre_catalogue()
    model = TextKNN(encoder="fake:32", cache=False).fit(data)
    assert data.item_popularity()[5] == 0
    recs = model.recommend([0], 1)
    assert recs.items[0, 0] == 5  # the unseen western, not a comedy


def test_recent_items_weigh_more():
    data = genre_catalogue()
    heavy = TextKNN(encoder="fake:32", recency_decay=0.2).fit(data)
    flat = TextKNN(encoder="fake:32", recency_decay=1.0).fit(data)
    users = np.array([1])
    hist = data.history()
    uv_heavy = heavy.user_vectors(users, hist)[0]
    uv_flat = flat.user_vectors(users, hist)[0]
    newest = heavy.item_vectors[3]
    assert uv_heavy @ newest > uv_flat @ newest
    mean = heavy.item_vectors[[0, 2, 3]].mean(axis=0)
    np.testing.assert_allclose(uv_flat, mean / np.linalg.norm(mean), atol=1e-5)


def test_approximate_index_matches_exact_scoring_on_top_items():
    split = leave_one_out(tiny_dataset(n_items=60))
    exact = TextKNN(encoder="fake:16").fit(split.train)
    approx = TextKNN(
        encoder="fake:16", index=IndexConfig(kind="hnsw", exact_max=0, ef_search=200)
    ).fit(split.train)
    assert exact.index is not None and len(exact.index) == 0
    assert approx.index is not None and approx.index.kind == "hnsw"
    users = split.test.active_users()
    a = exact.recommend(users, 5).items
    b = approx.recommend(users, 5).items
    assert (a == b).mean() > 0.9


def test_saved_index_file_is_read_back(tmp_path):
    split = leave_one_out(tiny_dataset())
    model = TextKNN(encoder="fake:16", index=IndexConfig(kind="ivf", exact_max=0, ivf_nlist=4))
    model.fit(split.train)
    folder = model.save(tmp_path / "m")
    assert (folder / INDEX_FILE).is_file()
    loaded = TextKNN.load(folder)
    assert isinstance(loaded, TextKNN) and loaded.index is not None and loaded.index.kind == "ivf"
    via_base = Recommender.load(folder)  # no file hook: the index is rebuilt on first use
    users = split.test.active_users()
    np.testing.assert_array_equal(
        loaded.recommend(users, 5).items, via_base.recommend(users, 5).items
    )


def test_fit_reports_encoding():
    model = TextKNN(encoder="fake:8", max_tokens=2).fit(tiny_dataset())
    assert model.fit_info["n_texts"] == 30
    assert model.fit_info["n_truncated"] == 30  # "Movie N. Drama" is more than two tokens


@pytest.mark.slow
def test_minilm_text_knn_prefers_the_users_genre():
    data = genre_catalogue()
    model = TextKNN(encoder="minilm-l6", cache=False).fit(data)
    recs = model.recommend([0, 1], 1)
    assert recs.items[0, 0] == 5
    assert recs.items[1, 0] == 4
