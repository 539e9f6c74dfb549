"""A tiny OpenAI-compatible LM server for service tests: answers ``/completions`` label scoring
well, or trickles its answer a byte a second (a stalled server that never trips a per-read
timeout), switchable while it runs."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

#: every label of a verbaliser prompt not in here gets the backend's floor log-probability
TOP = {" A": -0.4, " B": -1.2, " C": -2.0}
ANSWER = json.dumps(
    {
        "choices": [{"index": 0, "text": " A", "logprobs": {"top_logprobs": [TOP]}}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 1},
    }
).encode()


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        owner = self.server.owner
        with owner.lock:
            owner.requests += 1
            trickling = owner.trickling
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(ANSWER)))
            self.end_headers()
            if not trickling:
                self.wfile.write(ANSWER)
                return
            for i in range(len(ANSWER)):  # a valid answer, one byte a second (minutes)
                self.wfile.write(ANSWER[i : i + 1])
                self.wfile.flush()
                if owner.closing.wait(1.0):
                    return
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up at its deadline

    def log_message(self, *args: Any) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    owner: LMServer


class LMServer:
    """``with LMServer() as lm: lm.url``; ``lm.trickling = True`` makes it stall."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests = 0
        self.trickling = False
        self.closing = threading.Event()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.owner = self
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def __enter__(self) -> LMServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.closing.set()  # ends trickling answers
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
