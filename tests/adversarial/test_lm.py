"""Hostile LM servers and damaged LM caches: each fault is one BackendError line (or one
``llmrec: error:`` line), ends within the deadline, and leaves no poisoned row in the cache —
once the server is fixed, real requests are made again and their answers cached.

The server is a threaded ``http.server`` on 127.0.0.1 (port 0) speaking just enough of the
OpenAI API; each test sets how it misbehaves, then fixes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from llmrec.errors import BackendError
from llmrec.lm.base import LanguageModel
from llmrec.lm.cache import DB_NAME, CachedLM, CacheError

pytest.importorskip("httpx", reason="httpx is not installed (http extra)")

LABELS = [" A", " B", " C"]
PROMPT = 'Candidates:\nA. "x"\nB. "y"\nC. "z"\nAnswer:'
TOP = '{" A": -0.5, " B": -1.5, " C": -2.5}'
DIM = 4
#: longest a deadline test may take with timeout_s=1 (generous: the machine is shared)
BOUND_S = 6.0

Behaviour = Callable[["_Handler", str, dict[str, Any]], None]


# --- the fake server -----------------------------------------------------------------------------
class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
        owner = self.server.owner
        with owner.lock:
            owner.requests.append((self.path.removeprefix("/v1"), body))
            behaviour = owner.behaviour
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # a client gave up
            behaviour(self, self.path.removeprefix("/v1"), body)

    def send(self, text: str | bytes, status: int = 200, kind: str = "application/json") -> None:
        data = text.encode() if isinstance(text, str) else text
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    owner: FakeOpenAI


class FakeOpenAI:
    """An OpenAI-compatible server whose ``behaviour`` answers each POST; ``requests`` holds
    (path, JSON body) of every request received."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self.behaviour: Behaviour = good
        self.stopping = threading.Event()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.owner = self
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def set(self, behaviour: Behaviour) -> None:
        with self.lock:
            self.behaviour = behaviour

    def fix(self) -> int:
        """Answer well from now on; returns the requests seen so far."""
        self.set(good)
        with self.lock:
            return len(self.requests)

    def close(self) -> None:
        self.stopping.set()  # releases stalled and trickling handlers
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def _completion(top: str = TOP, token_logprobs: str = "[-0.5]", usage: str = "") -> str:
    usage = usage or '{"prompt_tokens": 5, "completion_tokens": 1}'
    return (
        '{"choices": [{"index": 0, "text": " A", "logprobs": {"tokens": [" A"], '
        f'"token_logprobs": {token_logprobs}, "top_logprobs": [{top}], "text_offset": [0]}}}}], '
        f'"usage": {usage}}}'
    )


def _vector(text: str) -> list[float]:
    digest = hashlib.sha256(text.encode()).digest()
    return [float(b) / 255.0 + 0.1 for b in digest[:DIM]]


def good(h: _Handler, path: str, body: dict[str, Any]) -> None:
    """A well-behaved server: the same top log-probs for every prompt, a fixed chat answer,
    hashed 4-d embeddings and per-character echo log-probs."""
    if path == "/embeddings":
        data = [{"index": i, "embedding": _vector(t)} for i, t in enumerate(body["input"])]
        h.send(json.dumps({"data": data}))
    elif path == "/chat/completions":
        h.send(json.dumps({"choices": [{"index": 0, "message": {"content": "A, B"}}]}))
    elif body.get("echo"):
        text = body["prompt"]
        logprobs = {"tokens": list(text), "text_offset": list(range(len(text))),
                    "token_logprobs": [None] + [-0.1] * (len(text) - 1)}  # fmt: skip
        h.send(json.dumps({"choices": [{"index": 0, "text": "", "logprobs": logprobs}]}))
    else:
        h.send(_completion())


def reply(text: str | bytes, status: int = 200, kind: str = "application/json") -> Behaviour:
    return lambda h, path, body: h.send(text, status, kind)


def trickle(h: _Handler, path: str, body: dict[str, Any]) -> None:
    """A whole, valid answer, one byte a second."""
    data = _completion().encode()
    h.send_response(200)
    h.send_header("Content-Type", "application/json")
    h.send_header("Content-Length", str(len(data)))
    h.end_headers()
    for i in range(len(data)):
        h.wfile.write(data[i : i + 1])
        h.wfile.flush()
        if h.server.owner.stopping.wait(1.0):
            return


