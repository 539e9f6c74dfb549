"""User-text tower: conformance, profile text for users without history."""

import numpy as np
import pandas as pd

from llmrec.data.dataset import Dataset
from llmrec.paradigms.embeddings.user_tower import UserTower
from llmrec.testing import RecommenderConformance, tiny_dataset


class TestUserTower(RecommenderConformance):
    def make_model(self):
        return UserTower(encoder="fake:16", history_items=3)


def profile_data() -> Dataset:
    titles = ["space rocket", "space station", "garden flowers", "garden roses"]
    return Dataset(
        user_ids=np.array(["astro", "gardener", "new"], dtype=object),
        item_ids=np.arange(4),
        users=np.array([0, 1]),
        items=np.array([0, 2]),
        timestamps=np.array([1, 1]),
        item_text=pd.DataFrame({"title": titles}),
        user_attrs=pd.DataFrame({"likes": ["space", "garden", "garden flowers"]}),
    )


def test_user_without_history_is_ranked_by_profile_not_popularity():
    data = profile_data()
    model = UserTower(encoder="fake:32", profile_template="{likes}").fit(data)
    recs = model.recommend([2], 2)
    assert set(recs.items[0]) == {2, 3}  # gardening items, though items 0 and 2 are as popular


def test_history_titles_enter_the_user_text():
    data = profile_data()
    model = UserTower(encoder="fake:32", profile_template="{likes}", history_items=1).fit(data)
    texts = model.user_texts(np.array([0, 2]), data.history())
    assert texts[0] == "space Recently liked: space rocket."
    assert texts[1] == "garden flowers"


def test_popularity_prior_moves_popular_items_up():
    data = tiny_dataset()
    plain = UserTower(encoder="fake:16").fit(data)
    primed = UserTower(encoder="fake:16", popularity_weight=5.0).fit(data)
    pop = data.item_popularity()
    users = np.arange(10)
    avg = [pop[m.recommend(users, 3).items].mean() for m in (plain, primed)]
    assert avg[1] > avg[0]
