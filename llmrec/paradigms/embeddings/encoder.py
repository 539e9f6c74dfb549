"""Encode item and user texts through any :class:`~llmrec.lm.base.LanguageModel`.

The encoder is named by one config value (``encoder="minilm-l6"``, ``"smollm2-135m"``,
``"gemma3-270m"``, ``"openai:URL#MODEL"``, ``"fake:32"``) and resolved with
:func:`llmrec.lm.registry.load_lm`. Encodings are cached on disk per text (model id, pooling and
text are the key), so an interrupted encode resumes where it stopped; texts are sent in chunks
with a progress bar. Vectors come back L2-normalised, so inner products are cosines.

Example::

    enc = TextEncoder(EncoderConfig(encoder="fake:16", cache=False))
    vecs, info = enc.encode(["Toy Story (1995)", "Heat (1995)"])   # (2, 16) float32
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import Field, model_validator
from pydantic_core import PydanticCustomError

from llmrec import progress
from llmrec.config import StrictConfig, make_config
from llmrec.data.dataset import Dataset
from llmrec.engine import engine_of
from llmrec.lm.pool import LMPool, default_pool
from llmrec.lm.registry import backend_of
from llmrec.models.base import ModelConfig
from llmrec.paradigms.embeddings.index import normalize
from llmrec.paradigms.embeddings.text_views import ItemView, truncate_to_tokens
from llmrec.paradigms.embeddings.tune import EncoderTuneConfig, TunedEncoder
from llmrec.runtime import RuntimeOptions, lm_backend_options

if TYPE_CHECKING:
    from llmrec.lm.base import LanguageModel


class EncoderConfig(StrictConfig):
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
        runtime: the runtime options whose engine runs the LM (``None``: this process).
    """

    encoder: str = "minilm-l6"
    pooling: Literal["mean", "last"] | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    batch_size: int = Field(default=64, ge=1)
    chunk_size: int = Field(default=1024, ge=1)
    cache: bool = True
    cache_dir: str | None = None
    progress: bool = False
    lm_options: dict[str, Any] = Field(default_factory=dict)
    runtime: RuntimeOptions | None = None


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


def load_encoder(settings: EncoderConfig, lm_pool: LMPool | None = None) -> LanguageModel:
    """The LM named by ``settings`` (wrapped in the disk cache when asked), from ``lm_pool``
    (default :func:`~llmrec.lm.pool.default_pool`): loaded once, shared by every model of a
    run that encodes with it (text-kNN, LM-SASRec, the user tower, semantic IDs)."""
    pool = lm_pool if lm_pool is not None else default_pool()
    rt = settings.runtime
    # only another engine joins the key, so local runs share (and tests inject) as before
    engine = {"runtime": rt} if rt is not None and rt.engine != "local" else {}
    return pool.get(
        settings.encoder, lm_cache_dir=_cache_dir(settings), **settings.lm_options, **engine
    )


def encoder_lm(
    config: TextEncodingConfig,
    runtime: RuntimeOptions | None,
    lm: LanguageModel | None = None,
    lm_pool: LMPool | None = None,
    tuned: TunedEncoder | None = None,
) -> LanguageModel:
    """The LM a model encodes its texts with: ``lm`` when it was handed one, else ``tuned``
    (the encoder tuned in its fit) or the one ``config.encoder`` names, from ``lm_pool``
    (what :meth:`Recommender.language_models` reports, so that its usage can be counted)."""
    if lm is not None:
        return lm
    return load_encoder(config.encoder_settings(runtime, tuned), lm_pool)


def _cache_dir(settings: EncoderConfig) -> Path | None:
    # a fake encoder is instant and deterministic: caching it would only fill the disk
    if not settings.cache or settings.encoder.split(":")[0] == "fake":
        return None
    if settings.cache_dir is not None:
        return Path(settings.cache_dir)
    from llmrec.paths import lm_cache_dir

    return lm_cache_dir()


class TextEncoder:
    """Texts to unit vectors through the LM that ``config`` names (taken from ``lm_pool`` on
    first use), or through ``lm`` when given."""

    def __init__(
        self,
        config: EncoderConfig | Mapping[str, Any] | None = None,
        *,
        lm: LanguageModel | None = None,
        lm_pool: LMPool | None = None,
        **overrides: Any,
    ) -> None:
        self.settings = make_config(EncoderConfig, config, overrides, "encoder")
        self._lm = lm
        self._pool = lm_pool

    @property
    def lm(self) -> LanguageModel:
        if self._lm is None:
            self._lm = load_encoder(self.settings, self._pool)
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
        size = self.settings.chunk_size
        work = progress.LMWork.of("encoding", self.settings.encoder, "encode", unit="text")
        with _forced_progress(self.settings.progress):
            slices = progress.batches(len(cut.texts), size, desc=desc, unit="text", work=work)
            # each chunk is one LM call, on whichever engine: the same boundaries everywhere
            run = engine_of(self.settings.runtime, lm).map
            chunks = list(run(lambda rows: self._encode_chunk(lm, cut.texts[rows]), slices))
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


def _forced_progress(show: bool) -> AbstractContextManager[None]:
    """Progress for this encoding even in library use when the runtime options ask for it
    (``RuntimeOptions(progress=True)``); otherwise whatever the caller enabled (the CLI does)."""
    if show and not progress.is_enabled():
        return progress.reporting()
    return nullcontext()


