"""A compare run on tiny data with fast models, shared by the compare tests (run once)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from llmrec.compare import CompareConfig, run_compare
from llmrec.testing import tiny_dataset


def tiny_config(**overrides: Any) -> CompareConfig:
    """Classic models, the shortcut floor, an LM ranker on FakeLM, a fake-encoder text-kNN,
    one entry whose model is not registered and one whose params are invalid."""
    raw: dict[str, Any] = {
        "dataset": "tiny",
        "seed": 3,
        "eval": {"n_negatives": 9},
        "probes": {
            "sample_users": 12,
            "latency_users": 5,
            "probe_users": 8,
            "slots": [0, 5, 9],
            "fairness_attributes": ["gender"],
        },
        "validity": {"users": 6, "history_lengths": [2, 5]},
        "entries": [
            {"name": "pop", "paradigm": "classic", "model": "popularity"},
            {"name": "floor", "model": "transition"},
            {"name": "knn", "paradigm": "classic", "model": "itemknn"},
            {
                "name": "knn-cand",
                "paradigm": "classic",
                "model": "itemknn",
                "protocol": "candidates",
            },
            {
                "name": "text-knn",
                "paradigm": "embeddings",
                "model": "textknn",
                "params": {"encoder": "fake:16", "cache": False},
            },
            {
                "name": "lm-rerank",
                "paradigm": "direct",
                "model": "two_stage",
                "protocol": "two-stage",
                "sample": True,
                "params": {
                    "retriever": "itemknn",
                    "n_candidates": 10,
                    "ranker": {"kind": "verbaliser", "lm": "fake"},
                },
            },
            {"name": "missing", "paradigm": "tokens", "model": "no-such-model"},
            {
                "name": "broken",
                "paradigm": "classic",
                "model": "itemknn",
                "params": {"no_such_param": 1},
            },
        ],
    }
    raw.update(overrides)
    return CompareConfig.model_validate(raw)


@pytest.fixture(scope="session")
def tiny_compare(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished compare folder (records, compare.json) on tiny data."""
    out = tmp_path_factory.mktemp("compare") / "run"
    run_compare(tiny_config(), out, data=tiny_dataset())
    return out
