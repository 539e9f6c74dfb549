"""The one protocol through which every paradigm talks to a language model.

Four batched verbs cover the three paradigms:

* :meth:`LanguageModel.encode` — texts to vectors (embeddings paradigm, semantic IDs);
* :meth:`LanguageModel.generate` — prompts to text (tags, generated rankings);
* :meth:`LanguageModel.score_next` — log-probabilities of single-token labels after a prompt
  (the verbaliser ranker);
* :meth:`LanguageModel.loglikelihood` — summed log-probabilities of continuations after one
  shared prompt (the likelihood ranker).

``score_next_batch`` and ``loglikelihood_batch`` are the many-prompt forms the rankers call: the
defaults loop over the one-prompt verbs, and backends that can batch a forward across prompts
(transformers) override them. Either way one batched call counts as one call.

A backend that cannot do a verb (an encoder-only model cannot generate) raises
:class:`~llmrec.errors.BackendError` saying so. Backends are deterministic given their seed.

Answers are checked where they leave a backend and again before the disk cache stores them
(:func:`check_logprobs`, :func:`check_vectors`, :func:`check_texts`): a NaN, an infinity, a
log-probability above 0 or a wrong shape is a :class:`~llmrec.errors.BackendError`, never a
ranking.
"""

from __future__ import annotations

import functools
import threading
from abc import ABC
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, TypeVar, cast

import numpy as np

from llmrec.errors import BackendError

Pooling = Literal["mean", "last", "cls"]

F = TypeVar("F", bound=Callable[..., Any])

#: the verbs whose every outermost call adds one to ``stats.calls`` (see
#: :meth:`LanguageModel.__init_subclass__`); ``loglikelihood_full`` is HF's reference scorer
COUNTED_VERBS = ("encode", "generate", "score_next", "score_next_batch", "loglikelihood",
                 "loglikelihood_batch", "loglikelihood_full")  # fmt: skip

#: the largest log-probability accepted: log(1) = 0 plus room for float32 rounding of a
#: certain token (a server that sums or re-normalises in float32 can land a hair above 0)
MAX_LOGPROB = 1e-6
#: answers are kept as float32: a larger magnitude (-1e300) would become infinite there
FLOAT32_MAX = float(np.finfo(np.float32).max)


@dataclass
class LMStats:
    """Counters a backend keeps so that evaluations can report LM cost.

    Attributes:
        calls: number of protocol calls.
        prompt_tokens: tokens read (prompts, texts to encode).
        generated_tokens: tokens written by ``generate``.
        truncated: inputs cut to fit the context window.
        cache_hits: answers served from the disk cache.
    """

    calls: int = 0
    prompt_tokens: int = 0
    generated_tokens: int = 0
    truncated: int = 0
    cache_hits: int = 0
    extra: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, float]:
        return {
            "calls": self.calls,
            "prompt_tokens": self.prompt_tokens,
            "generated_tokens": self.generated_tokens,
            "truncated": self.truncated,
            "cache_hits": self.cache_hits,
            **self.extra,
        }


def single_token_ids(
    tokenize: Callable[[str], list[int]],
    prompt: str,
    labels: Sequence[str],
    model_id: str,
    *,
    tail_chars: int = 64,
) -> list[int]:
    """Token id of each label as it tokenises right after ``prompt``.

    ``tokenize`` maps text to ids without special tokens. Tokenisation boundaries are local, so
    the prompt's last ``tail_chars`` characters decide them. Raises
    :class:`~llmrec.errors.BackendError` naming every label that is not exactly one token there.
    """
    tail = prompt[-tail_chars:]
    base = tokenize(tail)
    ids: list[int] = []
    bad: list[str] = []
    for label in labels:
        joint = tokenize(tail + label)
        if len(joint) == len(base) + 1 and joint[: len(base)] == base:
            ids.append(joint[-1])
        else:
            bad.append(label)
    if bad:
        raise BackendError(
            f"labels {bad} are not single tokens after this prompt for {model_id}; "
            "use one-token labels (e.g. ' A' after a prompt ending in ':')"
        )
    return ids


def _numbers(values: object, who: str, what: str) -> np.ndarray:
    """``values`` as float64 when it is a rectangular array of numbers (not strings, booleans
    or objects, which numpy would otherwise convert); else a BackendError."""
    try:
        raw = np.asarray(values)
    except ValueError:  # ragged nesting
        raise BackendError(f"{who} answered {what} of unequal lengths") from None
    if raw.dtype.kind not in "fiu":
        raise BackendError(f"{who} answered {what} that are not numbers ({raw.dtype})")
    # float64 first: a value that only overflows float32 (-1e300) is caught by the caller
    return raw.astype(np.float64)


def _first_bad(bad: np.ndarray, values: np.ndarray) -> str:
    """``"<value> at [i, j]"`` for the first flagged position."""
    where = tuple(int(i) for i in np.argwhere(bad)[0])
    return f"{float(values[where]):.6g} at {list(where)}"