class TextEncodingConfig(StrictConfig):
    """How item texts become vectors: the fields shared by every model that encodes item text
    (the embeddings models through :class:`TextModelConfig`, the semantic-ID models through
    :class:`~llmrec.paradigms.tokens._ids.SemanticIDConfig`). Flat, so that the CLI's
    ``--set params.encoder=smollm2-135m`` changes the encoder with one value.

    Attributes:
        encoder: LM spec (see :class:`EncoderConfig`).
        pooling: causal-LM pooling, ``mean`` or ``last``; ``None`` is the backend default.
        item_template: ``str.format`` template over the item text fields (``None``: the fields
            joined with ". ").
        item_fields: fields joined when there is no template (``None``: all).
        max_tokens: token budget per text (``None``: the encoder's context length).
        encode_batch_size: texts per LM forward.
        cache: keep encodings on disk (in the runtime options' ``cache_dir``), and tuned
            weights too.
        tune: tune the encoder contrastively on the training split in ``fit`` before encoding
            (:mod:`~llmrec.paradigms.embeddings.tune`; ``None``: zero-shot). Sentence-transformers
            encoders only.

    Where the cache lives, progress bars and backend options (device, dtype, threads) are
    runtime options (:class:`~llmrec.runtime.RuntimeOptions`), given to
    :meth:`encoder_settings`: they are not part of a model's identity.
    """

    encoder: str = "minilm-l6"
    pooling: Literal["mean", "last"] | None = None
    item_template: str | None = None
    item_fields: list[str] | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    encode_batch_size: int = Field(default=64, ge=1)
    cache: bool = True
    tune: EncoderTuneConfig | None = None

    @model_validator(mode="after")
    def _tunable(self) -> TextEncodingConfig:
        if self.tune is not None and backend_of(self.encoder) != "st":
            raise PydanticCustomError(  # no "Value error," before the message
                "tune_encoder",
                "tune needs a sentence-transformers encoder (minilm-l6 or st:PATH), not {spec}",
                {"spec": repr(self.encoder)},
            )
        return self

    def encoder_settings(
        self, runtime: RuntimeOptions | None = None, tuned: TunedEncoder | None = None
    ) -> EncoderConfig:
        """The encoder these fields name (``tuned`` instead, when given), run as ``runtime``
        says (default options)."""
        rt = runtime or RuntimeOptions()
        identity = {} if tuned is None else {"model_id": tuned.model_id}
        return EncoderConfig(
            encoder=self.encoder if tuned is None else tuned.spec,
            pooling=self.pooling,
            max_tokens=self.max_tokens,
            batch_size=self.encode_batch_size,
            cache=self.cache,
            cache_dir=rt.cache_dir,
            progress=rt.progress,
            lm_options={
                **rt.lm_options,
                **lm_backend_options(rt, backend_of(self.encoder)),
                **identity,
            },
            runtime=rt,
        )

    def item_view(self) -> ItemView:
        return ItemView(template=self.item_template, fields=self.item_fields)


class TextModelConfig(ModelConfig, TextEncodingConfig):
    """A model config with the encoder fields of :class:`TextEncodingConfig`."""


def encode_items(
    config: TextEncodingConfig,
    data: Dataset,
    *,
    lm: LanguageModel | None = None,
    lm_pool: LMPool | None = None,
    runtime: RuntimeOptions | None = None,
    tuned: TunedEncoder | None = None,
) -> tuple[np.ndarray, EncodeInfo]:
    """``(n_items, dim)`` float32 unit vectors of ``data``'s item texts, as ``config`` says,
    through ``lm``, else ``tuned``, else the LM ``config.encoder`` names (from ``lm_pool``), run
    as ``runtime`` says."""
    texts = config.item_view().render(data)
    encoder = TextEncoder(config.encoder_settings(runtime, tuned), lm=lm, lm_pool=lm_pool)
    return encoder.encode(texts, desc="encoding items")


def fit_text(
    config: TextEncodingConfig,
    train: Dataset,
    *,
    seed: int,
    runtime: RuntimeOptions | None,
    lm: LanguageModel | None = None,
    lm_pool: LMPool | None = None,
) -> tuple[TunedEncoder | None, np.ndarray, EncodeInfo, LanguageModel]:
    """The fit step every text model shares: the encoder tuned on ``train`` when
    ``config.tune`` is set (:func:`tune_for`), then ``train``'s items encoded with it (or with
    ``lm`` when handed one). Returns ``(tuned, (n_items, dim) float32 vectors, info, the LM
    that encoded)``."""
    tuned = tune_for(config, train, seed=seed, runtime=runtime)
    vectors, info = encode_items(
        config, train, lm=lm, lm_pool=lm_pool, runtime=runtime, tuned=tuned
    )
    return tuned, vectors, info, encoder_lm(config, runtime, lm, lm_pool, tuned)


def tune_for(
    config: TextEncodingConfig,
    train: Dataset,
    *,
    seed: int,
    runtime: RuntimeOptions | None = None,
) -> TunedEncoder | None:
    """The encoder ``config.tune`` asks for, tuned on ``train`` (pairs of its item texts as
    ``config`` renders them; ``seed`` unless ``tune.seed`` is set); ``None`` for a zero-shot
    config. Tuned weights are cached beside the encodings when ``config.cache`` is on."""
    if config.tune is None:
        return None
    from llmrec.paradigms.embeddings.tune_train import tune_encoder

    rt = runtime or RuntimeOptions()
    cache = _cache_dir(config.encoder_settings(rt))
    texts = config.item_view().render(train)
    return tune_encoder(
        config.encoder, texts, train, config.tune, seed=seed, runtime=rt, cache_dir=cache
    )
