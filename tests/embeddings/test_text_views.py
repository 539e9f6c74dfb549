"""Item and user text views and token-based truncation."""

import numpy as np
import pandas as pd
import pytest

from llmrec.errors import DataError
from llmrec.lm.fake import FakeLM
from llmrec.paradigms.embeddings.text_views import ItemView, UserView, truncate_to_tokens
from llmrec.testing import tiny_dataset


def test_item_view_renders_template_and_fields():
    data = tiny_dataset()
    texts = ItemView(template="{title} | {genres}").render(data)
    assert texts[0] == "Movie 0 | Drama" and texts[-1].endswith("Comedy")
    assert ItemView(fields=["genres"]).render(data)[0] == "Drama"
    with pytest.raises(DataError, match="nope"):
        ItemView(template="{nope}").render(data)


def test_user_view_names_profile_and_newest_titles_first():
    data = tiny_dataset()
    view = UserView(profile_template="A {age}-year-old ({gender}).", history_items=2)
    profiles = view.profiles(data.user_attrs)
    titles = data.item_text["title"].tolist()
    hist = data.history()
    text = view.render(np.array([0]), profiles, titles, hist)[0]
    newest, previous = hist.of(0)[-1], hist.of(0)[-2]
    assert text.startswith("A 18-year-old (M).")
    assert text.index(titles[newest]) < text.index(titles[previous])
    assert text.count("Movie") == 2


def test_user_view_default_profile_and_empty_attributes():
    attrs = pd.DataFrame({"age": [30], "job": [None]})
    assert UserView().profiles(attrs) == ["age: 30."]
    assert UserView().profiles(pd.DataFrame(index=range(2))) == ["", ""]
    with pytest.raises(DataError, match="attribute"):
        UserView(profile_template="{zip}").profiles(attrs)


def test_truncation_cuts_by_tokens_and_counts():
    lm = FakeLM()
    texts = ["one two three", "a b c d e f g h i j", "x, y, z, w"]
    cut = truncate_to_tokens(texts, lm.count_tokens, 5)
    assert cut.n_truncated == 2
    assert cut.texts[0] == "one two three"
    assert all(n <= 5 for n in lm.count_tokens(cut.texts))
    assert cut.texts[1] == "a b c d e"
    assert cut.texts[2] == "x, y,"  # punctuation counts as tokens for this tokenizer
    np.testing.assert_array_equal(cut.n_tokens, [3, 10, 7])
