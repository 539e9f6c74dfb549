"""Settings and helper shared by the models that consume semantic IDs.

:class:`SemanticIDConfig` is mixed into a model's config; :func:`make_semantic_ids` turns a
training dataset's item texts into :class:`~llmrec.paradigms.tokens.quantize.SemanticIDs`
through the LM protocol (``encode``), or reads a saved mapping table.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import Field, model_validator

from llmrec.data.dataset import Dataset
from llmrec.errors import ConfigError
from llmrec.lm.base import LanguageModel
from llmrec.lm.pool import LMPool
from llmrec.paradigms.embeddings.encoder import (
    TextEncodingConfig,
    encode_items,
    encoder_lm,
    load_encoder,
    tune_for,
)
from llmrec.paradigms.embeddings.tune import EncoderTuneConfig, TunedEncoder
from llmrec.paradigms.tokens.quantize import (
    RQVAE,
    RQKMeans,
    RQKMeansConfig,
    RQVAEConfig,
    SemanticIDs,
    prepare_vectors,
)
from llmrec.runtime import RuntimeOptions


class SemanticIDConfig(TextEncodingConfig):
    """Where a model's semantic IDs come from: item texts encoded as the embeddings models
    encode them (:class:`~llmrec.paradigms.embeddings.encoder.TextEncodingConfig`: the same
    encoder fields, truncation, disk cache and shared LM), then quantised.

    Attributes:
        cache: as in :class:`TextEncodingConfig`, but off by default here (no cache unless a
            ``cache_dir`` is given, as before).
        quantizer: ``"rq-kmeans"`` or ``"rq-vae"``.
        levels: ``L`` code levels (plus one de-duplication digit).
        codebook_size: ``K`` per level; ``None`` picks a size from the catalogue.
        balanced: balanced k-means (RQ-KMeans only).
        collaborative: weight of the items' collaborative factors appended to the LM vectors
            before quantising (0: text only). Each item's LM vector and its factor vector are
            unit-normalised, so 1.0 weighs interactions as much as text. Factors are a
            truncated SVD of the training user-item matrix; items without interactions get a
            zero factor vector and are placed by their text alone.
        collaborative_dim: number of SVD factors.
        semantic_ids: folder of a saved mapping table to use instead of encoding.

    The names of older saved configs are still read: ``text_template`` is ``item_template``,
    and ``lm_cache_dir`` (now the runtime option ``cache_dir``) turns ``cache`` on.
    """

    cache: bool = False
    quantizer: Literal["rq-kmeans", "rq-vae"] = "rq-kmeans"
    levels: int = Field(3, ge=1, le=8)
    codebook_size: int | None = Field(None, ge=2, le=4096)
    balanced: bool = False
    collaborative: float = Field(0.0, ge=0)
    collaborative_dim: int = Field(32, ge=1)
    semantic_ids: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _old_names(cls, data: Any) -> Any:
        """Accept the field names that configs saved before the shared config used."""
        if not isinstance(data, dict) or not ({"text_template", "lm_cache_dir"} & data.keys()):
            return data
        data = dict(data)
        if "text_template" in data:
            data.setdefault("item_template", data.pop("text_template"))
        if "lm_cache_dir" in data and data.pop("lm_cache_dir") is not None:
            data.setdefault("cache", True)
        return data


#: the name before the encoder config was shared (kept for imports)
SemanticIDFields = SemanticIDConfig


def quantize_vectors(
    vectors: object,
    cfg: SemanticIDConfig,
    seed: int,
    item_ids: object = None,
    runtime: RuntimeOptions | None = None,
) -> SemanticIDs:
    """Run the configured tokeniser on ``(n_items, dim)`` vectors."""
    x = np.asarray(vectors)
    ids = None if item_ids is None else np.asarray(item_ids)
    if cfg.quantizer == "rq-vae":
        common = {"levels": cfg.levels, "codebook_size": cfg.codebook_size, "seed": seed}
        return RQVAE(RQVAEConfig.model_validate(common), runtime=runtime).fit(x, ids)
    km = {"levels": cfg.levels, "codebook_size": cfg.codebook_size, "seed": seed}
    return RQKMeans(RQKMeansConfig.model_validate({**km, "balanced": cfg.balanced})).fit(x, ids)


def encoder_for(
    cfg: SemanticIDConfig,
    lm: LanguageModel | None,
    lm_pool: LMPool | None = None,
    runtime: RuntimeOptions | None = None,
    tuned: TunedEncoder | None = None,
) -> LanguageModel | None:
    """The LM :func:`make_semantic_ids` encodes with: ``tuned`` when given, else ``lm``, else
    the one ``cfg.encoder`` names (from ``lm_pool``, loaded now if needed); ``None`` when a
    saved table (``cfg.semantic_ids``) makes encoding needless. Models keep it so that its
    usage can be counted (``Recommender.language_models``)."""
    if tuned is not None:
        return load_encoder(cfg.encoder_settings(runtime, tuned), lm_pool)
    if lm is None and cfg.semantic_ids is not None:
        return None
    return encoder_lm(cfg, runtime, lm, lm_pool)


def fit_semantic_ids(
    train: Dataset,
    cfg: SemanticIDConfig,
    seed: int,
    *,
    lm: LanguageModel | None,
    lm_pool: LMPool | None,
    runtime: RuntimeOptions | None,
) -> tuple[SemanticIDs, LanguageModel | None, TunedEncoder | None]:
    """``(semantic IDs of train's items, the LM that encoded them, the tuned encoder)``: the
    encoder is tuned on ``train`` first when ``cfg.tune`` is set and no saved table is named."""
    tuned = None
    if cfg.semantic_ids is None:
        tuned = tune_for(cfg, train, seed=seed, runtime=runtime)
    lm = encoder_for(cfg, lm, lm_pool, runtime, tuned)
    ids = make_semantic_ids(train, cfg, seed, lm=lm, lm_pool=lm_pool, runtime=runtime)
    return ids, lm, tuned


def saved_tune(cfg: SemanticIDConfig) -> EncoderTuneConfig | None:
    """The tuning a saved model's folder must hold an encoder for (none with a saved table)."""
    return cfg.tune if cfg.semantic_ids is None else None


def make_semantic_ids(
    train: Dataset,
    cfg: SemanticIDConfig,
    seed: int,
    *,
    lm: LanguageModel | None = None,
    lm_pool: LMPool | None = None,
    runtime: RuntimeOptions | None = None,
) -> SemanticIDs:
    """Semantic IDs for every item of ``train``'s catalogue.

    Order of precedence: a saved table (``cfg.semantic_ids``), else item texts encoded by
    ``lm`` (or the LM that ``cfg.encoder`` names, from ``lm_pool``) and quantised.
    """
    if cfg.semantic_ids is not None:
        ids = SemanticIDs.load(cfg.semantic_ids)
        if ids.n_items != train.n_items:
            raise ConfigError(
                f"semantic IDs in {cfg.semantic_ids} cover {ids.n_items} items, "
                f"the dataset has {train.n_items}"
            )
        return ids
    vectors, _ = encode_items(cfg, train, lm=lm, lm_pool=lm_pool, runtime=runtime)
    if cfg.collaborative > 0:
        vectors = with_collaborative(vectors, train, cfg.collaborative, cfg.collaborative_dim, seed)
    return quantize_vectors(vectors, cfg, seed, train.item_ids, runtime)


def with_collaborative(
    vectors: np.ndarray, train: Dataset, weight: float, dim: int, seed: int
) -> np.ndarray:
    """``[unit(vectors), weight * unit(item factors)]``: item factors from a truncated SVD of
    ``train``'s binary user-item matrix (only training interactions, so nothing leaks from
    validation or test). Items no one interacted with get zeros there."""
    from scipy.sparse.linalg import svds

    mat = train.history().to_csr().astype(np.float64)
    k = min(dim, min(mat.shape) - 1)
    if k < 1:
        raise ConfigError(
            f"collaborative factors need at least 2 users and 2 items, got {mat.shape}"
        )
    v0 = np.random.default_rng(seed).standard_normal(min(mat.shape))
    _, sing, vt = svds(mat, k=k, v0=v0)
    factors = vt.T * np.sqrt(sing)[None, :]
    text = prepare_vectors(vectors, normalize=True)
    return np.hstack([text, weight * prepare_vectors(factors, normalize=True)]).astype(np.float32)
