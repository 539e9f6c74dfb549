"""OpenAI-compatible HTTP backend: llama.cpp server, vLLM, Ollama, hosted APIs.

Which endpoint serves which verb:

* ``generate`` — ``/chat/completions`` (one user turn) when ``use_chat`` is true or ``None``,
  ``/completions`` when ``use_chat=False`` (base models without a chat template);
* ``score_next`` — ``/completions`` with ``max_tokens=1``, ``temperature=0`` and
  ``logprobs=top_logprobs``: each label is looked up by its token text among the returned
  top-N alternatives of the first generated position. A label absent from the top-N gets the
  tightest upper bound the answer allows, ``log(min(p_min, 1 - sum(p_top)))`` (``p_min`` the
  smallest returned probability), so it ranks below every label that was seen. The count of
  such labels is kept in ``stats.extra["labels_below_top_n"]``;
* ``loglikelihood`` — ``/completions`` with ``echo=true`` and ``logprobs``, only on servers whose
  prompt log-probabilities pass a probe (see :meth:`OpenAILM.check_prompt_logprobs`): the
  llama.cpp server shifts them by one position, and its answers are refused with a
  :class:`~llmrec.errors.BackendError` rather than returned wrong;
* ``encode`` — ``/embeddings``; token-level answers (llama.cpp without a pooling head) are
  pooled here (mean or last).

``timeout_s`` is a deadline, not a per-read timeout (:mod:`llmrec.lm._http`): each request
ends within ``timeout_s`` seconds of its start — connecting, sending, waiting, reading the
answer to its last byte, and any retries with their backoff included — so a server that
stalls, sends its headers and stops, or trickles its answer a byte at a time costs at most
``timeout_s``. Connection errors, HTTP 429 and 5xx are retried at most ``max_retries`` times
with exponential backoff while the deadline leaves time for it. A batched verb sends its
requests ``concurrency`` at a time, each with its own deadline.

Every answer is checked before it is used: a field that is missing or of the wrong JSON type, a
string where a number belongs, a log-probability that is not a finite number <= 0 (``NaN``,
``-Infinity``, ``1e999``, ``0.5``), an embedding that is not finite or not as wide as the
others. Every failure is one :class:`~llmrec.errors.BackendError` line naming the URL and cause,
and nothing partial is returned. ``httpx`` is imported lazily (the ``http`` extra).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import numpy as np
from pydantic import Field

from llmrec.config import StrictConfig, validated
from llmrec.errors import BackendError, ConfigError
from llmrec.lm._http import DeadlineClient, one_line
from llmrec.lm.base import (
    FLOAT32_MAX,
    MAX_LOGPROB,
    LanguageModel,
    Pooling,
    check_logprobs,
    check_vectors,
    cut_at_stops,
)

__all__ = ["OpenAIConfig", "OpenAILM"]

T = TypeVar("T")
R = TypeVar("R")

#: probability mass below which a label is not worth a log (floor of the top-N bound)
_MIN_PROB = 1e-12
#: most stop strings sent to the server (OpenAI accepts 4); all are applied client-side
_MAX_SERVER_STOPS = 4
#: prompt and tolerance (nats) of the prompt-logprob probe
_PROBE_PROMPT = "The capital of France is Paris. The capital of Italy is"
_PROBE_TOLERANCE = 0.05


class OpenAIConfig(StrictConfig):
    """Settings of :class:`OpenAILM`.

    Attributes:
        base_url: the API root including ``/v1`` (``http://127.0.0.1:8080/v1``).
        model: model name sent with every request.
        api_key: sent as ``Authorization: Bearer``; ``None`` sends none.
        timeout_s: deadline of each request in seconds, from its start to the last byte of its
            answer, retries and their backoff included (see the module docstring).
        max_retries: retries after the first attempt (connection errors, 429, 5xx).
        backoff_s: first retry delay; doubles each retry.
        concurrency: most requests in flight for a batched verb.
        use_chat: ``generate`` through ``/chat/completions`` (``None`` means yes: most served
            models are chat models); ``False`` for base models.
        top_logprobs: alternatives requested per position for ``score_next``.
        context_length: the served model's context window, in tokens.
        pooling: pooling of token-level embedding answers.
        normalize: L2-normalise encodings.
        extra_body: server-specific fields added to every completion request, e.g.
            ``{"repeat_penalty": 1.0}`` for the llama.cpp server, whose default (1.1) otherwise
            makes its greedy output differ from in-process greedy decoding.
        prompt_logprobs: ``"probe"`` checks the server's ``echo`` log-probabilities once before
            ``loglikelihood`` uses them; ``"trust"`` skips the check; ``"off"`` refuses.
        model_id: cache-key identity; ``openai:{base_url}#{model}`` when not given.
    """

    base_url: str
    model: str
    api_key: str | None = None
    timeout_s: float = Field(default=60.0, gt=0)
    max_retries: int = Field(default=3, ge=0)
    backoff_s: float = Field(default=0.5, ge=0)
    concurrency: int = Field(default=4, ge=1)
    use_chat: bool | None = None
    top_logprobs: int = Field(default=20, ge=1)
    context_length: int = Field(default=2048, ge=16)
    pooling: str = "mean"
    normalize: bool = True
    prompt_logprobs: str = Field(default="probe", pattern="^(probe|trust|off)$")
    extra_body: dict[str, Any] = Field(default_factory=dict)
    model_id: str | None = None


class _BadValue(ValueError):
    """A field of an answer holds the wrong type or value; the message names the field."""


def _kind(value: object) -> str:
    """How a JSON value reads in a message: ``a list``, ``the string '1.5'``, ``null``."""
    if value is None:
        return "null"
    if isinstance(value, str):
        return f"the string {one_line(value, 40)!r}"
    if isinstance(value, bool | int | float):
        return f"the {'boolean' if isinstance(value, bool) else 'number'} {json.dumps(value)}"
    return "an object" if isinstance(value, dict) else "a list"


def _logprob(value: object, where: str) -> float:
    """``value`` when it is a JSON number that is a log-probability float32 holds finitely
    (``-FLOAT32_MAX <= value <= MAX_LOGPROB``)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _BadValue(f"{where} is {_kind(value)}, not a number")
    try:
        number = float(value)
    except OverflowError:  # an integer literal beyond the float range
        number = math.inf
    if not -FLOAT32_MAX <= number <= MAX_LOGPROB:  # also false for NaN
        raise _BadValue(f"{where} is {value!r}, not a finite float32 log-probability <= 0")
    return number


def _count(value: object, where: str) -> int:
    """``value`` when it is a JSON integer >= 0 (token counts, offsets, indices)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _BadValue(f"{where} is {value!r}, not a count")
    return value


def _usage(answer: dict[str, Any], key: str) -> int:
    """``usage[key]``; servers may leave usage out (0), but what they send must be a count."""
    usage = answer.get("usage")
    if usage is None:
        return 0
    if not isinstance(usage, dict):
        raise _BadValue(f"usage is {_kind(usage)}, not an object")
    value = usage.get(key)
    return 0 if value is None else _count(value, f"usage.{key}")


def _text(value: object, where: str) -> str:
    """A completion's text; ``null`` (a message with no content) is the empty text."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _BadValue(f"{where} is {_kind(value)}, not a string")
    return value


def _embedding(value: object, where: str) -> np.ndarray:
    """A ``(dim,)`` or ``(tokens, dim)`` float32 embedding of finite JSON numbers."""
    try:
        raw = np.asarray(value)
    except ValueError:
        raise _BadValue(f"{where} has rows of unequal lengths") from None
    if raw.dtype.kind not in "fiu" or raw.ndim not in (1, 2) or raw.size == 0:
        raise _BadValue(f"{where} is not a non-empty list of numbers (or of lists of numbers)")
    wide = raw.astype(np.float64)
    if not (np.abs(wide) <= FLOAT32_MAX).all():  # also false for NaN
        raise _BadValue(f"{where} holds a number that is not a finite float32")
    return wide.astype(np.float32)


class OpenAILM(LanguageModel):
    """A model behind an OpenAI-compatible HTTP API.

    Example::

        lm = OpenAILM("http://127.0.0.1:8080/v1", "smollm2")
        lm.generate(["Name a fruit."], max_new_tokens=8)           # ['Apple']
        lm.score_next("Pick one. Answer:", [" A", " B"])           # (2,) float32 log-probs
    """

    def __init__(self, base_url: str, model: str, **options: Any) -> None:
        super().__init__()
        transport = options.pop("transport", None)  # tests inject an httpx transport
        self.config = validated(
            OpenAIConfig,
            {"base_url": base_url.rstrip("/"), "model": model, **options},
            "invalid OpenAILM options",
        )
        cfg = self.config
        self._http = DeadlineClient(
            cfg.base_url,
            api_key=cfg.api_key,
            timeout_s=cfg.timeout_s,
            max_retries=cfg.max_retries,
            backoff_s=cfg.backoff_s,
            concurrency=cfg.concurrency,
            transport=transport,
        )
        self._prompt_logprobs_ok: bool | None = {"trust": True, "off": False}.get(
            cfg.prompt_logprobs
        )
        self.model_id = cfg.model_id or f"openai:{cfg.base_url}#{cfg.model}"
        self._dim: int | None = None  # width of the first embeddings answered

    # --- properties ----------------------------------------------------------------------------
    @property
    def context_length(self) -> int:
        return self.config.context_length

    @property
    def has_chat_template(self) -> bool:
        return self.config.use_chat is not False

    def close(self) -> None:
        self._http.close()

    # --- transport -----------------------------------------------------------------------------
    def _post(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        """The JSON object answered to ``POST path`` (the model named, ``extra_body`` added to
        completion requests), within the deadline: see :class:`~llmrec.lm._http.DeadlineClient`."""
        body = {"model": self.config.model, **payload}
        if path != "/embeddings":
            body.update(self.config.extra_body)
        return self._http.post(path, body)

    def _parse(self, path: str, answer: dict[str, Any], read: Callable[[dict[str, Any]], R]) -> R:
        """``read(answer)``, turning a missing or mistyped field into one BackendError."""
        try:
            return read(answer)
        except _BadValue as exc:
            raise BackendError(
                f"{self.config.base_url}{path} answered a bad value ({exc}): "
                f"{one_line(json.dumps(answer))!r}"
            ) from None
        except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
            raise BackendError(
                f"{self.config.base_url}{path} answered an unexpected shape "
                f"({type(exc).__name__}: {one_line(str(exc), 80)}): "
                f"{one_line(json.dumps(answer))!r}"
            ) from None

    def _map(self, fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
        """``[fn(x) for x in items]`` with up to ``concurrency`` in flight; first error wins."""
        if len(items) <= 1 or self.config.concurrency == 1:
            return [fn(x) for x in items]
        with ThreadPoolExecutor(max_workers=self.config.concurrency) as pool:
            return list(pool.map(fn, items))

    # --- generate ------------------------------------------------------------------------------
    def generate(
        self,
        prompts: Sequence[str],
        *,
        max_new_tokens: int = 64,
        temperature: float = 0.0,
        stop: Sequence[str] = (),
        seed: int = 0,
    ) -> list[str]:
        """One completion per prompt, ``concurrency`` at a time; stop strings cut client-side."""
        params: dict[str, Any] = {"max_tokens": max_new_tokens, "temperature": temperature,
                                  "seed": seed}  # fmt: skip
        if stop:
            params["stop"] = list(stop)[:_MAX_SERVER_STOPS]

        def read(a: dict[str, Any]) -> tuple[str, int, int]:
            choice = a["choices"][0]
            if self.has_chat_template:
                text = _text(choice["message"]["content"], "choices[0].message.content")
            else:
                text = _text(choice["text"], "choices[0].text")
            return text, _usage(a, "prompt_tokens"), _usage(a, "completion_tokens")

        def one(prompt: str) -> tuple[str, int, int]:
            if self.has_chat_template:
                path, payload = "/chat/completions", {
                    "messages": [{"role": "user", "content": prompt}], **params}  # fmt: skip
            else:
                path, payload = "/completions", {"prompt": prompt, **params}
            return self._parse(path, self._post(path, payload), read)

        results = self._map(one, list(prompts))
        self._count(prompt_tokens=sum(r[1] for r in results),
                    generated_tokens=sum(r[2] for r in results))  # fmt: skip
        return [cut_at_stops(text, stop) for text, _, _ in results]

    # --- score_next ----------------------------------------------------------------------------
    def _top_logprobs(self, prompt: str) -> tuple[dict[str, float], int]:
        """({token text: log-prob} of the first generated position, prompt tokens)."""
        path = "/completions"
        answer = self._post(path, {"prompt": prompt, "max_tokens": 1, "temperature": 0.0,
                                   "logprobs": self.config.top_logprobs})  # fmt: skip

        def read(a: dict[str, Any]) -> tuple[dict[str, float], int]:
            top = a["choices"][0]["logprobs"]["top_logprobs"][0]
            if not isinstance(top, dict):
                raise _BadValue(
                    f"top_logprobs[0] is {_kind(top)}, not an object of token: log-prob "
                    "(the /completions format)"
                )
            where = "top_logprobs[0]"
            out = {k: _logprob(v, f"{where}[{k!r}]") for k, v in top.items()}
            return out, _usage(a, "prompt_tokens")

        top, n_prompt = self._parse(path, answer, read)
        if not top:
            raise BackendError(f"{self.config.base_url}{path} returned no top logprobs")
        return top, n_prompt

    @staticmethod
    def labels_from_top(top: dict[str, float], labels: Sequence[str]) -> tuple[np.ndarray, int]:
        """``(len(labels),)`` float32 log-probs looked up in ``top``, and how many labels fell
        below the top-N and got the bound ``log(min(p_min, 1 - sum(p_top)))``."""
        probs = np.exp(np.array(list(top.values()), dtype=np.float64))
        rest = max(1.0 - float(probs.sum()), 0.0)
        floor = math.log(max(min(float(probs.min()), rest), _MIN_PROB))
        out = np.array([top.get(label, floor) for label in labels], dtype=np.float32)
        return out, sum(label not in top for label in labels)

    def score_next(self, prompt: str, labels: Sequence[str]) -> np.ndarray:
        """``(len(labels),)`` float32 log-probabilities read from the server's top-N."""
        return self.score_next_batch([prompt], labels)[0]

    def score_next_batch(self, prompts: Sequence[str], labels: Sequence[str]) -> np.ndarray:
        """``(len(prompts), len(labels))`` float32, ``concurrency`` requests at a time."""
        if not prompts:
            return np.zeros((0, len(labels)), dtype=np.float32)
        answers = self._map(self._top_logprobs, list(prompts))
        rows, missing = [], 0
        for top, _ in answers:
            row, below = self.labels_from_top(top, labels)
            missing += below
            rows.append(row)
        self._count(prompt_tokens=sum(n for _, n in answers), labels_below_top_n=missing)
        return np.stack(rows)

    # --- loglikelihood -------------------------------------------------------------------------
    def _echo(self, text: str) -> tuple[list[float | None], list[int], list[str]]:
        """Per-token (log-probs, character offsets, token texts) of ``text`` as a prompt."""
        path = "/completions"
        answer = self._post(path, {"prompt": text, "max_tokens": 1, "temperature": 0.0,
                                   "echo": True, "logprobs": 1})  # fmt: skip

        def read(a: dict[str, Any]) -> tuple[list[float | None], list[int], list[str]]:
            lp = a["choices"][0]["logprobs"]
            values = [None if v is None else _logprob(v, f"token_logprobs[{i}]")
                      for i, v in enumerate(lp["token_logprobs"])]  # fmt: skip
            offsets = [_count(o, f"text_offset[{i}]") for i, o in enumerate(lp["text_offset"])]
            tokens = [_text(t, f"tokens[{i}]") for i, t in enumerate(lp["tokens"])]
            return values, offsets, tokens

        return self._parse(path, answer, read)

    def check_prompt_logprobs(self) -> bool:
        """Whether the server's ``echo`` log-probabilities are aligned, by one probe.

        The log-prob of the greedy next token ``t`` after a fixed prompt (a generated-token
        log-prob, which servers get right) must equal the echoed log-prob of ``t`` when the
        prompt is sent again followed by ``t``. The llama.cpp server fails this (it scores each
        prompt token given itself).
        """
        top, _ = self._top_logprobs(_PROBE_PROMPT)
        token, expected = max(top.items(), key=lambda kv: kv[1])
        values, offsets, _ = self._echo(_PROBE_PROMPT + token)
        got = [v for v, o in zip(values, offsets, strict=False) if o == len(_PROBE_PROMPT)]
        return len(got) == 1 and got[0] is not None and abs(got[0] - expected) < _PROBE_TOLERANCE

    def loglikelihood(self, prompt: str, continuations: Sequence[str]) -> np.ndarray:
        """``(len(continuations),)`` float32 summed log-probs of the continuation tokens (those
        starting at or after ``len(prompt)`` characters), from echoed prompt log-probs.

        Raises :class:`BackendError` when the server's prompt log-probs fail the probe.
        """
        if self._prompt_logprobs_ok is None:
            self._prompt_logprobs_ok = self.check_prompt_logprobs()
        if not self._prompt_logprobs_ok:
            raise BackendError(
                f"{self.model_id}: the server does not return reliable prompt logprobs "
                "(echo), so loglikelihood is unavailable; use score_next, or run the model "
                "in-process (llamacpp: or hf:)"
            )

        def one(cont: str) -> float:
            text = prompt + cont
            values, offsets, _ = self._echo(text)
            picked = [v for v, o in zip(values, offsets, strict=False)
                      if len(prompt) <= o < len(text)]  # fmt: skip
            if any(v is None for v in picked):
                raise BackendError(f"{self.model_id}: the server gave no logprob for a "
                                   "continuation token")  # fmt: skip
            self._count(prompt_tokens=len(values))
            return float(sum(v for v in picked if v is not None))

        scores = self._map(one, list(continuations))
        return check_logprobs(scores, (len(continuations),), f"{self.model_id} loglikelihood")

    # --- encode --------------------------------------------------------------------------------
    def encode(
        self, texts: Sequence[str], *, batch_size: int = 64, pooling: Pooling | None = None
    ) -> np.ndarray:
        """``(len(texts), dim)`` float32 from ``/embeddings``, ``batch_size`` texts a request."""
        mode = pooling or self.config.pooling
        if mode not in ("mean", "last"):
            raise ConfigError(f"OpenAILM pools token-level answers 'mean' or 'last', not {mode!r}")
        step = max(1, batch_size)
        chunks = [list(texts[i : i + step]) for i in range(0, len(texts), step)]
        path = "/embeddings"

        def one(chunk: list[str]) -> list[np.ndarray]:
            answer = self._post(path, {"input": chunk})

            def read(a: dict[str, Any]) -> list[np.ndarray]:
                items = sorted(a["data"], key=lambda d: _count(d["index"], "data[].index"))
                if len(items) != len(chunk):
                    raise _BadValue(f"{len(items)} embeddings for {len(chunk)} texts")
                return [_embedding(d["embedding"], f"data[{i}].embedding")
                        for i, d in enumerate(items)]  # fmt: skip

            raw = self._parse(path, answer, read)
            if len(chunk) > 1 and any(v.ndim == 2 for v in raw):
                # token-level answers come from llama-cpp-python's unpooled path, which mixes
                # up sequences sent in one request (0.3.36): ask again one text at a time
                self._count(embedding_requests_split=1)
                return [v for text in chunk for v in one([text])]
            return self._parse(path, answer, lambda _: [self._pool(v, mode) for v in raw])

        vectors = [v for part in self._map(one, chunks) for v in part]
        if not vectors:
            return np.zeros((0, 0), dtype=np.float32)
        who = f"{self.config.base_url}{path}"
        out = check_vectors(vectors, len(texts), who, dim=self._dim)
        self._dim = out.shape[1]
        if self.config.normalize:
            out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        return out

    @staticmethod
    def _pool(vector: np.ndarray, mode: str) -> np.ndarray:
        """A ``(dim,)`` answer as is; a ``(tokens, dim)`` answer pooled."""
        if vector.ndim == 1:
            return vector
        if vector.ndim != 2 or vector.shape[0] == 0:
            raise ValueError(f"embedding of shape {vector.shape}")
        return vector.mean(axis=0) if mode == "mean" else vector[-1]
