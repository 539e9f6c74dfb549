"""TwoStage on small catalogues: the LM ranks whatever candidates a user has, the users it could
not rank are counted, and a model whose LM ranked nobody says so; damaged saved texts are
one-line errors."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from safetensors.numpy import load_file, save_file

from llmrec.data.dataset import Dataset
from llmrec.data.splits import leave_one_out
from llmrec.errors import ConfigError
from llmrec.eval import evaluate
from llmrec.lm.fake import FakeLM
from llmrec.models.base import STATE_FILE, Recommender
from llmrec.models.popularity import Popularity
from llmrec.paradigms.direct import TwoStage, VerbaliserRanker
from llmrec.testing import tiny_dataset


class LastLabelLM(FakeLM):
    """Prefers the last candidate shown, and counts the prompts it scored."""

    def score_next_batch(self, prompts, labels):
        self._begin(prompts)
        out = np.full((len(prompts), len(labels)), -5.0, dtype=np.float32)
        out[:, -1] = -0.1
        return out


def _two_stage(n_candidates: int, lm: FakeLM | None = None) -> TwoStage:
    ranker = VerbaliserRanker(lm=lm if lm is not None else LastLabelLM())
    return TwoStage(Popularity(), ranker, n_candidates=n_candidates)


def test_all_candidates_fitting_the_catalogue_are_ranked_by_the_lm() -> None:
    """20 items, n_candidates=20: each user's unseen items are fewer than 20, and the LM must
    still rank them (it used to be skipped, and the retriever's metrics recorded as its own)."""
    split = leave_one_out(tiny_dataset(n_users=12, n_items=20))
    lm = LastLabelLM()
    model = _two_stage(20, lm).fit(split.train)
    users = split.test.active_users()
    recs = model.recommend(users, 5)
    alone = Popularity().fit(split.train).recommend(users, split.train.n_items).items
    assert lm.stats.calls == 2 and model.ranker.stats.users == len(users)  # batches of 8
    hist = split.train.history()
    for row, user in enumerate(users):
        unseen = split.train.n_items - len(np.unique(hist.of(int(user))))
        assert recs.items[row, 0] == alone[row, unseen - 1]  # the last candidate shown
    assert model.diagnostics() == {
        "users": len(users),
        "lm_ranked": len(users),
        "few_candidates": 0,
        "no_history": 0,
        "lm_ranked_none": 0,
    }
    result = evaluate(model, split, ks=(10,))
    assert result.violations["seen_items"] == 0 and result.violations["duplicates"] == 0


def test_users_with_fewer_unseen_items_are_ranked_on_those_in_one_call_per_width() -> None:
    data = _catalogue(n_items=6, histories=[[0, 1, 2], [0], [0, 1, 2], [3, 4]])
    lm = LastLabelLM()
    model = _two_stage(5, lm).fit(data)
    recs = model.recommend(np.arange(4), 5)
    assert lm.stats.calls == 3  # one batch per number of candidates: 5, 4 and 3
    assert model.ranker.stats.candidates == 3 + 5 + 3 + 4
    for row in range(4):
        got = recs.items[row][recs.items[row] >= 0]
        assert not set(got.tolist()) & set(data.history().of(row).tolist())
    assert model.diagnostics()["lm_ranked"] == 4


def test_a_user_with_one_candidate_or_no_history_falls_back_and_is_counted() -> None:
    data = _catalogue(n_items=3, histories=[[0, 1], [0], []])
    lm = LastLabelLM()
    model = _two_stage(20, lm).fit(data)
    recs = model.recommend(np.arange(3), 3)
    assert lm.stats.calls == 1  # user 1 alone: two unseen items
    assert recs.items[0].tolist() == [2, -1, -1]
    assert model.diagnostics() == {
        "users": 3,
        "lm_ranked": 1,
        "few_candidates": 1,
        "no_history": 1,
        "lm_ranked_none": 0,
    }


def test_a_model_whose_lm_ranked_nobody_warns_once_and_flags_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    data = _catalogue(n_items=2, histories=[[0], [1], [0]])
    lm = LastLabelLM()
    model = _two_stage(20, lm).fit(data)
    with caplog.at_level(logging.WARNING, logger="llmrec.paradigms.direct.two_stage"):
        model.recommend(np.arange(3), 1)
        model.recommend(np.arange(3), 1)
    assert lm.stats.calls == 0
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1
    assert "the LM has ranked none of the 3 users" in warnings[0]
    assert "fewer than 2 unseen candidates" in warnings[0]
    assert model.diagnostics()["lm_ranked_none"] == 1
    assert model.diagnostics()["few_candidates"] == 6


def test_the_candidate_protocol_counts_every_user_as_lm_ranked() -> None:
    split = leave_one_out(tiny_dataset())
    model = _two_stage(8).fit(split.train)
    model.score_candidates(np.arange(4), np.tile(np.arange(5), (4, 1)))
    assert model.diagnostics()["lm_ranked"] == 4 and model.diagnostics()["users"] == 4


def test_saved_texts_are_read_back_exactly(tmp_path: Path) -> None:
    """The texts blob is JSON bytes; titles outside ASCII and quotes read back whole."""
    titles = ["Amélie (2001)", 'Das "Boot"', "東京物語", "Movie 3"]
    data = _catalogue(n_items=4, histories=[[0, 1], [2], [3, 0]])
    data.item_text["title"] = titles
    model = _two_stage(3, FakeLM()).fit(data)
    loaded = Recommender.load(model.save(tmp_path / "m"))
    assert isinstance(loaded, TwoStage) and loaded._texts == model._texts
    assert loaded.ranker.item_texts == model.ranker.item_texts


@pytest.mark.parametrize(
    ("blob", "needle"),
    [
        (b"\xff\xfe not utf-8", "texts.json"),
        (b'{"texts": ["a", ', "texts.json"),
        (b'{"texts": [1, 2], "profiles": []}', "texts.0"),
        (b'{"texts": "abc", "profiles": []}', "texts"),
        (b'["a", "b"]', "JSON object"),
        (b'{"texts": ["a"], "profiles": []}', "1 item texts for a catalogue of 30 items"),
        (None, "texts.json is missing"),
    ],
)
def test_damaged_saved_texts_are_one_line_errors(
    tmp_path: Path, blob: bytes | None, needle: str
) -> None:
    split = leave_one_out(tiny_dataset())
    folder = _two_stage(8, FakeLM()).fit(split.train).save(tmp_path / "m")
    if blob is None:
        (folder / "texts.json").unlink()
    else:
        (folder / "texts.json").write_bytes(blob)
    _assert_one_line(folder, needle)


def test_a_saved_two_stage_keeps_its_retriever_in_a_sub_folder(tmp_path: Path) -> None:
    """The retriever saves and loads itself (``retriever/``); a missing or foreign one is a
    one-line error."""
    split = leave_one_out(tiny_dataset())
    folder = _two_stage(8, FakeLM()).fit(split.train).save(tmp_path / "m")
    loaded = Recommender.load(folder)
    assert isinstance(loaded, TwoStage)
    assert isinstance(loaded.retriever, type(Recommender.load(folder / "retriever")))
    other = _catalogue(n_items=4, histories=[[0, 1], [2], [3, 0]])
    foreign = Path(shutil.copytree(folder, tmp_path / "foreign"))
    shutil.rmtree(foreign / "retriever")
    Popularity().fit(other).save(foreign / "retriever")
    _assert_one_line(foreign, "retriever")
    shutil.rmtree(folder / "retriever")
    _assert_one_line(folder, "retriever is missing")


LEGACY = Path(__file__).resolve().parents[1] / "models" / "legacy" / "two_stage"


@pytest.mark.parametrize(
    ("blob", "needle"),
    [
        (b"\xff\xfe not utf-8", "texts_json"),
        (b'{"texts": ["a", ', "texts_json"),
        (b'{"texts": [1, 2], "profiles": []}', "texts.0"),
        (b'["a", "b"]', "texts_json"),
        (b'{"texts": ["a"], "profiles": []}', "1 item texts for a catalogue of 30 items"),
        (None, "lacks the array 'texts_json'"),
    ],
)
def test_damaged_old_layout_texts_are_one_line_errors(
    tmp_path: Path, blob: bytes | None, needle: str
) -> None:
    """Folders saved before the retriever got its own sub-folder (everything in the state
    tensors; ``tests/models/legacy`` was saved by that version) still load, and their damage
    reads as before."""
    folder = Path(shutil.copytree(LEGACY, tmp_path / "m"))
    state = load_file(str(folder / STATE_FILE))
    if blob is None:
        del state["model.texts_json"]
    else:
        state["model.texts_json"] = np.frombuffer(blob, dtype=np.uint8).copy()
    save_file(state, str(folder / STATE_FILE))
    _assert_one_line(folder, needle)


def _assert_one_line(folder: Path, needle: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Recommender.load(folder)
    message = str(caught.value)
    assert needle in message and "\n" not in message, message


def _catalogue(n_items: int, histories: list[list[int]]) -> Dataset:
    """A dataset of ``len(histories)`` users with exactly these items, in order."""
    users = [u for u, items in enumerate(histories) for _ in items]
    items = [i for row in histories for i in row]
    return Dataset(
        user_ids=np.array([f"u{u}" for u in range(len(histories))], dtype=object),
        item_ids=np.array([f"i{i}" for i in range(n_items)], dtype=object),
        users=np.array(users, dtype=np.int32),
        items=np.array(items, dtype=np.int32),
        timestamps=np.arange(len(items), dtype=np.int64),
        item_text=pd.DataFrame({"title": [f"Movie {i}" for i in range(n_items)]}),
        name="small",
    )


def test_candidates_are_the_retrievers_best_unseen_items_padded() -> None:
    split = leave_one_out(tiny_dataset(n_users=12, n_items=20))
    model = _two_stage(5).fit(split.train)
    users, hist = split.test.active_users(), split.train.history()
    alone = Popularity().fit(split.train).recommend(users, 8, history=hist).items
    assert model.candidates(users, hist, 8).tolist() == alone.tolist()
    small = _two_stage(2).fit(_catalogue(4, [[0, 1, 2], [3]]))
    got = small.candidates(np.array([0]), small.fit_history(), 3)
    assert got.tolist() == [[3, -1, -1]]  # one unseen item, then padding


def test_with_ranker_shares_the_fitted_retriever_and_counts_apart() -> None:
    split = leave_one_out(tiny_dataset(n_users=12, n_items=20))
    model = _two_stage(5).fit(split.train)
    users, hist = split.test.active_users()[:4], split.train.history()
    before = model.recommend(users, 5, history=hist).items
    same = model.with_ranker()
    assert same.retriever is model.retriever and same.ranker is model.ranker
    assert same.recommend(users, 5, history=hist).items.tolist() == before.tolist()
    three = model.with_ranker(VerbaliserRanker(lm=LastLabelLM()).fit(split.train), n_candidates=3)
    got = three.recommend(users, 5, history=hist).items
    top = model.candidates(users, hist, 5)
    # the LM puts the last of the retriever's top 3 first; 4th and 5th keep their places
    assert got.tolist() == top[:, [2, 0, 1, 3, 4]].tolist()
    assert model.diagnostics()["users"] == len(users)  # the copies counted their own users
    with pytest.raises(ConfigError) as caught:
        model.with_ranker(n_candidates=27)
    assert "n_candidates" in str(caught.value) and "\n" not in str(caught.value)
