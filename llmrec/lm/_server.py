"""Start and stop a local llama-cpp-python OpenAI-compatible server (tests, benchmarks, service).

:class:`LlamaServer` runs ``python -m llama_cpp.server`` on ``127.0.0.1`` and a free port, in its
own process group, waits until ``/v1/models`` answers, and stops it (SIGTERM, then SIGKILL) on
``stop()``, on leaving a ``with`` block, on a failed start and at interpreter exit. The server's
output goes to a log file whose last lines are quoted when it fails to start.

Example::

    with LlamaServer("SmolLM2-135M-Instruct.Q4_1.gguf", n_threads=2) as server:
        lm = OpenAILM(server.base_url, server.model)
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from llmrec.errors import BackendError

__all__ = ["LlamaServer", "free_port"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LlamaServer:
    """A ``llama_cpp.server`` subprocess serving one GGUF file.

    Args:
        model_path: the ``.gguf`` file.
        model: the name clients send as ``model`` (``--model_alias``).
        n_threads: CPU threads of the server.
        n_ctx: context window in tokens.
        embedding: serve ``/v1/embeddings`` (llama.cpp returns token-level vectors for
            decoder models without a pooling head; :class:`~llmrec.lm.openai.OpenAILM` pools).
        chat_format: a llama-cpp-python chat format; ``None`` uses the GGUF's template.
        omp_wait_policy: ``OMP_WAIT_POLICY`` of the server process (``PASSIVE`` avoids the
            spin-wait collapse on shared cores; ``None`` leaves the inherited value).
        python: interpreter that has ``llama_cpp`` installed (default: this one).
        startup_timeout_s: seconds to wait for ``/v1/models``.
        log_path: where the server's output goes (default: a temporary file).
    """

    def __init__(
        self,
        model_path: str | Path,
        *,
        model: str = "local",
        n_threads: int = 2,
        n_ctx: int = 2048,
        embedding: bool = False,
        chat_format: str | None = None,
        omp_wait_policy: str | None = "PASSIVE",
        python: str | None = None,
        startup_timeout_s: float = 120.0,
        log_path: str | Path | None = None,
    ) -> None:
        self.model_path = Path(model_path)
        self.model = model
        self.port = free_port()
        self.host = "127.0.0.1"
        self._args = [
            python or sys.executable, "-m", "llama_cpp.server",
            "--model", str(self.model_path), "--model_alias", model,
            "--host", self.host, "--port", str(self.port),
            "--n_threads", str(n_threads), "--n_threads_batch", str(n_threads),
            "--n_ctx", str(n_ctx), "--embedding", str(embedding).lower(),
            "--logits_all", "true",
        ]  # fmt: skip
        if chat_format is not None:
            self._args += ["--chat_format", chat_format]
        self._omp = omp_wait_policy
        self._timeout = startup_timeout_s
        self.log_path = Path(log_path) if log_path else None
        self._own_log = log_path is None  # a temporary log is removed after a clean stop
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT/v1``: what :class:`OpenAILM` takes."""
        return f"http://{self.host}:{self.port}/v1"

    def start(self) -> LlamaServer:
        """Start the server and block until it answers; raises :class:`BackendError`."""
        if self._proc is not None:
            return self
        if not self.model_path.is_file():
            raise BackendError(f"GGUF file not found: {self.model_path}")
        if self.log_path is None:
            fd, name = tempfile.mkstemp(prefix="llmrec-llama-server-", suffix=".log")
            os.close(fd)
            self.log_path = Path(name)
        env = dict(os.environ)
        if self._omp is not None:
            env["OMP_WAIT_POLICY"] = self._omp
        with open(self.log_path, "wb") as log:
            self._proc = subprocess.Popen(
                self._args, stdout=log, stderr=subprocess.STDOUT, env=env,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip
        atexit.register(self.stop)
        try:
            self._wait_ready()
        except BaseException:
            self.stop(keep_log=True)
            raise
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self._timeout
        url = f"{self.base_url}/models"
        while time.monotonic() < deadline:
            assert self._proc is not None
            if self._proc.poll() is not None:
                raise BackendError(
                    f"llama.cpp server exited with code {self._proc.returncode}: {self._tail()}"
                )
            try:
                with urllib.request.urlopen(url, timeout=2) as answer:
                    if answer.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.25)
        raise BackendError(
            f"llama.cpp server not ready after {self._timeout:.0f} s: {self._tail()}"
        )

    def _tail(self, n_chars: int = 300) -> str:
        if self.log_path is None or not self.log_path.exists():
            return "(no log)"
        text = self.log_path.read_text(errors="replace").strip()
        tail = " | ".join(text[-n_chars:].splitlines()) or "(empty log)"
        return f"{tail} (log: {self.log_path})"

    def stop(self, timeout_s: float = 10.0, *, keep_log: bool = False) -> None:
        """Stop the server's process group; safe to call twice. A temporary log is removed
        unless ``keep_log``."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if self._own_log and not keep_log and self.log_path is not None:
            self.log_path.unlink(missing_ok=True)  # the server keeps its handle until it exits
        atexit.unregister(self.stop)
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    def crash(self) -> None:
        """SIGKILL the server's process group at once, as a crash would (fault tests); ``stop``
        still cleans up afterwards."""
        if self._proc is not None and self._proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._proc.pid, signal.SIGKILL)
            self._proc.wait()

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def __enter__(self) -> LlamaServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
