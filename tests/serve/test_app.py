"""The HTTP API through FastAPI's test client: answers, errors, limits, key, metrics, fallback."""

from __future__ import annotations

import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from llmrec.data.dataset import Dataset
from llmrec.lm.fake import FakeLM

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


class StuckLM(FakeLM):
    """A fake LM whose label scoring waits until ``release`` is set (at most 10 s)."""

    def __init__(self, release: threading.Event) -> None:
        super().__init__()
        self.release = release

    def score_next(self, prompt: str, labels: Any) -> Any:
        self.release.wait(10)
        return super().score_next(prompt, labels)


def _metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample of the Prometheus text (0 when absent)."""
    for line in text.splitlines():
        if not line.startswith(name + "{"):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0]))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


@pytest.mark.parametrize("paradigm", ["pop", "knn", "bpr", "embeddings", "direct"])
def test_a_known_user_gets_k_unseen_items_with_titles(
    client_for: Callable[..., Any], serve_data: Dataset, paradigm: str
) -> None:
    client = client_for()
    user = serve_data.user_ids[2]
    r = client.post("/v1/recommend", json={"user_id": user, "k": 4, "paradigm": paradigm})
    assert r.status_code == 200, r.text
    body = r.json()
    ids = [item["id"] for item in body["items"]]
    assert len(ids) == len(set(ids)) == 4
    seen = {serve_data.item_ids[i] for i in serve_data.history().of(2)}
    assert not set(ids) & seen
    assert all(item["title"].startswith("Movie ") for item in body["items"])
    scores = [item["score"] for item in body["items"]]
    assert scores == sorted(scores, reverse=True)
    assert body["degraded"] is False and body["user_id"] == user
    assert body["timings_ms"]["total"] >= body["timings_ms"]["model"] >= 0


def test_a_typed_history_is_served_and_the_id_model_says_it_cannot(
    client_for: Callable[..., Any], serve_data: Dataset
) -> None:
    client = client_for()
    history = [str(serve_data.item_ids[i]) for i in (0, 1, 2)]
    r = client.post("/v1/recommend", json={"history": history, "k": 5, "paradigm": "knn"})
    assert r.status_code == 200
    assert not {i["id"] for i in r.json()["items"]} & set(history)
    r = client.post(
        "/v1/recommend", json={"history": history, "paradigm": "direct", "profile": {"age": "30"}}
    )
    assert r.status_code == 200 and len(r.json()["items"]) == 10
    r = client.post("/v1/recommend", json={"history": history, "paradigm": "bpr"})
    assert r.status_code == 409
    assert "cannot serve a user it was not trained on" in r.json()["detail"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"user_id": "u1", "k": 0}, "k"),
        ({"user_id": "u1", "k": 101}, "k"),
        ({"user_id": "u1", "colour": "red"}, "colour"),
        ({"user_id": ["u1"]}, "user_id"),
        ({"history": ["i1"] * 1001}, "history"),
        ({"user_id": "u1", "profile": {"a": "x" * 201}}, "profile"),
    ],
)
def test_invalid_fields_get_422_naming_the_field(
    client_for: Callable[..., Any], body: dict[str, Any], field: str
) -> None:
    r = client_for(max_body_bytes=1_000_000).post("/v1/recommend", json=body)
    assert r.status_code == 422
    assert any(field in map(str, err["loc"]) for err in r.json()["detail"])


def test_neither_user_nor_history_is_422(client_for: Callable[..., Any]) -> None:
    r = client_for().post("/v1/recommend", json={"k": 3})
    assert r.status_code == 422 and "give user_id or history" in r.text


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"user_id": "nobody"}, "unknown user id"),
        ({"history": ["i1", "nothing"]}, "unknown item id"),
        ({"user_id": "u1", "paradigm": "tokens"}, "unknown paradigm or model 'tokens'"),
    ],
)
def test_unknown_ids_are_404_with_the_id(
    client_for: Callable[..., Any], body: dict[str, Any], needle: str
) -> None:
    r = client_for().post("/v1/recommend", json=body)
    assert r.status_code == 404 and needle in r.json()["detail"]


def test_items_users_and_paradigms(client_for: Callable[..., Any], serve_data: Dataset) -> None:
    client = client_for()
    item = client.get(f"/v1/items/{serve_data.item_ids[3]}").json()
    assert item["title"] == "Movie 3" and item["fields"]["genres"] == "Drama"
    assert client.get("/v1/items/nope").status_code == 404
    hits = client.get("/v1/items", params={"q": "movie 1", "limit": 3}).json()
    assert len(hits) == 3 and all("Movie 1" in h["title"] for h in hits)
    user = client.get(f"/v1/users/{serve_data.user_ids[0]}", params={"last": 3}).json()
    assert user["n_interactions"] == 8 and len(user["history"]) == 3
    assert user["profile"]["gender"] == "M"
    assert client.get("/v1/users", params={"limit": 4}).json() == list(serve_data.user_ids[:4])
    paradigms = {p["name"]: p for p in client.get("/v1/paradigms").json()}
    assert paradigms["bpr"]["serves_new_users"] is False
    assert paradigms["lm-rerank"]["calls_lm"] and paradigms["lm-rerank"]["degrades_to"]
    assert client.get("/healthz").json()["status"] == "ok"


def test_the_schema_carries_the_configured_limits(client_for: Callable[..., Any]) -> None:
    schema = client_for(max_k=42, max_history=7).get("/openapi.json").json()
    ref = schema["paths"]["/v1/recommend"]["post"]["requestBody"]["content"]["application/json"]
    name = ref["schema"]["$ref"].rsplit("/", 1)[1]
    props = schema["components"]["schemas"][name]["properties"]
    assert props["k"]["maximum"] == 42
    assert any(v.get("maxItems") == 7 for v in props["history"]["anyOf"])


def test_oversized_bodies_are_413(client_for: Callable[..., Any]) -> None:
    client = client_for(max_body_bytes=1024)
    r = client.post("/v1/recommend", json={"history": ["i1"] * 300})
    assert r.status_code == 413 and "1024 bytes" in r.json()["detail"]
    r = client.post(
        "/v1/recommend", content=b"{}", headers={"content-length": "", "content-type": "x"}
    )
    assert r.status_code in (411, 413)


def test_the_api_key_guards_v1_and_metrics_only(
    client_for: Callable[..., Any], serve_data: Dataset
) -> None:
    client = client_for(api_key="s3cret")
    body = {"user_id": serve_data.user_ids[0]}
    assert client.post("/v1/recommend", json=body).status_code == 401
    assert client.get("/metrics").status_code == 401
    bad = client.post("/v1/recommend", json=body, headers={"X-API-Key": "wrong"})
    assert bad.status_code == 401
    ok = client.post("/v1/recommend", json=body, headers={"Authorization": "Bearer s3cret"})
    assert ok.status_code == 200
    assert client.get("/v1/paradigms", headers={"X-API-Key": "s3cret"}).status_code == 200
    assert client.get("/healthz").status_code == 200
    assert client.get("/").status_code == 200


def test_a_failing_lm_degrades_to_the_retriever_and_is_counted(
    client_for: Callable[..., Any], serve_data: Dataset
) -> None:
    client = client_for()
    served = client.service.entry("lm-rerank")
    knn = client.post("/v1/recommend", json={"user_id": "u1", "k": 5, "paradigm": "knn"}).json()
    served.model.ranker._lm = FakeLM(fail_after=0)
    r = client.post("/v1/recommend", json={"user_id": "u1", "k": 5, "paradigm": "direct"})
    assert r.status_code == 200
    body = r.json()
    assert body["degraded"] is True and "LM backend failed" in body["degraded_reason"]
    assert [i["id"] for i in body["items"]] == [i["id"] for i in knn["items"]]
    metrics = client.get("/metrics").text
    assert _metric(metrics, "llmrec_fallbacks_total", entry="lm-rerank", reason="error") == 1
    assert _metric(metrics, "llmrec_requests_total", entry="lm-rerank", status="200") == 1


def test_a_slow_lm_is_cut_off_at_its_budget(client_for: Callable[..., Any]) -> None:
    release = threading.Event()
    client = client_for(lm_budget_ms=100)
    client.service.entry("lm-rerank").model.ranker._lm = StuckLM(release)
    try:
        r = client.post("/v1/recommend", json={"user_id": "u1", "paradigm": "direct"})
        assert r.status_code == 200 and r.json()["degraded"] is True
        assert "time budget of 100 ms" in r.json()["degraded_reason"]
        metrics = client.get("/metrics").text
        assert _metric(metrics, "llmrec_fallbacks_total", entry="lm-rerank", reason="timeout") == 1
    finally:
        release.set()


def test_concurrent_lm_requests_share_batches_and_metrics_count_them(
    client_for: Callable[..., Any], serve_data: Dataset
) -> None:
    client = client_for(batching={"window_ms": 200, "max_batch": 8, "max_queue": 64})
    users = list(serve_data.user_ids[:8])

    def ask(user: str) -> dict[str, Any]:
        r = client.post("/v1/recommend", json={"user_id": user, "k": 3, "paradigm": "direct"})
        assert r.status_code == 200
        return dict(r.json())

    with ThreadPoolExecutor(8) as pool:
        bodies = list(pool.map(ask, users))
    assert max(b["batch_size"] for b in bodies) > 1
    metrics = client.get("/metrics").text
    assert _metric(metrics, "llmrec_requests_total", entry="lm-rerank", status="200") == 8
    assert _metric(metrics, "llmrec_request_seconds_count", entry="lm-rerank") == 8
    # fewer model calls than requests, every request in one of them
    assert _metric(metrics, "llmrec_batch_size_count", entry="lm-rerank") < 8
    assert _metric(metrics, "llmrec_batch_size_sum", entry="lm-rerank") == 8
    assert _metric(metrics, "llmrec_lm_calls_total", entry="lm-rerank") >= 1


class CountingLM(FakeLM):
    """A fake LM recording how many prompts reach each of its calls."""

    def __init__(self) -> None:
        super().__init__()
        self.prompts_per_call: list[int] = []

    def score_next_batch(self, prompts: Any, labels: Any) -> Any:
        self.prompts_per_call.append(len(prompts))
        return super().score_next_batch(prompts, labels)


@pytest.mark.parametrize("n", [16, 24])
def test_concurrent_requests_reach_the_lm_as_one_batched_call_per_batch(
    client_for: Callable[..., Any], serve_data: Dataset, n: int
) -> None:
    batch = 8  # the service's max_batch and the ranker's auto batch on the CPU
    client = client_for(batching={"window_ms": 500, "max_batch": batch, "max_queue": 64})
    model = client.service.entry("lm-rerank").model
    assert model.ranker.batch_size == batch
    lm = CountingLM()
    model.ranker._lm = lm
    users = [serve_data.user_ids[i % serve_data.n_users] for i in range(n)]

    def ask(user: str) -> int:
        r = client.post("/v1/recommend", json={"user_id": user, "k": 3, "paradigm": "direct"})
        assert r.status_code == 200 and not r.json()["degraded"]
        return int(r.json()["batch_size"])

    with ThreadPoolExecutor(n) as pool:
        sizes = list(pool.map(ask, users))
    # every queued user of a service batch reaches the LM in the same call
    assert sum(lm.prompts_per_call) == n
    assert len(lm.prompts_per_call) <= -(-n // batch)
    # each service batch (s requests answered with batch_size s) is one LM call of s prompts
    per_size = Counter(sizes)
    assert sorted(lm.prompts_per_call) == sorted(
        size for size, count in per_size.items() for _ in range(count // size)
    )


def test_a_full_queue_answers_503_with_retry_after(client_for: Callable[..., Any]) -> None:
    release = threading.Event()
    client = client_for(
        batching={"window_ms": 0, "max_batch": 1, "max_queue": 1}, lm_budget_ms=60_000
    )
    client.service.entry("lm-rerank").model.ranker._lm = StuckLM(release)

    def ask(_i: int) -> Any:
        return client.post("/v1/recommend", json={"user_id": "u1", "paradigm": "direct"})

    with ThreadPoolExecutor(6) as pool:
        futures = [pool.submit(ask, i) for i in range(6)]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not any(
            f.done() and f.result().status_code == 503 for f in futures
        ):
            time.sleep(0.01)
        release.set()
        responses = [f.result() for f in futures]
    codes = sorted(r.status_code for r in responses)
    assert 503 in codes and 200 in codes and set(codes) <= {200, 503}
    r503 = next(r for r in responses if r.status_code == 503)
    assert r503.headers["retry-after"] == "1" and "queue is full" in r503.json()["detail"]
    metrics = client.get("/metrics").text
    assert _metric(metrics, "llmrec_rejected_total", entry="lm-rerank") == codes.count(503)


def test_position_bias_view_ranks_every_candidate_in_every_shift(
    client_for: Callable[..., Any],
) -> None:
    client = client_for()
    r = client.post("/v1/position-bias", json={"user_id": "u1", "paradigm": "direct", "shifts": 5})
    assert r.status_code == 200, r.text
    body = r.json()
    n = len(body["candidates"])
    assert n == 10 and len(body["shifts"]) == 5
    for shift in body["shifts"]:
        assert sorted(shift["slot"]) == list(range(n)) and sorted(shift["rank"]) == list(range(n))
    assert body["shifts"][1]["slot"][0] == (n - body["shifts"][1]["offset"]) % n
    r = client.post("/v1/position-bias", json={"user_id": "u1", "paradigm": "knn"})
    assert r.status_code == 409 and "direct paradigm" in r.json()["detail"]


def test_a_client_without_the_lifespan_still_answers_every_request(
    make_service: Callable[..., Any],
) -> None:
    from fastapi.testclient import TestClient

    from llmrec.serve.app import create_app

    client = TestClient(create_app(make_service()))  # no `with`: each request on a new loop
    for user in ("u1", "u2", "u3"):
        r = client.post("/v1/recommend", json={"user_id": user, "paradigm": "direct"})
        assert r.status_code == 200
