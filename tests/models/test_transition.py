"""Conformance and behaviour of the last-item transition baseline (the shortcut floor)."""

import numpy as np
import pandas as pd
import pytest

from llmrec.data.dataset import Dataset, UserHistory
from llmrec.errors import ConfigError
from llmrec.models.base import Recommender
from llmrec.models.catalogue import model_spec
from llmrec.models.registry import create_model
from llmrec.models.transition import Transition
from llmrec.testing import RecommenderConformance


class TestTransition(RecommenderConformance):
    def make_model(self):
        return Transition()


class TestMarkovWindow(RecommenderConformance):
    def make_model(self):
        return Transition(window=3, decay=0.5)


def sequences(rows: list[list[int]], n_items: int) -> Dataset:
    """One user per row, items in the row's order."""
    users = np.repeat(np.arange(len(rows)), [len(r) for r in rows])
    items = np.concatenate([np.asarray(r) for r in rows])
    stamps = np.concatenate([np.arange(len(r)) for r in rows])
    return Dataset(
        user_ids=np.array([f"u{u}" for u in range(len(rows))], dtype=object),
        item_ids=np.array([f"i{i}" for i in range(n_items)], dtype=object),
        users=users,
        items=items,
        timestamps=stamps,
        item_text=pd.DataFrame({"title": [f"t{i}" for i in range(n_items)]}),
        name="seq",
    )


#: 0 -> 1 twice, 0 -> 2 once; item 5 is the most popular and never follows 0; item 4 is a
#: dead end (nothing ever followed it)
TRAIN = [[0, 1, 5], [0, 1, 5], [0, 2, 5], [3, 5, 4], [5, 3]]


def test_recommends_what_most_often_followed_the_last_item():
    data = sequences(TRAIN, 7)
    model = Transition().fit(data)
    query = UserHistory.from_rows([[0]], 7)
    recs = model.recommend([0], 3, history=query).items[0].tolist()
    # 1 (twice after 0), then 2 (once); then ties broken by popularity: 5 is the most popular
    assert recs == [1, 2, 5]


def test_a_last_item_never_followed_falls_back_to_popularity():
    data = sequences(TRAIN, 7)
    model = Transition().fit(data)
    query = UserHistory.from_rows([[4]], 7)
    got = model.recommend([0], 6, history=query).items[0].tolist()
    pop = data.item_popularity()
    expected = [i for i in np.lexsort((np.arange(7), -pop)) if i != 4][:6]
    assert got == expected


def test_transitions_do_not_cross_users():
    # user 0 ends with 6 and user 1 starts with 0: 6 -> 0 is not a transition
    data = sequences([[1, 6], [0, 2]], 7)
    model = Transition().fit(data)
    assert model._counts is not None
    assert model._counts[6].nnz == 0
    assert model._counts[1, 6] == 1 and model._counts[0, 2] == 1


def test_window_smooths_over_the_last_items():
    data = sequences([[0, 1], [0, 1], [2, 3], [4], [4], [4]], 5)  # 4: the most popular
    query = UserHistory.from_rows([[2, 0]], 5)  # newest 0 -> 1; one step back 2 -> 3
    first = Transition().fit(data).recommend([0], 2, history=query).items[0].tolist()
    smooth = Transition(window=2).fit(data).recommend([0], 2, history=query).items[0].tolist()
    assert first == [1, 4]
    assert smooth == [1, 3]


def test_score_is_a_distinct_rank_per_item():
    data = sequences(TRAIN, 7)
    model = Transition().fit(data)
    scores = model.score(np.array([0, 3]), data.history())
    assert scores.shape == (2, 7) and scores.dtype == np.float32
    assert all(sorted(row.tolist()) == list(range(7)) for row in scores)


def test_registered_as_a_classic_model():
    assert isinstance(create_model("transition", {"window": 2}), Transition)
    assert model_spec("transition").paradigm == "classic"


def test_damaged_counts_are_refused_on_load(tmp_path):
    model = Transition().fit(sequences(TRAIN, 7))
    folder = model.save(tmp_path / "m")
    from safetensors.numpy import load_file, save_file

    state = load_file(str(folder / "state.safetensors"))
    state["model.counts.data"] = -state["model.counts.data"]
    save_file(state, str(folder / "state.safetensors"))
    with pytest.raises(ConfigError, match="counts"):
        Recommender.load(folder)
