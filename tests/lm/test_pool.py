"""The LM pool: one shared instance per (spec, cache folder, options), injectable, clearable."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from llmrec.lm import FakeLM
from llmrec.lm.pool import LMPool, default_pool
from llmrec.paradigms.embeddings.encoder import EncoderConfig, TextEncoder
from llmrec.paradigms.tokens._ids import SemanticIDConfig, make_semantic_ids
from llmrec.runtime import split_legacy
from llmrec.testing import tiny_dataset


def test_one_instance_per_spec_and_options(tmp_path: Path) -> None:
    pool = LMPool()
    a = pool.get("fake:8")
    assert pool.get("fake:8") is a and len(pool) == 1
    assert pool.get("fake:8", seed=1) is not a
    assert pool.get("fake:8", lm_cache_dir=tmp_path) is not a
    pool.clear()
    assert len(pool) == 0 and pool.get("fake:8") is not a


def test_an_injected_instance_is_what_components_get() -> None:
    pool = LMPool()
    mine = FakeLM(dim=4, seed=7)
    pool.put(mine, "minilm-l6", lm_cache_dir=None)
    enc = TextEncoder(EncoderConfig(encoder="minilm-l6", cache=False), lm_pool=pool)
    vecs, _ = enc.encode(["a b", "c"])
    assert enc.lm is mine and vecs.shape == (2, 4)


def test_text_models_and_semantic_ids_share_the_encoder() -> None:
    pool = LMPool()
    data = tiny_dataset()
    make_semantic_ids(data, SemanticIDConfig(encoder="fake:8", levels=1), 0, lm_pool=pool)
    enc = TextEncoder(EncoderConfig(encoder="fake:8", cache=False), lm_pool=pool)
    assert len(pool) == 1 and enc.lm is pool.get("fake:8")
    assert enc.lm.stats.calls >= 1  # the semantic IDs' encode went through this instance


def test_the_default_pool_starts_empty_in_each_test() -> None:
    assert len(default_pool()) == 0
    TextEncoder(EncoderConfig(encoder="fake:8")).encode(["x"])
    assert len(default_pool()) == 1


def test_old_semantic_id_field_names_are_read(tmp_path: Path) -> None:
    old = {"text_template": "{title}", "lm_cache_dir": str(tmp_path), "encoder": "fake:8"}
    cfg = SemanticIDConfig.model_validate(old)
    assert cfg.item_template == "{title}" and cfg.cache
    # the folder is a runtime option now: a model built from the old config moves it there
    with pytest.warns(DeprecationWarning):
        _, moved = split_legacy(old, "old")
    assert moved == {"cache_dir": str(tmp_path)}
    assert SemanticIDConfig.model_validate({"lm_cache_dir": None}).cache is False
    texts = cfg.item_view().render(tiny_dataset())
    assert texts[0] == "Movie 0" and np.all([t.startswith("Movie") for t in texts])