def stall(h: _Handler, path: str, body: dict[str, Any]) -> None:
    """Accept the request and never answer."""
    h.server.owner.stopping.wait(60)


def headers_then_stall(h: _Handler, path: str, body: dict[str, Any]) -> None:
    h.send_response(200)
    h.send_header("Content-Type", "application/json")
    h.send_header("Content-Length", "400")
    h.end_headers()
    h.wfile.write(b'{"choices": [')
    h.wfile.flush()
    h.server.owner.stopping.wait(60)


def hang_up(h: _Handler, path: str, body: dict[str, Any]) -> None:
    """Close the connection without a word."""
    h.close_connection = True


@pytest.fixture
def server() -> Iterator[FakeOpenAI]:
    srv = FakeOpenAI()
    yield srv
    srv.close()


def _lm(server: FakeOpenAI, cache: Path, **options: Any) -> CachedLM:
    from llmrec.lm.openai import OpenAILM

    settings = {"timeout_s": 1.0, "max_retries": 0, "backoff_s": 0.01, "use_chat": False}
    return CachedLM(OpenAILM(server.url, "m", **{**settings, **options}), cache)


def _rows(cache: Path) -> list[bytes]:
    """Every value stored in the cache folder's SQLite file, read without llmrec."""
    with sqlite3.connect(cache / DB_NAME) as db:
        return [bytes(v) for (v,) in db.execute("SELECT value FROM answers")]


def _refused(call: Callable[[], object], *fragments: str) -> str:
    """``call()`` raised one BackendError line naming every fragment, within BOUND_S."""
    start = time.monotonic()
    with pytest.raises(BackendError) as info:
        call()
    assert time.monotonic() - start < BOUND_S
    message = str(info.value)
    assert "\n" not in message and len(message) < 600, message
    for fragment in fragments:
        assert fragment.lower() in message.lower(), f"{fragment!r} not in {message!r}"
    return message


def _recovers(server: FakeOpenAI, lm: CachedLM, call: Callable[[], object]) -> None:
    """Once the server is fixed, ``call`` makes real requests and caches finite rows."""
    seen = server.fix()
    call()
    assert len(server.requests) > seen
    rows = _rows(Path(lm.path).parent)
    assert rows and all(np.isfinite(np.frombuffer(r, np.float32)).all() for r in rows)


def _score(lm: LanguageModel) -> Callable[[], object]:
    return lambda: lm.score_next_batch([PROMPT], LABELS)


# --- log-probabilities that are not finite numbers <= 0 ----------------------------------------
@pytest.mark.parametrize(
    ("top", "shown"),
    [
        ('{" A": NaN, " B": -1.5}', "nan"),
        ('{" A": -Infinity, " B": -1.5}', "-inf"),
        ('{" A": 1e999, " B": -1.5}', "inf"),
        ('{" A": -1e999, " B": -1.5}', "-inf"),
        ('{" A": 0.5, " B": -1.5}', "0.5"),
        ('{" A": "-0.5", " B": -1.5}', "string"),
        ('{" A": null, " B": -1.5}', "null"),
        ('{" A": true, " B": -1.5}', "boolean"),
        ('{" A": [-0.5], " B": -1.5}', "a list"),
    ],
    ids=[
        "nan",
        "minus-infinity",
        "1e999",
        "minus-1e999",
        "positive",
        "string",
        "null",
        "bool",
        "list-value",
    ],
)
def test_bad_logprob_is_refused_and_not_cached(
    server: FakeOpenAI, tmp_path: Path, top: str, shown: str
) -> None:
    server.set(reply(_completion(top)))
    lm = _lm(server, tmp_path)
    _refused(_score(lm), "top_logprobs[0][' A']", shown)
    assert _rows(tmp_path) == []
    _recovers(server, lm, _score(lm))


def test_logprob_beyond_float32_range_is_refused(server: FakeOpenAI, tmp_path: Path) -> None:
    # finite in JSON and in Python, -inf once stored as float32
    server.set(reply(_completion('{" A": -1e300, " B": -1.5}')))
    lm = _lm(server, tmp_path)
    _refused(_score(lm), "top_logprobs[0][' A'] is -1e+300", "float32")
    assert _rows(tmp_path) == []
    _recovers(server, lm, _score(lm))


