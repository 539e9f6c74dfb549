"""One place that hands components their language models: :class:`LMPool`.

Loading a causal LM takes seconds to a minute, and several models of one run (text-kNN,
LM-SASRec, the user tower, semantic IDs) encode with the same one, so a pool keeps one instance
per (spec, disk-cache folder, options) and hands it to every component that asks. Components
take the pool as a keyword argument (``TextKNN(lm_pool=pool)``); without one they use
:func:`default_pool`, which tests clear between cases.

Example::

    pool = LMPool()
    a = pool.get("fake:16")
    a is pool.get("fake:16")                  # True: shared
    a is pool.get("fake:16", seed=1)          # False: other options, another instance
    pool.put(FakeLM(dim=8), "minilm-l6")      # inject an instance under a spec
    pool.clear()
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from llmrec.lm.base import LanguageModel

__all__ = ["LMPool", "default_pool"]

_Key = tuple[str, str, str]


def _key(spec: str, lm_cache_dir: str | Path | None, options: dict[str, Any]) -> _Key:
    return (spec, str(lm_cache_dir), repr(sorted(options.items())))


class LMPool:
    """Shared LM instances keyed by spec, disk-cache folder and backend options."""

    def __init__(self) -> None:
        self._lms: dict[_Key, LanguageModel] = {}
        self._lock = threading.Lock()

    def get(
        self, spec: str, *, lm_cache_dir: str | Path | None = None, **options: Any
    ) -> LanguageModel:
        """The LM that :func:`~llmrec.lm.registry.load_lm` builds for these arguments, loaded
        on the first request and shared afterwards."""
        key = _key(spec, lm_cache_dir, options)
        with self._lock:
            if key not in self._lms:
                from llmrec.lm.registry import load_lm

                self._lms[key] = load_lm(spec, lm_cache_dir=lm_cache_dir, **dict(options))
            return self._lms[key]

    def put(
        self,
        lm: LanguageModel,
        spec: str,
        *,
        lm_cache_dir: str | Path | None = None,
        **options: Any,
    ) -> None:
        """Make ``get`` with these arguments answer ``lm`` (tests, or a model built by hand)."""
        with self._lock:
            self._lms[_key(spec, lm_cache_dir, options)] = lm

    def clear(self, *, close: bool = False) -> None:
        """Forget every instance; with ``close``, release them too (servers, threads)."""
        with self._lock:
            lms, self._lms = list(self._lms.values()), {}
        if close:
            for lm in lms:
                lm.close()

    def __len__(self) -> int:
        return len(self._lms)


_DEFAULT = LMPool()


def default_pool() -> LMPool:
    """The pool components use when given none (one per process; tests clear it)."""
    return _DEFAULT
