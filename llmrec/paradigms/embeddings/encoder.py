"""Encode item and user texts through any :class:`~llmrec.lm.base.LanguageModel`.

The encoder is named by one config value (``encoder="minilm-l6"``, ``"smollm2-135m"``,
``"gemma3-270m"``, ``"openai:URL#MODEL"``, ``"fake:32"``) and resolved with
:func:`llmrec.lm.registry.load_lm`. Encodings are cached on disk per text (model id, pooling and
text are the key), so an interrupted encode resumes where it stopped; texts are sent in chunks
with a progress bar. Vectors come back L2-normalised, so inner products are cosines.

Example::

    enc = TextEncoder(EncoderSettings(encoder="fake:16", cache=False))
    vecs, info = enc.encode(["Toy Story (1995)", "Heat (1995)"])   # (2, 16) float32
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from llmrec.data.dataset import Dataset
from llmrec.models.base import ModelConfig
from llmrec.paradigms.embeddings.index import normalize
from llmrec.paradigms.embeddings.text_views import ItemView, truncate_to_tokens

if TYPE_CHECKING:
    from llmrec.lm.base import LanguageModel


class EncoderSettings(BaseModel):
    """Which LM encodes texts, and how.

    Attributes:
        encoder: an LM spec for :func:`llmrec.lm.registry.load_lm`.
        pooling: for causal LMs, ``mean`` or ``last`` hidden-state pooling; ``None`` keeps the
            backend's default (sentence encoders fix their own pooling).
        max_tokens: token budget per text; ``None`` is the encoder's context length.
        batch_size: texts per forward pass.
        chunk_size: texts per progress step (and per cache commit).
        cache: keep encodings on disk.
        cache_dir: the cache folder; ``None`` is ``llmrec.paths.lm_cache_dir()``.
        progress: show a progress bar.
        lm_options: extra keyword options for the backend (e.g. ``{"n_threads": 2}``).
    """

    model_config = ConfigDict(extra="forbid")

    encoder: str = "minilm-l6"
    pooling: Literal["mean", "last"] | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    batch_size: int = Field(default=64, ge=1)
    chunk_size: int = Field(default=1024, ge=1)
    cache: bool = True
    cache_dir: str | None = None
    progress: bool = False
    lm_options: dict[str, Any] = Field(default_factory=dict)


@dataclass
class EncodeInfo:
    """What one :meth:`TextEncoder.encode` call did.

    Attributes:
        n_texts: texts encoded.
        n_truncated: texts cut to the token budget.
        mean_tokens: mean token count of the texts before cutting.
        seconds: wall time, including cache reads.
        cache_hits: encodings read from the disk cache.
    """

    n_texts: int
    n_truncated: int
    mean_tokens: float
    seconds: float
    cache_hits: int

    def as_dict(self) -> dict[str, float]:
        return {
            "n_texts": self.n_texts,
            "n_truncated": self.n_truncated,
            "mean_tokens": self.mean_tokens,
            "encode_s": self.seconds,
            "cache_hits": self.cache_hits,
        }


#: loaded LMs, keyed by (spec, cache folder, options): loading a causal LM takes seconds to
#: a minute, and several models of one run (text-kNN, LM-SASRec, user tower) share it
_LOADED: dict[tuple[str, str, str], LanguageModel] = {}


def load_encoder(settings: EncoderSettings) -> LanguageModel:
    """The LM named by ``settings`` (wrapped in the disk cache when asked), loaded once."""
    from llmrec.lm.registry import load_lm

    cache_dir = _cache_dir(settings)
    key = (settings.encoder, str(cache_dir), repr(sorted(settings.lm_options.items())))
    if key not in _LOADED:
        _LOADED[key] = load_lm(
            settings.encoder, lm_cache_dir=cache_dir, **dict(settings.lm_options)
        )
    return _LOADED[key]


def _cache_dir(settings: EncoderSettings) -> Path | None:
    # a fake encoder is instant and deterministic: caching it would only fill the disk
    if not settings.cache or settings.encoder.split(":")[0] == "fake":
        return None
    if settings.cache_dir is not None:
        return Path(settings.cache_dir)
    from llmrec.paths import lm_cache_dir

    return lm_cache_dir()


class TextEncoder:
    """Texts to unit vectors through the LM that ``settings`` names (loaded on first use)."""

    def __init__(self, settings: EncoderSettings, lm: LanguageModel | None = None) -> None:
        self.settings = settings
        self._lm = lm

    @property
    def lm(self) -> LanguageModel:
        if self._lm is None:
            self._lm = load_encoder(self.settings)
        return self._lm

    def encode(
        self, texts: Sequence[str], *, desc: str = "encoding"
    ) -> tuple[np.ndarray, EncodeInfo]:
        """``(len(texts), dim)`` float32 unit vectors and what it took."""
        lm = self.lm
        start = time.perf_counter()
        hits_before = lm.stats.cache_hits
        budget = self.settings.max_tokens or lm.context_length
        cut = truncate_to_tokens(texts, lm.count_tokens, budget)
        chunks = []
        size = self.settings.chunk_size
        for begin in _progress(range(0, len(cut.texts), size), self.settings.progress, desc, size):
            chunk = cut.texts[begin : begin + size]
            chunks.append(self._encode_chunk(lm, chunk))
        if chunks:
            vectors = normalize(np.concatenate(chunks))
        else:
            vectors = np.zeros((0, 0), dtype=np.float32)
        info = EncodeInfo(
            n_texts=len(cut.texts),
            n_truncated=cut.n_truncated,
            mean_tokens=float(cut.n_tokens.mean()) if len(cut.n_tokens) else 0.0,
            seconds=time.perf_counter() - start,
            cache_hits=lm.stats.cache_hits - hits_before,
        )
        return vectors, info

    def _encode_chunk(self, lm: LanguageModel, texts: list[str]) -> np.ndarray:
        if self.settings.pooling is None:
            return lm.encode(texts, batch_size=self.settings.batch_size)
        return lm.encode(texts, batch_size=self.settings.batch_size, pooling=self.settings.pooling)


def _progress(steps: range, show: bool, desc: str, size: int) -> Any:
    if not show or len(steps) <= 1:
        return steps
    from tqdm.auto import tqdm

    return tqdm(steps, desc=desc, unit="chunk", unit_scale=False, postfix={"texts/chunk": size})


class TextModelConfig(ModelConfig):
    """Config fields shared by the models that encode item text (flat, so that the CLI's
    ``--set params.encoder=smollm2-135m`` changes the encoder with one value).

    Attributes:
        encoder: LM spec (see :class:`EncoderSettings`).
        pooling: causal-LM pooling, ``mean`` or ``last``; ``None`` is the backend default.
        item_template: ``str.format`` template over the item text fields (``None``: the fields
            joined with ". ").
        item_fields: fields joined when there is no template (``None``: all).
        max_tokens: token budget per text (``None``: the encoder's context length).
        encode_batch_size: texts per LM forward.
        cache: keep encodings on disk; ``cache_dir`` ``None`` is the default LM cache folder.
        progress: show encoding progress.
        lm_options: extra backend options.
    """

    encoder: str = "minilm-l6"
    pooling: Literal["mean", "last"] | None = None
    item_template: str | None = None
    item_fields: list[str] | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    encode_batch_size: int = Field(default=64, ge=1)
    cache: bool = True
    cache_dir: str | None = None
    progress: bool = False
    lm_options: dict[str, Any] = Field(default_factory=dict)

    def encoder_settings(self) -> EncoderSettings:
        return EncoderSettings(
            encoder=self.encoder,
            pooling=self.pooling,
            max_tokens=self.max_tokens,
            batch_size=self.encode_batch_size,
            cache=self.cache,
            cache_dir=self.cache_dir,
            progress=self.progress,
            lm_options=dict(self.lm_options),
        )

    def item_view(self) -> ItemView:
        return ItemView(template=self.item_template, fields=self.item_fields)


def encode_items(config: TextModelConfig, data: Dataset) -> tuple[np.ndarray, EncodeInfo]:
    """``(n_items, dim)`` float32 unit vectors of ``data``'s item texts, as ``config`` says."""
    texts = config.item_view().render(data)
    return TextEncoder(config.encoder_settings()).encode(texts, desc="encoding items")