def test_top_logprobs_as_a_list_of_objects_is_refused(server: FakeOpenAI, tmp_path: Path) -> None:
    # the chat endpoint's format, [{"token": ..., "logprob": ...}], today an AttributeError
    server.set(reply(_completion('[{"token": " A", "logprob": -0.5}]')))
    lm = _lm(server, tmp_path)
    _refused(_score(lm), "top_logprobs[0] is a list")
    assert _rows(tmp_path) == []
    _recovers(server, lm, _score(lm))


def test_missing_logprobs_field_is_refused(server: FakeOpenAI, tmp_path: Path) -> None:
    server.set(reply('{"choices": [{"index": 0, "text": " A"}]}'))
    lm = _lm(server, tmp_path)
    _refused(_score(lm), "unexpected shape", "logprobs")
    assert _rows(tmp_path) == []


def test_empty_top_logprobs_is_refused(server: FakeOpenAI, tmp_path: Path) -> None:
    server.set(reply(_completion("{}")))
    lm = _lm(server, tmp_path)
    _refused(_score(lm), "no top logprobs")
    assert _rows(tmp_path) == []


def test_usage_count_as_string_is_refused(server: FakeOpenAI, tmp_path: Path) -> None:
    server.set(reply(_completion(usage='{"prompt_tokens": "five"}')))
    lm = _lm(server, tmp_path)
    _refused(_score(lm), "usage.prompt_tokens")
    assert _rows(tmp_path) == []


def test_echo_logprob_nan_is_refused_for_loglikelihood(server: FakeOpenAI, tmp_path: Path) -> None:
    def nan_echo(h: _Handler, path: str, body: dict[str, Any]) -> None:
        n = len(body["prompt"])
        h.send('{"choices": [{"index": 0, "text": "", "logprobs": {"tokens": '
               f'{json.dumps(list(body["prompt"]))}, "text_offset": {list(range(n))}, '
               f'"token_logprobs": [null{", NaN" * (n - 1)}]}}}}]}}')  # fmt: skip

    server.set(nan_echo)
    lm = _lm(server, tmp_path, prompt_logprobs="trust")
    call = lambda: lm.loglikelihood("The answer is", [" yes", " no"])  # noqa: E731
    _refused(call, "token_logprobs", "nan")
    assert _rows(tmp_path) == []
    _recovers(server, lm, call)


# --- answers that are not JSON, or not whole ---------------------------------------------------
@pytest.mark.parametrize(
    ("body", "kind"),
    [
        ("<html><body>502 Bad Gateway</body></html>", "text/html"),
        ('{"choices": [{"index": 0, "text": " A", "logpro', "application/json"),
        ("", "application/json"),
        ("[1, 2, 3]", "application/json"),
    ],
    ids=["html", "truncated-json", "empty-200", "json-array"],
)
def test_answer_that_is_not_a_json_object_is_refused(
    server: FakeOpenAI, tmp_path: Path, body: str, kind: str
) -> None:
    server.set(reply(body, kind=kind))
    lm = _lm(server, tmp_path)
    _refused(_score(lm), "/completions answered")
    assert _rows(tmp_path) == []
    _recovers(server, lm, _score(lm))


def test_connection_closed_without_answer_is_refused(server: FakeOpenAI, tmp_path: Path) -> None:
    server.set(hang_up)
    lm = _lm(server, tmp_path, max_retries=1)
    _refused(_score(lm), "transport error", "2 attempt")
    assert len(server.requests) == 2 and _rows(tmp_path) == []
    _recovers(server, lm, _score(lm))


# --- servers that never finish: timeout_s is a deadline --------------------------------------
@pytest.mark.parametrize("behaviour", [trickle, stall, headers_then_stall],
                         ids=["trickle-1-byte-per-s", "stall", "headers-then-stall"])  # fmt: skip
def test_slow_server_ends_at_the_deadline(
    server: FakeOpenAI, tmp_path: Path, behaviour: Behaviour
) -> None:
    server.set(behaviour)
    lm = _lm(server, tmp_path, max_retries=2)
    _refused(_score(lm), "did not answer within 1 s")
    assert _rows(tmp_path) == []
    _recovers(server, lm, _score(lm))


def test_retries_stay_inside_the_deadline(server: FakeOpenAI, tmp_path: Path) -> None:
    # 503s with a 0.4 s backoff: the third retry would end after the 1 s deadline
    server.set(reply("busy", 503))
    lm = _lm(server, tmp_path, max_retries=10, backoff_s=0.4)
    _refused(_score(lm), "HTTP 503", "no time left")
    assert 2 <= len(server.requests) <= 3