def check_logprobs(values: object, shape: tuple[int, ...], who: str) -> np.ndarray:
    """``values`` as a float32 array of ``shape`` when every entry is a finite log-probability
    (at most :data:`MAX_LOGPROB`); otherwise :class:`~llmrec.errors.BackendError` naming
    ``who`` (model and verb) and the first bad entry.

    Example::

        check_logprobs([[-0.1, -2.3]], (1, 2), "fake score_next")   # (1, 2) float32
        check_logprobs([[-0.1, float("nan")]], (1, 2), "m score_next")  # BackendError
    """
    wide = _numbers(values, who, "log-probabilities")
    if wide.shape != shape:
        raise BackendError(f"{who} answered log-probabilities of shape {wide.shape}, not {shape}")
    bad = ~np.isfinite(wide) | (wide < -FLOAT32_MAX) | (wide > MAX_LOGPROB)
    if bad.any():
        raise BackendError(
            f"{who} answered a log-probability that is not a finite float32 <= 0: "
            f"{_first_bad(bad, wide)}"
        )
    return wide.astype(np.float32)


def check_vectors(values: object, n: int, who: str, *, dim: int | None = None) -> np.ndarray:
    """``values`` as ``(n, dim)`` float32 when it is a 2-D array of finite numbers, ``dim``
    wide where given; otherwise :class:`~llmrec.errors.BackendError` naming ``who``."""
    wide = _numbers(values, who, "vectors")
    if wide.ndim != 2 or wide.shape[0] != n or (n and wide.shape[1] == 0):
        raise BackendError(f"{who} answered vectors of shape {wide.shape} for {n} input(s)")
    if dim is not None and wide.shape[1] != dim:
        raise BackendError(f"{who} answered {wide.shape[1]}-d vectors where {dim}-d were expected")
    bad = ~np.isfinite(wide) | (np.abs(wide) > FLOAT32_MAX)
    if bad.any():
        raise BackendError(f"{who} answered a vector entry that is not a finite float32: "
                           f"{_first_bad(bad, wide)}")  # fmt: skip
    return wide.astype(np.float32)


def check_texts(values: object, n: int, who: str) -> list[str]:
    """``values`` when it is a list of ``n`` strings; otherwise a BackendError naming ``who``."""
    if not isinstance(values, list | tuple) or len(values) != n:
        got = len(values) if isinstance(values, list | tuple) else type(values).__name__
        raise BackendError(f"{who} answered {got} text(s) for {n} prompt(s)")
    wrong = [type(v).__name__ for v in values if not isinstance(v, str)]
    if wrong:
        raise BackendError(f"{who} answered a {wrong[0]} where a text was expected")
    return list(values)


def _counted(verb: F) -> F:
    """``verb`` adding one to ``stats.calls`` when it is the outermost verb running on this
    thread: ``score_next`` answered through ``score_next_batch`` (or the reverse) is one call."""

    @functools.wraps(verb)
    def counted(self: LanguageModel, *args: Any, **kwargs: Any) -> Any:
        local = self._verb_depth
        depth = getattr(local, "depth", 0)
        if depth == 0:
            self._count(calls=1)
        local.depth = depth + 1
        try:
            return verb(self, *args, **kwargs)
        finally:
            local.depth = depth

    return cast(F, counted)


