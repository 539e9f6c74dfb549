"""Paradigm 1 — LLM embeddings + a conventional recommender.

A language model encodes item and user text into vectors; conventional recommenders consume
them: :class:`TextKNN` (nearest items to the user's history), :class:`LMSASRec` (SASRec over an
item table adapted from the LM vectors) and :class:`UserTower` (the user's own text, for users
without history). The encoder is one config value (``encoder="minilm-l6"``); ``tune:``
(:class:`EncoderTuneConfig`) tunes it on the training split first.

Torch is imported only when :class:`LMSASRec` is used; faiss only when an index is built.
"""

from llmrec.paradigms.embeddings.encoder import (
    EncodeInfo,
    EncoderConfig,
    TextEncoder,
    TextModelConfig,
    encode_items,
)
from llmrec.paradigms.embeddings.index import IndexConfig, VectorIndex, normalize
from llmrec.paradigms.embeddings.knn import TextKNN, TextKNNConfig
from llmrec.paradigms.embeddings.text_views import (
    ItemView,
    TruncatedTexts,
    UserView,
    truncate_to_tokens,
)
from llmrec.paradigms.embeddings.tune import EncoderTuneConfig, EncoderTuneReport, TunedEncoder
from llmrec.paradigms.embeddings.user_tower import UserTower, UserTowerConfig

__all__ = [
    "EncodeInfo",
    "EncoderConfig",
    "EncoderTuneConfig",
    "EncoderTuneReport",
    "IndexConfig",
    "ItemView",
    "LMSASRec",
    "LMSASRecConfig",
    "TextEncoder",
    "TextKNN",
    "TextKNNConfig",
    "TextModelConfig",
    "TruncatedTexts",
    "TunedEncoder",
    "UserTower",
    "UserTowerConfig",
    "UserView",
    "VectorIndex",
    "encode_items",
    "normalize",
    "truncate_to_tokens",
]


def __getattr__(name: str) -> object:
    # LMSASRec pulls in the SASRec module; load it only when asked for
    if name in ("LMSASRec", "LMSASRecConfig"):
        from llmrec.paradigms.embeddings import lm_sasrec

        return getattr(lm_sasrec, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
