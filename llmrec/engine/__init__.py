"""Execution engines: where the LM work of a stage runs, never what it computes.

Two engines run the same code. The caller cuts its work into batches exactly as it always
has (an encoder's chunks of texts, a ranker's batches of users) and hands them to
:meth:`Engine.map`; each batch calls the LM through the one protocol
(:class:`~llmrec.lm.base.LanguageModel`). What differs is where the LM answers:

* :class:`LocalEngine` (the reference, and the default): batches run one after another in
  this process, on an LM loaded here;
* ``RayEngine`` (``RuntimeOptions(engine="ray")``, in :mod:`llmrec.engine._ray`, the only
  module that imports Ray): batches run concurrently, and each LM verb is answered by one of a
  pool of Ray actors that each hold a copy of the model. The LM disk cache stays in this
  process, in front of the pool, so only cache misses travel and answers are stored here as
  they come back; actors write nothing, so a batch Ray retries after a crash changes nothing.

Results are the same under both: a batch's LM call is the call the local engine makes, with
the same inputs (so batch boundaries, and with them padding, are the same), and results are
put back in batch order. Training, faiss, metrics and the latency probe stay local
(:func:`run_locally`; ``docs/distributed.md`` says why).

Example::

    engine = engine_for(RuntimeOptions(engine="ray", ray_actors=4))
    lm = engine.language_model("fake:16", {})
    vectors = list(engine.map(lambda texts: lm.encode(texts), [["a", "b"], ["c"]]))
    shutdown()
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from llmrec.errors import MissingExtraError
from llmrec.runtime import RuntimeOptions

if TYPE_CHECKING:
    from llmrec.lm.base import LanguageModel

__all__ = [
    "Engine",
    "LocalEngine",
    "describe",
    "engine_for",
    "engine_of",
    "is_local_only",
    "run_locally",
    "shutdown",
]

_T = TypeVar("_T")
_R = TypeVar("_R")


class Engine(Protocol):
    """Where batches of LM work run (see the module docstring)."""

    kind: str

    def map(self, fn: Callable[[_T], _R], items: Iterable[_T]) -> Iterator[_R]:
        """``fn(item)`` for each item, yielded in the order of ``items``."""
        ...

    def language_model(self, spec: str, options: dict[str, Any]) -> LanguageModel:
        """The LM ``spec`` names, built with backend ``options``, answering where this engine
        runs (no disk cache: the caller wraps one around it)."""
        ...

    def connect(self) -> None:
        """Join the cluster now (the first LM it loads does otherwise)."""
        ...

    def describe(self) -> dict[str, Any]:
        """What ran, for records: ``kind`` and, for Ray, version, nodes and actors."""
        ...

    def close(self) -> None:
        """Release what the engine holds (actors, the connection it opened)."""
        ...


class LocalEngine:
    """Batches one after another in this process: the reference every engine matches."""

    kind = "local"

    def map(self, fn: Callable[[_T], _R], items: Iterable[_T]) -> Iterator[_R]:
        for item in items:
            yield fn(item)

    def language_model(self, spec: str, options: dict[str, Any]) -> LanguageModel:
        from llmrec.lm.registry import load_lm

        return load_lm(spec, **options)

    def connect(self) -> None:
        """Nothing to join."""

    def describe(self) -> dict[str, Any]:
        return {"kind": "local"}

    def close(self) -> None:
        """Nothing to release."""


_LOCAL = LocalEngine()
_ENGINES: dict[tuple[Any, ...], Engine] = {}
_LOCK = threading.Lock()
_LOCAL_ONLY = threading.Event()


def _key(runtime: RuntimeOptions) -> tuple[Any, ...]:
    # the device too: with ray_actor_gpus unset, it decides the actors' GPUs
    return (runtime.ray_address, runtime.ray_actors, runtime.ray_actor_cpus,
            runtime.ray_actor_gpus, runtime.device)  # fmt: skip


def engine_for(runtime: RuntimeOptions | None) -> Engine:
    """The engine ``runtime`` names (local when ``None``); one per distinct set of Ray options
    in a process, kept until :func:`shutdown`. Ray is imported only here, on first use; a
    missing ``ray`` extra is a :class:`~llmrec.errors.MissingExtraError` with the pip command."""
    if runtime is None or runtime.engine == "local":
        return _LOCAL
    with _LOCK:
        key = _key(runtime)
        if key not in _ENGINES:
            try:
                from llmrec.engine._ray import RayEngine
            except ImportError as exc:
                if exc.name and exc.name.split(".")[0] == "ray":
                    raise MissingExtraError("ray", "ray") from None
                raise
            _ENGINES[key] = RayEngine(runtime)
        return _ENGINES[key]


def engine_of(runtime: RuntimeOptions | None, lm: LanguageModel) -> Engine:
    """The engine that runs batches calling ``lm``: ``runtime``'s when ``lm`` answers there
    (an LM that engine loaded), else the local engine, since an LM loaded in this process (one
    given by hand, say) takes one call at a time."""
    return engine_for(runtime) if lm.answers_remotely else _LOCAL


def describe(runtime: RuntimeOptions | None) -> dict[str, Any]:
    """What :func:`engine_for` ``(runtime)`` reports for a record (see :meth:`Engine.describe`)."""
    return engine_for(runtime).describe()


def shutdown() -> None:
    """Close every engine this process opened (their actors and Ray connections); safe to call
    when none was opened, and it imports nothing."""
    with _LOCK:
        engines = list(_ENGINES.values())
        _ENGINES.clear()
    for engine in reversed(engines):  # the one that opened the connection closes last
        engine.close()


@contextmanager
def run_locally() -> Iterator[None]:
    """Inside this block every engine answers in this process, one batch after another: the
    latency probe times what a single-machine server would answer, not a cluster's round
    trips."""
    _LOCAL_ONLY.set()
    try:
        yield
    finally:
        _LOCAL_ONLY.clear()


def is_local_only() -> bool:
    """Whether a :func:`run_locally` block is open."""
    return _LOCAL_ONLY.is_set()
