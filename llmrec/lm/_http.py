"""The HTTP half of :class:`~llmrec.lm.openai.OpenAILM`: one POST with a deadline.

``timeout_s`` is a deadline, not a per-read timeout: a request ends within ``timeout_s`` seconds
of its start (connecting, sending, waiting, reading the answer to its last byte, and retries
with their backoff included), so a server that stalls, sends its headers and stops, or
trickles its answer a byte at a time costs at most ``timeout_s``. Connection errors, HTTP 429
and 5xx are retried at most ``max_retries`` times with exponential backoff while the deadline
leaves time for it. Every failure is one :class:`~llmrec.errors.BackendError` line naming the
URL and the cause. ``httpx`` is imported lazily (the ``http`` extra).
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from typing import Any

from llmrec.errors import BackendError, require

__all__ = ["DeadlineClient", "one_line"]


def one_line(text: str, limit: int = 200) -> str:
    """The first ``limit`` characters of ``text`` with whitespace runs as single spaces."""
    return " ".join(text[:limit].split())


class _Late(Exception):
    """The request's deadline passed (internal: :meth:`DeadlineClient.post` words the error)."""


class _Watchdog:
    """Shuts the socket of a streamed answer down at ``deadline``, so that a read blocked on a
    stalled or trickling server returns then, not after its own read timeout. ``fired`` tells
    whether it did. Answers without a socket (test transports) are left alone."""

    def __init__(self, response: Any, deadline: float) -> None:
        self.fired = False
        self._lock = threading.Lock()
        self._done = False
        stream = response.extensions.get("network_stream")
        sock = stream.get_extra_info("socket") if stream is not None else None
        self._timer: threading.Timer | None = None
        if isinstance(sock, socket.socket):
            self._timer = threading.Timer(
                max(0.0, deadline - time.monotonic()), self._fire, (sock,)
            )
            self._timer.daemon = True
            self._timer.start()

    def _fire(self, sock: socket.socket) -> None:
        with self._lock:
            if self._done:  # the answer was read in time: its socket may be back in the pool
                return
            self.fired = True
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def __enter__(self) -> _Watchdog:
        return self

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self._done = True
        if self._timer is not None:
            self._timer.cancel()


class DeadlineClient:
    """POSTs JSON to ``base_url`` and answers the JSON object, within a deadline per request.

    Args:
        base_url: the API root (``http://127.0.0.1:8080/v1``).
        api_key: sent as ``Authorization: Bearer``; ``None`` sends none.
        timeout_s: the deadline of each request, retries included (see the module docstring).
        max_retries: retries after the first attempt (connection errors, 429, 5xx).
        backoff_s: first retry delay; doubles each retry.
        concurrency: most connections open at once.
        transport: an httpx transport (tests inject one).
    """

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None,
        timeout_s: float,
        max_retries: int,
        backoff_s: float,
        concurrency: int,
        transport: Any = None,
    ) -> None:
        httpx: Any = require("httpx", "http")
        self._httpx = httpx
        self.base_url = base_url
        self.timeout_s, self.max_retries, self.backoff_s = timeout_s, max_retries, backoff_s
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(
            base_url=base_url,
            headers=headers,
            timeout=httpx.Timeout(timeout_s),
            limits=httpx.Limits(max_connections=concurrency),
            transport=transport,
        )

    def close(self) -> None:
        self._client.close()

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """The JSON object answered to ``POST path`` within the deadline (``timeout_s`` from
        now, retries included); retries, then one-line BackendError."""
        cfg = self
        url = f"{cfg.base_url}{path}"
        httpx = self._httpx
        deadline = time.monotonic() + cfg.timeout_s
        attempts = cfg.max_retries + 1
        why = ""
        for attempt in range(attempts):
            if attempt:
                pause = cfg.backoff_s * 2 ** (attempt - 1)
                if time.monotonic() + pause >= deadline:
                    raise BackendError(f"{url}: {why} after {attempt} attempt(s); no time left "
                                       f"for another within {cfg.timeout_s:g} s")  # fmt: skip
                time.sleep(pause)
            try:
                status, text = self._send(path, body, deadline)
            except _Late:
                raise BackendError(
                    f"{url} did not answer within {cfg.timeout_s:g} s (timeout_s: the deadline "
                    "of a request, retries included)"
                ) from None
            except httpx.ConnectError as exc:
                why = f"cannot connect ({one_line(str(exc)) or 'connection refused'})"
                continue
            except httpx.HTTPError as exc:
                why = f"transport error: {one_line(str(exc)) or type(exc).__name__}"
                continue
            if status == 429 or status >= 500:
                why = f"HTTP {status}: {one_line(text)}"
                continue
            if status >= 400:
                raise BackendError(f"{url} answered HTTP {status}: {one_line(text)}")
            return self._json(url, text)
        raise BackendError(f"{url}: {why} after {attempts} attempt(s)")

    def _send(self, path: str, body: dict[str, Any], deadline: float) -> tuple[int, str]:
        """(status, text) of one attempt, read to its end by ``deadline``, else :class:`_Late`.

        Every httpx timeout is the time left, which bounds connecting and a server that sends
        nothing; the answer is streamed and the clock checked after each piece, which bounds a
        trickle; the watchdog cuts a read that is still blocked when the deadline comes.
        """
        httpx = self._httpx
        left = deadline - time.monotonic()
        if left <= 0:
            raise _Late
        watchdog: _Watchdog | None = None
        try:
            with self._client.stream("POST", path, json=body, timeout=left) as answer:
                with _Watchdog(answer, deadline) as watchdog:
                    data = bytearray()
                    for piece in answer.iter_bytes():
                        data += piece
                        if time.monotonic() >= deadline:
                            raise _Late
                if watchdog.fired:
                    raise _Late
                return answer.status_code, data.decode("utf-8", errors="replace")
        except httpx.TimeoutException:
            raise _Late from None
        except httpx.HTTPError:
            if (watchdog is not None and watchdog.fired) or time.monotonic() >= deadline:
                raise _Late from None
            raise

    @staticmethod
    def _json(url: str, text: str) -> dict[str, Any]:
        try:
            data = json.loads(text)
        except json.JSONDecodeError:
            raise BackendError(f"{url} answered malformed JSON: {one_line(text)!r}") from None
        if not isinstance(data, dict):
            raise BackendError(f"{url} answered JSON that is not an object: {one_line(text)!r}")
        return data
