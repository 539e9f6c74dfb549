"""Language-model backends behind one protocol (see :mod:`llmrec.lm.base`)."""

from llmrec.lm.base import LanguageModel, LMStats, Pooling

__all__ = ["LMStats", "LanguageModel", "Pooling"]
