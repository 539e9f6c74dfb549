"""Paradigm 2, LLM tokens + RS: semantic IDs and LM-generated tags, and the models that use them.

* :mod:`~llmrec.paradigms.tokens.quantize` — RQ-KMeans and RQ-VAE semantic IDs, diagnostics,
  mapping tables;
* :mod:`~llmrec.paradigms.tokens.tags` — LM-written item tags and user interest tags;
* :class:`GenerativeRetrieval` (``"tiger"``) — next-item semantic ID decoded by constrained beam
  search;
* :class:`TokenSASRec` (``"token-sasrec"``) — SASRec with items embedded from their codes.

Torch-backed classes are imported on first use, so importing this package stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

from llmrec.paradigms.tokens.quantize import (
    RQVAE,
    QuantDiagnostics,
    RQKMeans,
    RQKMeansConfig,
    RQVAEConfig,
    SemanticIDs,
    default_codebook_size,
)

_LAZY = {
    "GenerativeRetrieval": "llmrec.paradigms.tokens.generative",
    "GenerativeConfig": "llmrec.paradigms.tokens.generative",
    "TokenSASRec": "llmrec.paradigms.tokens.token_sasrec",
    "TokenSASRecConfig": "llmrec.paradigms.tokens.token_sasrec",
    "TagConfig": "llmrec.paradigms.tokens.tags",
    "TagResult": "llmrec.paradigms.tokens.tags",
    "generate_item_tags": "llmrec.paradigms.tokens.tags",
    "generate_user_tags": "llmrec.paradigms.tokens.tags",
}

__all__ = [
    "RQVAE",
    "GenerativeConfig",
    "GenerativeRetrieval",
    "QuantDiagnostics",
    "RQKMeans",
    "RQKMeansConfig",
    "RQVAEConfig",
    "SemanticIDs",
    "TagConfig",
    "TagResult",
    "TokenSASRec",
    "TokenSASRecConfig",
    "default_codebook_size",
    "generate_item_tags",
    "generate_user_tags",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'llmrec.paradigms.tokens' has no attribute {name!r}")
