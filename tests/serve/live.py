"""A real uvicorn server in a background thread on 127.0.0.1 and a free port, for tests."""

from __future__ import annotations

import threading
import time
import urllib.request
from typing import Any

from llmrec.lm._server import free_port


class LiveServer:
    """``with LiveServer(app) as s: s.url`` — serves ``app`` until the block ends."""

    def __init__(self, app: Any) -> None:
        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_level="warning", access_log=False
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=1):
                    return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"the test server on {self.url} did not start")

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
