"""Every registered model refuses a damaged saved state with a one-line ConfigError.

For each array in ``state.safetensors``: dropped, cut short by one row, or stored with another
dtype, ``Recommender.load`` must raise :class:`ConfigError` naming the folder — never load
something that fails later at query time, never another exception.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from llmrec.data.splits import Split, leave_one_out
from llmrec.errors import ConfigError
from llmrec.models import MODELS, Recommender, create_model
from llmrec.testing import tiny_dataset

FAKE: dict[str, Any] = {"encoder": "fake:8"}
#: fast settings of every registered model
PARAMS: dict[str, dict[str, Any]] = {
    "popularity": {},
    "itemknn": {},
    "bpr": {"epochs": 1, "dim": 8},
    "sasrec": {"epochs": 1, "dim": 16, "max_len": 8},
    "transition": {"window": 2},
    "textknn": {**FAKE, "cache": False, "index": {"kind": "hnsw", "exact_max": 0}},
    "lm-sasrec": {**FAKE, "cache": False, "epochs": 1, "dim": 16, "max_len": 8},
    "user-tower": {**FAKE, "cache": False},
    "tiger": {**FAKE, "epochs": 1, "levels": 2},
    "token-sasrec": {**FAKE, "levels": 2, "epochs": 1, "dim": 16, "max_len": 8},
    "two_stage": {
        "retriever": "bpr",
        "ranker": {"kind": "verbaliser", "lm": "fake"},
        "n_candidates": 5,
    },
}


def test_every_registered_model_is_covered() -> None:
    assert set(PARAMS) == set(MODELS)


@pytest.fixture(scope="module")
def split() -> Split:
    return leave_one_out(tiny_dataset())


@pytest.fixture(scope="module")
def saved(split: Split, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("saved")
    return {
        name: create_model(name, params).fit(split.train, split.valid).save(root / name)
        for name, params in PARAMS.items()
    }


def _damaged(state: dict[str, np.ndarray], key: str, how: str) -> dict[str, np.ndarray] | None:
    out = dict(state)
    if how == "drop":
        del out[key]
    elif how == "cut":
        if out[key].ndim == 0 or len(out[key]) < 2:
            return None
        out[key] = out[key][:-1].copy()
    else:
        out[key] = out[key].astype(np.int8 if out[key].dtype.kind == "f" else np.float32)
    return out


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_damaged_state_is_refused(
    name: str, saved: dict[str, Path], split: Split, tmp_path: Path
) -> None:
    from safetensors.numpy import load_file, save_file

    folder = saved[name]
    state = load_file(str(folder / "state.safetensors"))
    for key in state:
        for how in ("drop", "cut", "dtype"):
            damaged = _damaged(state, key, how)
            if damaged is None:
                continue
            copy = Path(shutil.copytree(folder, tmp_path / f"{key}-{how}"))
            save_file(damaged, str(copy / "state.safetensors"))
            with pytest.raises(ConfigError) as info:
                Recommender.load(copy).recommend(split.test.active_users(), 5)
            assert str(copy) in str(info.value) and "\n" not in str(info.value), (key, how)


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_lying_sizes_are_refused(name: str, saved: dict[str, Path], tmp_path: Path) -> None:
    import json

    for field in ("n_items", "n_users"):
        copy = Path(shutil.copytree(saved[name], tmp_path / field))
        meta = json.loads((copy / "config.json").read_text())
        meta[field] += 1
        (copy / "config.json").write_text(json.dumps(meta))
        with pytest.raises(ConfigError, match=str(copy)):
            Recommender.load(copy)


#: folders saved by the format before composites saved children and texts as files
LEGACY = Path(__file__).resolve().parent / "legacy"


@pytest.mark.parametrize("name", ["two_stage", "user-tower"])
def test_folders_of_the_old_layout_still_load(name: str, split: Split, tmp_path: Path) -> None:
    """Texts inside uint8 tensors (and a two-stage's retriever arrays in its own state): the
    old reader loads them, and saving again writes the new layout with the same answers."""
    old = Recommender.load(LEGACY / name)
    users = split.test.active_users()
    before = old.recommend(users, 5).items
    resaved = old.save(tmp_path / name)
    assert (resaved / "texts.json").is_file()
    np.testing.assert_array_equal(Recommender.load(resaved).recommend(users, 5).items, before)


@pytest.mark.parametrize(
    ("name", "text", "needle"),
    [
        ("user-tower", None, "texts.json is missing"),
        ("user-tower", '{"titles": [1], "profiles": []}', "'titles' must be a list of strings"),
        ("user-tower", '{"titles": ["a"], "profiles": []}', "1 titles for"),
        ("user-tower", '["a"]', "JSON object"),
        ("user-tower", '{"titles": [', "texts.json"),
        ("two_stage", None, "texts.json is missing"),
        ("two_stage", '{"texts": [', "texts.json"),
    ],
)
def test_damaged_text_files_are_refused(
    name: str, text: str | None, needle: str, saved: dict[str, Path], tmp_path: Path
) -> None:
    copy = Path(shutil.copytree(saved[name], tmp_path / "copy"))
    if text is None:
        (copy / "texts.json").unlink()
    else:
        (copy / "texts.json").write_text(text)
    with pytest.raises(ConfigError) as info:
        Recommender.load(copy)
    message = str(info.value)
    assert str(copy) in message and needle in message and "\n" not in message, message
