"""A tiny service: five models of three paradigms, fitted on tiny data and saved once.

``pop`` (popularity), ``knn`` (item-kNN), ``bpr`` (user vectors: cannot serve new users),
``text-knn`` (embeddings, fake encoder) and ``lm-rerank`` (direct: item-kNN's top 10 re-ranked
by a verbaliser on the fake LM).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from llmrec.data.dataset import Dataset
from llmrec.models.registry import create_model
from llmrec.testing import tiny_dataset

ENTRIES: dict[str, tuple[str, str, dict[str, Any]]] = {
    "pop": ("classic", "popularity", {}),
    "knn": ("classic", "itemknn", {}),
    "bpr": ("classic", "bpr", {"epochs": 2}),
    "text-knn": ("embeddings", "textknn", {"encoder": "fake:16", "cache": False}),
    "lm-rerank": (
        "direct",
        "two_stage",
        {
            "retriever": "itemknn",
            "n_candidates": 10,
            "ranker": {
                "kind": "verbaliser",
                "lm": "fake",
                "prompt": {"profile_fields": ["gender", "age"]},
            },
        },
    ),
}


@pytest.fixture(scope="session")
def serve_data() -> Dataset:
    return tiny_dataset()


@pytest.fixture(scope="session")
def model_dirs(tmp_path_factory: pytest.TempPathFactory, serve_data: Dataset) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("served")
    out = {}
    for name, (_paradigm, model, params) in ENTRIES.items():
        fitted = create_model(model, params).fit(serve_data)
        out[name] = fitted.save(root / name)
    return out


@pytest.fixture(scope="session")
def serve_raw(model_dirs: dict[str, Path]) -> dict[str, Any]:
    """A serve config as a mapping (tests copy and change it)."""
    return {
        "dataset": "tiny",
        "entries": [
            {"name": name, "paradigm": ENTRIES[name][0], "path": str(path)}
            for name, path in model_dirs.items()
        ],
        "batching": {"window_ms": 30, "max_batch": 8, "max_queue": 64},
        "lm_budget_ms": 5000,
    }


@pytest.fixture
def make_service(serve_raw: dict[str, Any], serve_data: Dataset) -> Callable[..., Any]:
    """``make_service(**overrides)``: a fresh :class:`Service` (its own models)."""
    from llmrec.serve import load_service
    from llmrec.serve.config import validate_serve_config

    def make(**overrides: Any) -> Any:
        return load_service(validate_serve_config({**serve_raw, **overrides}), data=serve_data)

    return make


@pytest.fixture
def client_for(make_service: Callable[..., Any]) -> Iterator[Callable[..., Any]]:
    """``client_for(**overrides)``: a started FastAPI TestClient over a fresh service."""
    pytest.importorskip("fastapi", reason="the serve extra is not installed")
    from fastapi.testclient import TestClient

    from llmrec.serve.app import create_app

    clients: list[Any] = []

    def make(**overrides: Any) -> Any:
        service = make_service(**overrides)
        client = TestClient(create_app(service))
        client.__enter__()
        client.service = service  # type: ignore[attr-defined]
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)