# --- generate -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "content", ["42", '{"text": "A"}', '["A"]'], ids=["number", "object", "list"]
)
def test_chat_content_that_is_not_text_is_refused(
    server: FakeOpenAI, tmp_path: Path, content: str
) -> None:
    server.set(reply(f'{{"choices": [{{"index": 0, "message": {{"content": {content}}}}}]}}'))
    lm = _lm(server, tmp_path, use_chat=True)
    call = lambda: lm.generate(["Name a film."])  # noqa: E731
    _refused(call, "choices[0].message.content", "not a string")
    assert _rows(tmp_path) == []
    seen = server.fix()
    assert call() == ["A, B"] and len(server.requests) > seen


# --- embeddings ----------------------------------------------------------------------------------
def _embeddings(*vectors: str) -> Behaviour:
    data = ", ".join(f'{{"index": {i}, "embedding": {v}}}' for i, v in enumerate(vectors))
    return reply(f'{{"data": [{data}]}}')


@pytest.mark.parametrize(
    ("vectors", "fragment"),
    [
        (("[0.1, NaN, 0.3, 0.4]", "[0.1, 0.2, 0.3, 0.4]"), "not a finite float32"),
        (("[0.1, 0.2, 0.3, 0.4]", "[0.1, 1e999, 0.3, 0.4]"), "not a finite float32"),
        (("[0.1, 0.2, 0.3, 0.4]", "[0.1, 1e300, 0.3, 0.4]"), "not a finite float32"),
        (("[0.1, 0.2, 0.3, 0.4]", "[0.1, 0.2, 0.3]"), "unequal lengths"),
        (('["0.1", "0.2", "0.3", "0.4"]', "[0.1, 0.2, 0.3, 0.4]"), "not a non-empty list"),
        (("[]", "[0.1, 0.2, 0.3, 0.4]"), "not a non-empty list"),
        (("[0.1, 0.2, 0.3, 0.4]",), "1 embeddings for 2 texts"),
    ],
    ids=["nan", "1e999", "1e300", "wrong-width", "strings", "empty", "too-few"],
)
def test_bad_embeddings_are_refused_and_not_cached(
    server: FakeOpenAI, tmp_path: Path, vectors: tuple[str, ...], fragment: str
) -> None:
    server.set(_embeddings(*vectors))
    lm = _lm(server, tmp_path)
    call = lambda: lm.encode(["first text", "second text"])  # noqa: E731
    _refused(call, "/embeddings", fragment)
    assert _rows(tmp_path) == []
    _recovers(server, lm, call)


def test_embedding_width_that_changes_between_calls_is_refused(
    server: FakeOpenAI, tmp_path: Path
) -> None:
    lm = _lm(server, tmp_path)
    lm.encode(["first text"])
    server.set(_embeddings("[0.1, 0.2, 0.3]"))
    _refused(lambda: lm.encode(["another text"]), "3-d vectors where 4-d")
    assert len(_rows(tmp_path)) == 1  # only the first, good answer


# --- every backend, not only the server ----------------------------------------------------
class _NaNLM(LanguageModel):
    """An in-process backend gone wrong: NaN scores and vectors."""

    model_id = "nan-lm"

    def score_next_batch(self, prompts: Any, labels: Any) -> np.ndarray:
        return np.full((len(prompts), len(labels)), np.nan, dtype=np.float32)

    def encode(self, texts: Any, *, batch_size: int = 64, pooling: Any = None) -> np.ndarray:
        out = np.ones((len(texts), DIM), dtype=np.float32)
        out[:, 0] = np.inf
        return out

    def loglikelihood(self, prompt: str, continuations: Any) -> np.ndarray:
        return np.full(len(continuations), 0.7, dtype=np.float32)  # a log-prob above 0


def test_any_backend_answering_non_finite_is_refused_before_caching(tmp_path: Path) -> None:
    lm = CachedLM(_NaNLM(), tmp_path)
    _refused(lambda: lm.score_next_batch([PROMPT], LABELS), "nan-lm score_next", "nan")
    _refused(lambda: lm.encode(["a"]), "nan-lm encode", "inf")
    _refused(lambda: lm.loglikelihood("p", [" a"]), "nan-lm loglikelihood", "0.7")
    assert len(lm) == 0


