"""Text-kNN: recommend the items whose text is nearest to what the user has liked.

Each item is its LM vector (from its text view). A user is the recency-weighted mean of their
history's item vectors (weight ``recency_decay ** age``, age 0 = newest), L2-normalised; items
are ranked by cosine similarity. No interaction is learned, so an item with text but no
training interactions is as reachable as any other — the cold-start promise of the paradigm.

Small catalogues are scored exactly (one matrix product, what ``IndexFlatIP`` would compute);
catalogues above ``index.exact_max`` are served from an approximate faiss index (HNSW or IVF),
searched ``search_depth`` items deep plus the user's history length, so that seen items can be
dropped and ``k`` remain. The index is saved beside the model as ``items.faiss``.

Example::

    model = TextKNN(encoder="minilm-l6", item_template="{title} ({year}). Genres: {genres}")
    model.fit(split.train).recommend([0, 1], k=10)
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Self

import numpy as np
from pydantic import Field

from llmrec.data.dataset import Dataset, UserHistory
from llmrec.errors import ConfigError
from llmrec.lm.base import LanguageModel
from llmrec.lm.pool import LMPool
from llmrec.models.base import Recommender
from llmrec.models.saved import FLOAT, expect
from llmrec.paradigms.embeddings.encoder import (
    TextModelConfig,
    fit_text,
)
from llmrec.paradigms.embeddings.index import IndexConfig, VectorIndex, normalize
from llmrec.paradigms.embeddings.tune import (
    TunedEncoder,
    restore_tuned,
    save_tuned,
    tuning_diagnostics,
)

INDEX_FILE = "items.faiss"


class TextKNNConfig(TextModelConfig):
    """Text-kNN settings (plus the encoder fields of :class:`TextModelConfig`).

    Attributes:
        recency_decay: weight ratio between consecutive history items (1 = plain mean).
        max_history: most recent items that form the user vector.
        index: the vector index (``auto``: exact up to ``exact_max`` items, HNSW above).
        search_depth: items an approximate index returns per user, beyond the history length.
    """

    recency_decay: float = Field(default=0.9, gt=0, le=1)
    max_history: int = Field(default=50, ge=1)
    index: IndexConfig = Field(default_factory=IndexConfig)
    search_depth: int = Field(default=200, ge=1)


class TextKNN(Recommender):
    """Cosine nearest items to the recency-weighted mean of the history's LM vectors."""

    name = "textknn"
    config_class = TextKNNConfig
    config: TextKNNConfig

    def __init__(
        self,
        config: TextKNNConfig | Mapping[str, Any] | None = None,
        *,
        lm: LanguageModel | None = None,
        lm_pool: LMPool | None = None,
        **overrides: Any,
    ) -> None:
        """``lm``: the encoder instance, else ``config.encoder`` from ``lm_pool`` (default:
        the process-wide pool)."""
        super().__init__(config, **overrides)
        self._lm, self._lm_pool = lm, lm_pool
        self.item_vectors: np.ndarray | None = None
        self.index: VectorIndex | None = None
        self.fit_info: dict[str, float] = {}
        self.tuned: TunedEncoder | None = None
        self._lms: list[LanguageModel] = []

    def fit(self, train: Dataset, valid: Dataset | None = None) -> Self:
        """Encode every item's text (interactions play no part beyond the fallback, and the
        encoder's tuning when ``tune`` is set)."""
        self._remember_catalogue(train)
        self.tuned, vectors, info, encoder = fit_text(
            self.config,
            train,
            seed=self.config.seed,
            runtime=self.runtime,
            lm=self._lm,
            lm_pool=self._lm_pool,
        )
        self._lms = [encoder]
        self.item_vectors = vectors
        self.fit_info = info.as_dict()
        self.index = self._build_index(vectors)
        return self

    def language_models(self) -> list[LanguageModel]:
        """The encoder the last :meth:`fit` encoded the items with."""
        return list(self._lms)

    def diagnostics(self) -> dict[str, Any]:
        """What tuning the encoder cost, when it was tuned."""
        return tuning_diagnostics(self.tuned)

    def _build_index(self, vectors: np.ndarray) -> VectorIndex:
        index = VectorIndex(self.config.index)
        if index.resolve_kind(len(vectors)) == "flat":
            return index  # exact scoring uses the vectors directly; nothing to build
        return index.build(vectors)

    def user_vectors(self, users: np.ndarray, history: UserHistory) -> np.ndarray:
        """``(len(users), dim)`` float32 unit vectors (zero rows for empty histories)."""
        assert self.item_vectors is not None
        cfg = self.config
        seqs = history.last(np.asarray(users, dtype=np.int64), cfg.max_history)  # newest last
        ages = np.arange(cfg.max_history - 1, -1, -1, dtype=np.float32)
        weights = np.where(seqs >= 0, cfg.recency_decay**ages, 0.0).astype(np.float32)
        gathered = self.item_vectors[np.maximum(seqs, 0)]  # (n, L, dim)
        return normalize(np.einsum("nl,nld->nd", weights, gathered))

    def score(self, users: np.ndarray, history: UserHistory) -> np.ndarray:
        assert self.item_vectors is not None
        queries = self.user_vectors(users, history)
        if self._is_exact():
            return queries @ self.item_vectors.T
        if self.index is None:  # loaded without its index file: rebuild once
            self.index = self._build_index(self.item_vectors)
        lengths = history.lengths()[np.asarray(users, dtype=np.int64)]
        depth = min(self.n_items, self.config.search_depth + int(lengths.max(initial=0)))
        found, ids = self.index.search(queries, depth)
        scores = np.full((len(queries), self.n_items), -np.inf, dtype=np.float32)
        rows = np.repeat(np.arange(len(queries)), depth).reshape(len(queries), depth)
        ok = ids >= 0
        scores[rows[ok], ids[ok]] = found[ok]
        return scores

    # --- persistence ---------------------------------------------------------------------------
    def _state(self) -> dict[str, np.ndarray]:
        assert self.item_vectors is not None
        return {"item_vectors": self.item_vectors}

    def _check_state(self, state: Mapping[str, np.ndarray]) -> None:
        """``item_vectors``: ``(n_items, dim)`` floats."""
        expect(state, "item_vectors", FLOAT, (self.n_items, None))

    def _load_state(self, state: dict[str, np.ndarray]) -> None:
        self.item_vectors = state["item_vectors"]
        self.index = None  # _load_files reads a saved one; otherwise rebuilt on first use

    def _is_exact(self) -> bool:
        return VectorIndex(self.config.index).resolve_kind(self.n_items) == "flat"

    def _save_files(self, folder: Path) -> None:
        """``items.faiss`` beside the arrays, for an approximate index; the tuned encoder in
        ``encoder/``."""
        if self.index is not None and len(self.index):
            self.index.save(folder / INDEX_FILE)
        save_tuned(self.tuned, folder)

    def _load_files(self, folder: Path) -> None:
        """Read the saved faiss index instead of rebuilding it (minutes at 1M items)."""
        self.tuned = restore_tuned(folder, self.config.tune)
        if (folder / INDEX_FILE).is_file():
            index = VectorIndex.load(folder / INDEX_FILE)
            assert self.item_vectors is not None
            dim = self.item_vectors.shape[1]
            if (len(index), index.dim) != (self.n_items, dim):
                raise ConfigError(
                    f"{INDEX_FILE} holds {len(index)} vectors of {index.dim} dimensions, "
                    f"expected {self.n_items} of {dim}"
                )
            self.index = index