class LanguageModel(ABC):
    """Base class of LM backends. Subclasses implement the verbs they support.

    Usage counting lives here, once: each outermost call of a verb adds one to
    ``stats.calls`` (subclasses' verbs are wrapped when the class is created), and backends
    add what they read and wrote through :meth:`_count`, never by editing ``stats``.
    """

    #: a stable identifier of the model and its weights, used as a cache key
    model_id: str = "unknown"
    #: whether this class's verbs count calls; a wrapper that shares its inner model's stats
    #: (``CachedLM``) sets False, so that only calls reaching the model count
    counts_calls: ClassVar[bool] = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not cls.__dict__.get("counts_calls", True):
            return
        for name in COUNTED_VERBS:
            if name in cls.__dict__:
                setattr(cls, name, _counted(cls.__dict__[name]))

    def __init__(self) -> None:
        self.stats = LMStats()
        self._verb_depth = threading.local()
        self._stats_lock = threading.Lock()

    def _count(
        self,
        *,
        calls: int = 0,
        prompt_tokens: int = 0,
        generated_tokens: int = 0,
        truncated: int = 0,
        cache_hits: int = 0,
        **extra: float,
    ) -> None:
        """Add to ``stats`` (thread-safe: HTTP backends answer from several threads)."""
        with self._stats_lock:
            s = self.stats
            s.calls += calls
            s.prompt_tokens += prompt_tokens
            s.generated_tokens += generated_tokens
            s.truncated += truncated
            s.cache_hits += cache_hits
            for name, value in extra.items():
                s.extra[name] = s.extra.get(name, 0.0) + value

    # --- the protocol ------------------------------------------------------------------------
    def encode(
        self, texts: Sequence[str], *, batch_size: int = 64, pooling: Pooling | None = None
    ) -> np.ndarray:
        """``(len(texts), dim)`` float32 vectors, one per text. Empty input gives ``(0, dim)``."""
        raise BackendError(f"{self.model_id} cannot encode")

    def generate(
        self,
        prompts: Sequence[str],
        *,
        max_new_tokens: int = 64,
        temperature: float = 0.0,
        stop: Sequence[str] = (),
        seed: int = 0,
    ) -> list[str]:
        """One completion per prompt. Chat templates are applied where the model has one.

        ``temperature=0`` is greedy decoding; text from the first stop string on is removed.
        """
        raise BackendError(f"{self.model_id} cannot generate")

    def score_next(self, prompt: str, labels: Sequence[str]) -> np.ndarray:
        """``(len(labels),)`` float32 log-probabilities of each label as the next token.

        Each label must be a single token of the model's vocabulary (as it appears after the
        prompt); otherwise :class:`~llmrec.errors.BackendError` names the offending labels.
        """
        raise BackendError(f"{self.model_id} cannot score next tokens")

    @_counted  # one call, however many prompts: as the backends that batch the forward
    def score_next_batch(self, prompts: Sequence[str], labels: Sequence[str]) -> np.ndarray:
        """``(len(prompts), len(labels))`` float32; backends override to batch the forward."""
        if not prompts:
            return np.zeros((0, len(labels)), dtype=np.float32)
        return np.stack([self.score_next(p, labels) for p in prompts])

    def loglikelihood(self, prompt: str, continuations: Sequence[str]) -> np.ndarray:
        """``(len(continuations),)`` float32 summed log-probabilities of each continuation
        given the shared ``prompt``. Backends reuse the prompt's KV cache where they can."""
        raise BackendError(f"{self.model_id} cannot score log-likelihoods")

    @_counted  # one call, however many prompts: as the backends that batch the forward
    def loglikelihood_batch(
        self, prompts: Sequence[str], continuations: Sequence[Sequence[str]]
    ) -> list[np.ndarray]:
        """One ``(len(continuations[i]),)`` float32 array per prompt: :meth:`loglikelihood` of
        each prompt's own continuations. Backends override to batch the forward across prompts.

        Example::

            lm.loglikelihood_batch(["p1", "p2"], [[" a", " b"], [" c"]])   # [(2,), (1,)]
        """
        if len(prompts) != len(continuations):
            raise BackendError(
                f"{len(prompts)} prompt(s) but {len(continuations)} continuation list(s)"
            )
        return [self.loglikelihood(p, c) for p, c in zip(prompts, continuations, strict=True)]

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Number of tokens of each text (used to fit prompts into a token budget)."""
        return [max(1, len(t) // 4) for t in texts]

    @property
    def context_length(self) -> int:
        """Maximum tokens the model reads at once."""
        return 2048

    @property
    def has_chat_template(self) -> bool:
        return False

    @property
    def answers_remotely(self) -> bool:
        """Whether an execution engine answers this model's calls elsewhere (Ray actors,
        :mod:`llmrec.engine`), so that callers may send several at once; a model loaded in
        this process takes one call at a time (llama.cpp is not thread-safe)."""
        return False

    def apply_chat_template(self, prompt: str) -> str:
        """``prompt`` as one user turn plus the assistant prefix, in the model's chat format.

        ``score_next`` and ``loglikelihood`` read their prompt as plain text; callers that want
        a chat model to see its own format wrap the prompt with this first, then append the
        answer prefix. Models without a template return the prompt unchanged. Backends whose
        template is applied only inside ``generate`` (servers, on their chat endpoint; llama.cpp
        and the fake) cannot render it here: they return the prompt and a line break, the
        plain-text layout in which the answer prefix starts its own line.
        """
        return f"{prompt}\n" if self.has_chat_template else prompt

    def close(self) -> None:
        """Release resources (servers, threads). Safe to call twice."""

    def __enter__(self) -> LanguageModel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextmanager
def quiet_loading() -> Iterator[None]:
    """Hide transformers' own "Loading weights" bar while a model loads: it writes carriage
    returns into piped logs, and llmrec's progress (``llmrec.progress``) is what users follow."""
    from transformers.utils import logging as hf_logging

    was_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_on:
            hf_logging.enable_progress_bar()


def cut_at_stops(text: str, stop: Sequence[str]) -> str:
    """``text`` up to the first occurrence of any of the ``stop`` strings (empty ones ignored)."""
    cut = len(text)
    for s in stop:
        pos = text.find(s) if s else -1
        if pos >= 0:
            cut = min(cut, pos)
    return text[:cut]
