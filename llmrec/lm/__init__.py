"""Language-model backends behind one protocol (see :mod:`llmrec.lm.base`).

Backends that need torch or other heavy packages are imported on first use of their name.
"""

from __future__ import annotations

import importlib
from typing import Any

from llmrec.lm.base import LanguageModel, LMStats, Pooling
from llmrec.lm.cache import CachedLM, CacheError
from llmrec.lm.fake import FakeLM
from llmrec.lm.registry import ModelInfo, list_models, load_lm

_LAZY = {
    "HFCausalLM": "llmrec.lm.hf",
    "SentenceTransformerLM": "llmrec.lm.st",
}

__all__ = [
    "CacheError",
    "CachedLM",
    "FakeLM",
    "HFCausalLM",
    "LMStats",
    "LanguageModel",
    "ModelInfo",
    "Pooling",
    "SentenceTransformerLM",
    "list_models",
    "load_lm",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'llmrec.lm' has no attribute {name!r}")
