"""A direct entry whose LM server stalls and then recovers: answers are degraded (the retriever's)
while it stalls, and the LM's again once it recovers — without restarting the service.

The LM is a real ``OpenAILM`` against a local server that trickles its answer a byte a second:
a per-read timeout never fires on it, so only a deadline for the whole request frees the
entry's worker thread."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from llmrec.data.dataset import Dataset
from tests.serve.lm_server import LMServer

pytestmark = [pytest.mark.server, pytest.mark.filterwarnings("ignore::DeprecationWarning")]
pytest.importorskip("httpx", reason="httpx is not installed (http extra)")
pytest.importorskip("fastapi", reason="the serve extra is not installed")

#: the LM request deadline (s) and the service's LM budget (ms): the budget answers first
LM_TIMEOUT_S = 1.5
BUDGET_MS = 500


@pytest.fixture
def lm_server() -> Iterator[LMServer]:
    with LMServer() as server:
        yield server


@pytest.fixture
def client(lm_server: LMServer, serve_data: Dataset, tmp_path: Path) -> Iterator[Any]:
    from fastapi.testclient import TestClient

    from llmrec.models.registry import create_model
    from llmrec.serve import load_service
    from llmrec.serve.app import create_app
    from llmrec.serve.config import validate_serve_config

    options = {"timeout_s": LM_TIMEOUT_S, "max_retries": 0, "use_chat": False}
    params = {
        "retriever": "itemknn",
        "n_candidates": 5,
        "ranker": {"kind": "verbaliser", "lm": f"openai:{lm_server.url}#m", "lm_options": options},
    }
    create_model("two_stage", params).fit(serve_data).save(tmp_path / "direct")
    config = validate_serve_config(
        {
            "dataset": "tiny",
            "entries": [{"name": "direct", "paradigm": "direct", "path": str(tmp_path / "direct")}],
            "lm_budget_ms": BUDGET_MS,
            "breaker_cooldown_ms": 200,
            "batching": {"window_ms": 0},
        }
    )
    with TestClient(create_app(load_service(config, data=serve_data))) as test_client:
        yield test_client


def _ask(client: Any, user: str) -> dict[str, Any]:
    r = client.post("/v1/recommend", json={"user_id": user, "k": 5})
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_the_entry_recovers_by_itself_when_its_lm_server_does(
    client: Any, lm_server: LMServer
) -> None:
    assert _ask(client, "u1")["degraded"] is False
    lm_server.trickling = True
    stalled = [_ask(client, user) for user in ("u2", "u3", "u4", "u5")]
    assert all(body["degraded"] for body in stalled)
    lm_server.trickling = False
    recovered = None
    deadline = time.monotonic() + 10 * LM_TIMEOUT_S
    while recovered is None and time.monotonic() < deadline:
        body = _ask(client, "u6")
        if not body["degraded"]:
            recovered = body
        time.sleep(0.1)
    assert recovered is not None, "the entry stayed degraded after its LM server recovered"
    assert len(recovered["items"]) == 5
    metrics = client.get("/metrics").text
    assert 'llmrec_fallbacks_total{entry="direct",reason="timeout"}' in metrics