def test_poisoned_rows_from_an_older_cache_are_computed_again(
    server: FakeOpenAI, tmp_path: Path
) -> None:
    lm = _lm(server, tmp_path)
    good_row = lm.score_next_batch([PROMPT], LABELS)
    with sqlite3.connect(tmp_path / DB_NAME) as db:  # what an older llmrec could have stored
        db.execute("UPDATE answers SET value = ?", (np.full(3, np.nan, np.float32).tobytes(),))
    seen = len(server.requests)
    again = _lm(server, tmp_path)
    np.testing.assert_array_equal(again.score_next_batch([PROMPT], LABELS), good_row)
    assert len(server.requests) == seen + 1  # recomputed, not read
    assert again.stats.extra["cache_rows_refused"] == 1
    assert all(np.isfinite(np.frombuffer(r, np.float32)).all() for r in _rows(tmp_path))


# --- damaged or unusable cache files -----------------------------------------------------------
def _damage_garbage(path: Path) -> None:
    path.write_bytes(b"\x00\xffnot a database at all" * 200)


def _damage_truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])


def _damage_text(path: Path) -> None:
    path.write_text('{"this": "is json, not SQLite"}\n')


@pytest.mark.parametrize(
    "damage",
    [_damage_garbage, _damage_truncate, _damage_text],
    ids=["garbage", "truncated", "text"],
)
def test_damaged_cache_file_is_set_aside_with_one_warning(
    server: FakeOpenAI, tmp_path: Path, caplog: pytest.LogCaptureFixture, damage: Any
) -> None:
    first = _lm(server, tmp_path)
    first.encode([f"text {i}" for i in range(300)])  # enough pages for a truncation to bite
    first.close()
    db = tmp_path / DB_NAME
    for extra in tmp_path.glob(f"{DB_NAME}-*"):
        extra.unlink()  # WAL checkpointed at close; the damage is to the main file
    damage(db)
    with caplog.at_level(logging.WARNING, logger="llmrec.lm.cache"):
        lm = _lm(server, tmp_path)
        vectors = lm.encode(["text 0", "text 1"])
    assert vectors.shape == (2, DIM)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "\n" not in warnings[0]
    assert lm.set_aside is not None and lm.set_aside.is_file()
    assert str(lm.set_aside) in warnings[0] and ".corrupt-" in lm.set_aside.name
    assert len(lm) == 2 and lm.stats.extra["cache_set_aside"] == 1


