"""``sentence-transformers`` backend: encoders only (all-MiniLM-L6-v2 and friends).

Texts are tokenised once by llmrec: the token counts give the truncation statistic and the
length buckets, and the features go straight to the model's modules (no second tokenisation).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field

from llmrec.config import StrictConfig, validated
from llmrec.errors import BackendError, ConfigError, require
from llmrec.lm.base import LanguageModel, Pooling, check_vectors, quiet_loading

log = logging.getLogger(__name__)


class STConfig(StrictConfig):
    """Settings of :class:`SentenceTransformerLM`.

    Attributes:
        path: a local sentence-transformers folder.
        n_threads: torch intra-op threads; ``None`` leaves torch's setting alone.
        device: ``cpu`` or ``cuda[:N]``, as :class:`~llmrec.runtime.RuntimeOptions` resolve it.
        batch_size: default texts per forward.
        normalize: L2-normalise the vectors.
        model_id: cache-key identity; derived from the path when not given.
    """

    path: str
    n_threads: int | None = Field(default=None, ge=1)
    device: str = "cpu"
    batch_size: int = Field(default=64, ge=1)
    normalize: bool = True
    model_id: str | None = None


class SentenceTransformerLM(LanguageModel):
    """Encodes texts with a sentence-transformers model on its device (default the CPU); other
    verbs raise BackendError.

    Example::

        lm = SentenceTransformerLM("/path/to/all-MiniLM-L6-v2")
        lm.encode(["Toy Story (1995)"]).shape    # (1, 384), float32, unit norm
    """

    def __init__(self, path: str | Path, **options: Any) -> None:
        super().__init__()
        self.config = validated(
            STConfig, {"path": str(path), **options}, "invalid SentenceTransformerLM options"
        )
        st: Any = require("sentence_transformers", "lm")
        import torch

        if self.config.n_threads is not None:
            torch.set_num_threads(self.config.n_threads)
        folder = Path(self.config.path).expanduser()
        if not folder.is_dir():
            raise ConfigError(f"sentence-transformers folder not found: {folder}")
        try:
            with quiet_loading():
                self.model = st.SentenceTransformer(str(folder), device=self.config.device)
        except (OSError, ValueError) as exc:
            raise BackendError(f"cannot load sentence-transformers model {folder}: {exc}") from exc
        self.model.eval()
        self.model_id = self.config.model_id or f"st:{folder.name}"
        if folder.name == "model":  # packaged models live in .../<package>/model
            self.model_id = self.config.model_id or f"st:{folder.parent.name}"

    @property
    def context_length(self) -> int:
        return int(self.model.max_seq_length)

    @property
    def dim(self) -> int:
        # sentence-transformers 6 renamed the method; older versions only have the long name
        getter = getattr(self.model, "get_embedding_dimension", None)
        if getter is None:
            getter = self.model.get_sentence_embedding_dimension
        return int(getter())

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        if not texts:
            return []
        return [len(ids) for ids in self.model.tokenizer(list(texts))["input_ids"]]

    def encode(
        self, texts: Sequence[str], *, batch_size: int = 64, pooling: Pooling | None = None
    ) -> np.ndarray:
        """``(len(texts), dim)`` float32; texts over ``max_seq_length`` tokens keep their start.

        ``pooling`` must be ``None``: the model folder fixes its own pooling.
        """
        import torch

        if pooling is not None:
            raise ConfigError("a sentence-transformers model has its own pooling; pass None")
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        tokenizer = self.model.tokenizer
        limit = self.context_length
        lengths = [len(ids) for ids in tokenizer(list(texts))["input_ids"]]
        self._count(
            prompt_tokens=sum(min(n, limit) for n in lengths),
            truncated=sum(n > limit for n in lengths),
        )
        order = np.argsort([-n for n in lengths], kind="stable")  # similar lengths pad less
        with torch.inference_mode():
            for start in range(0, len(order), batch_size):
                idx = order[start : start + batch_size]
                features = tokenizer(
                    [texts[i] for i in idx],
                    padding=True,
                    truncation=True,
                    max_length=limit,
                    return_tensors="pt",
                )
                features = {k: v.to(self.model.device) for k, v in features.items()}
                vectors = self.model(features)["sentence_embedding"].float()
                if self.config.normalize:
                    vectors = torch.nn.functional.normalize(vectors, dim=-1)
                out[idx] = vectors.cpu().numpy()
        return check_vectors(out, len(texts), f"{self.model_id} encode")
