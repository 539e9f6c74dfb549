"""What an OpenAI-compatible server receives from the direct paradigm: the prompt docs/direct.md
shows, the instruction and the answer prefix each on its own line.

A tiny ``http.server`` on 127.0.0.1 records every request body; no model needed.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

pytest.importorskip("httpx", reason="httpx is not installed (http extra)")

INSTRUCTION = "Which candidate will the user choose next? Answer with its letter."
TOP = {f" {c}": -0.5 - i for i, c in enumerate("ABCDE")}


@pytest.fixture
def recording_server() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A server answering every ``/completions`` request with fixed top log-probs; yields its
    base URL and the list of JSON bodies it received."""
    bodies: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            logprobs = {"tokens": [" A"], "token_logprobs": [-0.5], "top_logprobs": [TOP]}
            data = json.dumps({"choices": [{"index": 0, "text": " A", "logprobs": logprobs}]})
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data.encode())

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1", bodies
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def _prompts_sent(url: str, bodies: list[dict[str, Any]], **options: Any) -> list[str]:
    """The prompts a verbaliser TwoStage sends through an OpenAILM while recommending."""
    from llmrec.data.splits import leave_one_out
    from llmrec.lm.openai import OpenAILM
    from llmrec.models.popularity import Popularity
    from llmrec.paradigms.direct import TwoStage, VerbaliserRanker
    from llmrec.testing import tiny_dataset

    split = leave_one_out(tiny_dataset())
    before = len(bodies)
    with OpenAILM(url, "m", timeout_s=5, **options) as lm:
        model = TwoStage(Popularity(), VerbaliserRanker(lm=lm), n_candidates=4).fit(split.train)
        model.recommend(split.test.active_users()[:2], k=4, history=split.known_at_test())
    return [str(body["prompt"]) for body in bodies[before:]]


def test_chat_server_scores_the_documented_plain_prompt(
    recording_server: tuple[str, list[dict[str, Any]]],
) -> None:
    url, bodies = recording_server
    sent = _prompts_sent(url, bodies)  # use_chat unset: a chat model behind the server
    assert sent
    for prompt in sent:
        lines = prompt.split("\n")
        assert lines[-2:] == [INSTRUCTION, "Answer:"], lines[-3:]
        assert lines[0].startswith("You are a recommender system.") and lines[1] == ""
        candidates = lines[lines.index("Candidates:") + 1 : -2]
        assert [c[:3] for c in candidates] == ["A. ", "B. ", "C. ", "D. "]
    # the same text a base model (no chat template) is sent; the client sends a batch's
    # requests concurrently, so the server receives them in any order
    assert sorted(_prompts_sent(url, bodies, use_chat=False)) == sorted(sent)
