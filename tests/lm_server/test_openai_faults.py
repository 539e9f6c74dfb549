"""OpenAILM against misbehaving servers: each failure is one BackendError line, quickly.

The servers are tiny ``http.server`` instances on 127.0.0.1 run in a thread; no model needed.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from llmrec.errors import BackendError

pytestmark = pytest.mark.slow
httpx = pytest.importorskip("httpx", reason="httpx is not installed (http extra)")

Reply = Callable[[int], tuple[int, str]]  # request number -> (status, body)


@pytest.fixture
def fake_server() -> Iterator[Callable[[Reply, float], tuple[str, list[int]]]]:
    """Start a server answering every POST with ``reply(n)`` after ``delay_s``; returns its
    base URL and the list of request numbers it saw."""
    servers: list[ThreadingHTTPServer] = []

    def start(reply: Reply, delay_s: float = 0.0) -> tuple[str, list[int]]:
        seen: list[int] = []
        numbering = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                # concurrent requests must each get their own number, or two can share one
                with numbering:
                    n = len(seen)
                    seen.append(n)
                time.sleep(delay_s)
                status, body = reply(n)
                data = body.encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout test)

            def log_message(self, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/v1", seen

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def _lm(url: str, **options: Any) -> Any:
    from llmrec.lm.openai import OpenAILM

    return OpenAILM(url, "m", **{"timeout_s": 5.0, "backoff_s": 0.01, **options})


COMPLETION = json.dumps({"choices": [{"text": " hi", "index": 0}],
                         "usage": {"prompt_tokens": 3, "completion_tokens": 1}})  # fmt: skip


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # closed when the block ends: nothing listens


def test_server_down_is_one_error_after_bounded_retries() -> None:
    lm = _lm(f"http://127.0.0.1:{_closed_port()}/v1", max_retries=2, use_chat=False)
    with pytest.raises(BackendError) as info:
        lm.generate(["x"])
    message = str(info.value)
    assert "cannot connect" in message and "3 attempt" in message and "\n" not in message


def test_slow_server_times_out(fake_server: Any) -> None:
    url, seen = fake_server(lambda n: (200, COMPLETION), 3.0)
    lm = _lm(url, timeout_s=0.5, use_chat=False)
    with pytest.raises(BackendError, match=r"did not answer within 0\.5 s"):
        lm.generate(["x"])
    assert len(seen) == 1  # a read timeout is not retried


def test_malformed_json_is_one_clear_error(fake_server: Any) -> None:
    url, seen = fake_server(lambda n: (200, "<html>not json"), 0.0)
    lm = _lm(url, use_chat=False)
    with pytest.raises(BackendError, match=r"malformed JSON.*not json"):
        lm.generate(["x"])
    assert len(seen) == 1


def test_unexpected_shape_is_one_clear_error(fake_server: Any) -> None:
    url, _ = fake_server(lambda n: (200, json.dumps({"choices": []})), 0.0)
    with pytest.raises(BackendError, match="unexpected shape"):
        _lm(url, use_chat=False).score_next("x", [" A"])


def test_http_error_names_status_and_body_without_retry(fake_server: Any) -> None:
    body = json.dumps({"error": "model 'm' not found " + "x" * 500})
    url, seen = fake_server(lambda n: (404, body), 0.0)
    with pytest.raises(BackendError) as info:
        _lm(url, use_chat=False).generate(["x"])
    message = str(info.value)
    assert "HTTP 404" in message and "model 'm' not found" in message
    assert len(message) < 400 and len(seen) == 1


def test_5xx_and_429_are_retried_with_backoff(fake_server: Any) -> None:
    url, seen = fake_server(lambda n: (503, "busy") if n == 0 else (429, "slow down")
                            if n == 1 else (200, COMPLETION), 0.0)  # fmt: skip
    lm = _lm(url, max_retries=3, use_chat=False)
    assert lm.generate(["x"]) == [" hi"]
    assert len(seen) == 3
    assert lm.stats.generated_tokens == 1


def test_persistent_5xx_gives_up(fake_server: Any) -> None:
    url, seen = fake_server(lambda n: (500, "internal trouble"), 0.0)
    with pytest.raises(BackendError, match="HTTP 500: internal trouble after 2 attempt"):
        _lm(url, max_retries=1, use_chat=False).generate(["x"])
    assert len(seen) == 2


def test_a_failed_batch_returns_nothing(fake_server: Any) -> None:
    url, _ = fake_server(lambda n: (200, COMPLETION) if n != 2 else (400, "bad prompt"), 0.0)
    lm = _lm(url, use_chat=False, concurrency=2)
    with pytest.raises(BackendError, match="HTTP 400: bad prompt"):
        lm.generate(["a", "b", "c", "d"])
    assert lm.stats.generated_tokens == 0  # no partial counts from the failed call


def test_labels_below_top_n_get_the_documented_bound() -> None:
    from llmrec.lm.openai import OpenAILM

    top = {" A": -0.5, " B": -1.5, " C": -3.0}
    scores, missing = OpenAILM.labels_from_top(top, [" B", " Z", " A"])
    assert missing == 1
    assert scores[0] == pytest.approx(-1.5) and scores[2] == pytest.approx(-0.5)
    import math

    rest = 1 - sum(math.exp(v) for v in top.values())
    assert scores[1] == pytest.approx(math.log(min(math.exp(-3.0), rest)), rel=1e-5)
    assert scores[1] <= -3.0