def test_cache_damaged_past_its_header_is_set_aside_when_found_mid_run(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # the header and first pages are intact, so opening succeeds; a lookup then reads a page
    # of garbage: the run continues on a fresh cache instead of ending in a traceback
    from llmrec.lm.fake import FakeLM

    texts = [f"text {i}" for i in range(2000)]
    first = CachedLM(FakeLM(dim=64), tmp_path)
    expected = first.encode(texts)
    first.close()
    db = tmp_path / DB_NAME
    data = bytearray(db.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 8192] = b"\xff" * 8192
    db.write_bytes(bytes(data))
    lm = CachedLM(FakeLM(dim=64), tmp_path)
    assert lm.set_aside is None
    with caplog.at_level(logging.WARNING, logger="llmrec.lm.cache"):
        np.testing.assert_array_equal(lm.encode(texts), expected)
    assert lm.set_aside is not None and lm.set_aside.is_file()
    assert [r.levelno for r in caplog.records] == [logging.WARNING]
    assert len(lm) == len(texts)


def test_cache_folder_that_cannot_be_created_is_one_error(tmp_path: Path) -> None:
    from llmrec.lm.fake import FakeLM

    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(CacheError) as info:
        CachedLM(FakeLM(), blocker / "lm-cache")
    message = str(info.value)
    assert "\n" not in message and str(blocker / "lm-cache") in message
    assert "writable" in message


def test_cache_file_that_is_a_folder_is_one_error(tmp_path: Path) -> None:
    from llmrec.lm.fake import FakeLM

    (tmp_path / DB_NAME).mkdir()
    with pytest.raises(CacheError, match="cannot be used"):
        CachedLM(FakeLM(), tmp_path)
    assert (tmp_path / DB_NAME).is_dir()  # not "set aside": nothing was damaged


# --- through the CLI and the service ---------------------------------------------------------
def _run_config(tmp_path: Path, server: FakeOpenAI) -> Path:
    config = {
        "dataset": "synthetic:30x20x400",
        "model": "two_stage",
        "params": {
            "n_candidates": 3,
            "ranker": {
                "kind": "verbaliser",
                "lm": f"openai:{server.url}#m",
                "lm_options": {
                    "timeout_s": 1,
                    "max_retries": 0,
                    "use_chat": False,
                    "lm_cache_dir": str(tmp_path / "lm-cache"),
                },
            },
        },
        "eval": {"protocol": "full", "ks": [10]},
    }
    path = tmp_path / "run.json"
    path.write_text(json.dumps(config))
    return path


def test_cli_run_against_a_nan_server_is_one_error_and_caches_nothing(
    server: FakeOpenAI, tmp_path: Path, cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.adversarial.conftest import assert_one_line_error

    monkeypatch.setenv("LLMREC_HOME", str(tmp_path / "home"))
    args = ("run", "--config", str(_run_config(tmp_path, server)),
            "--out", str(tmp_path / "runs"), "--store", str(tmp_path / "store.sqlite"))  # fmt: skip
    server.set(reply(_completion('{" A": NaN, " B": -1.5, " C": -2.5}')))
    assert_one_line_error(cli(*args), "/completions answered a bad value", "nan")
    assert _rows(tmp_path / "lm-cache") == []
    seen = server.fix()
    result = cli(*args)
    assert result.code == 0, result.err
    assert len(server.requests) > seen and _rows(tmp_path / "lm-cache")


def test_cli_run_with_a_damaged_cache_warns_once_and_succeeds(
    server: FakeOpenAI, tmp_path: Path
) -> None:
    from tests.adversarial.conftest import run_cli_subprocess

    cache = tmp_path / "lm-cache"
    cache.mkdir()
    (cache / DB_NAME).write_bytes(b"SQLite format 3\x00" + b"\xff" * 5000)  # a header, then junk
    args = ["run", "--config", str(_run_config(tmp_path, server)),
            "--out", str(tmp_path / "runs"), "--store", str(tmp_path / "store.sqlite")]  # fmt: skip
    result = run_cli_subprocess(args, env={**os.environ, "LLMREC_HOME": str(tmp_path / "home")})
    assert result.code == 0, result.err
    assert "Traceback" not in result.err
    warnings = [line for line in result.err.splitlines() if line.startswith("llmrec: warning:")]
    assert len(warnings) == 1 and "is damaged" in warnings[0], result.err
    kept = list(cache.glob(f"{DB_NAME}.corrupt-*"))
    assert len(kept) == 1 and str(kept[0]) in warnings[0]
    assert server.requests and _rows(cache)


def test_service_batch_falls_back_on_nan_and_recovers_after_a_trickle(server: FakeOpenAI) -> None:
    """The serve path: a NaN answer and a trickling server each give the flagged fallback,
    and the LM answers again by itself once the server is fixed."""
    from llmrec.lm.openai import OpenAILM
    from llmrec.serve.batcher import BatchStats, MicroBatcher

    lm = OpenAILM(server.url, "m", timeout_s=1.0, max_retries=0, use_chat=False)
    kinds: list[str] = []

    def run(queries: list[str]) -> list[str]:
        scores = lm.score_next_batch(queries, LABELS)
        return [LABELS[int(np.argmax(row))] for row in scores]

    def record(stats: BatchStats) -> None:
        kinds.append(stats.fallback_kind)

    async def scenario() -> list[str]:
        with ThreadPoolExecutor(max_workers=1) as pool:
            batcher = MicroBatcher(
                "direct", run, executor=pool, budget_s=0.3, breaker_failures=0,
                fallback=lambda qs, why: ["fallback"] * len(qs), on_batch=record,
            )  # fmt: skip
            answers = []
            server.set(reply(_completion('{" A": NaN, " B": -1.5}')))
            answers.append((await batcher.submit(PROMPT))[0])
            server.set(trickle)
            answers.append((await batcher.submit(PROMPT))[0])
            server.fix()
            deadline = time.monotonic() + BOUND_S
            while time.monotonic() < deadline:  # the stuck call ends at its 1 s deadline
                answer = (await batcher.submit(PROMPT))[0]
                if answer != "fallback":
                    answers.append(answer)
                    break
                await asyncio.sleep(0.2)
            await batcher.stop()
        return answers

    try:
        answers = asyncio.run(scenario())
    finally:
        lm.close()
    assert answers == ["fallback", "fallback", " A"]
    assert kinds[:2] == ["error", "timeout"] and kinds[-1] == ""
