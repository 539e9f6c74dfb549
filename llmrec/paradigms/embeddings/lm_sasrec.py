"""SASRec whose item table comes from LM vectors of item text (the UniSRec idea).

Each item's text is encoded once by a frozen LM; the vectors are PCA-whitened (centred,
decorrelated, unit variance — anisotropic LM vectors otherwise crowd into a narrow cone) and
a small learned MLP adaptor maps them to SASRec's hidden size. With ``item_repr="text+id"``
a learned ID embedding is added for items with at least ``id_min_count`` training
interactions; with ``"text"`` the table is the adaptor's output alone. Either way an item with
text but no training interactions gets a meaningful vector, so it can be recommended.

Everything else — network, causal all-positions loss, early stopping on validation NDCG@10,
scoring — is :class:`~llmrec.models.sasrec.SASRec`'s. The frozen, whitened vectors are a
buffer of the network, saved with it, so a loaded model needs no LM.

Example::

    model = LMSASRec(encoder="minilm-l6", item_template="{title} ({year}). Genres: {genres}")
    model.fit(split.train, split.valid)
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, Self

import numpy as np
from pydantic import Field

from llmrec.data.dataset import Dataset
from llmrec.lm.base import LanguageModel
from llmrec.lm.pool import LMPool
from llmrec.models.sasrec import SASRec, SASRecConfig
from llmrec.models.saved import FLOAT, NUMBER, expect
from llmrec.paradigms.embeddings.encoder import (
    TextModelConfig,
    fit_text,
)
from llmrec.paradigms.embeddings.tune import (
    TunedEncoder,
    restore_tuned,
    save_tuned,
    tuning_diagnostics,
)


class LMSASRecConfig(SASRecConfig, TextModelConfig):
    """SASRec's settings, the encoder fields of :class:`TextModelConfig`, and the adaptor's.

    Attributes:
        item_repr: ``text`` (adaptor output only) or ``text+id`` (plus a learned ID embedding).
        whiten_dim: principal components kept by the whitening (``None``: all).
        adaptor_hidden: hidden width of the adaptor MLP.
        adaptor_dropout: dropout on the whitened vectors while training.
        id_min_count: training interactions an item needs to get an ID embedding.
    """

    item_repr: Literal["text", "text+id"] = "text+id"
    whiten_dim: int | None = Field(default=None, ge=1)
    adaptor_hidden: int = Field(default=256, ge=1)
    adaptor_dropout: float = Field(default=0.2, ge=0, lt=1)
    id_min_count: int = Field(default=1, ge=0)


class LMSASRec(SASRec):
    """SASRec with an item table built from frozen LM vectors through a learned adaptor."""

    name = "lm-sasrec"
    config_class = LMSASRecConfig
    config: LMSASRecConfig

    def __init__(
        self,
        config: LMSASRecConfig | Mapping[str, Any] | None = None,
        *,
        lm: LanguageModel | None = None,
        lm_pool: LMPool | None = None,
        **overrides: Any,
    ) -> None:
        """``lm``: the encoder instance, else ``config.encoder`` from ``lm_pool`` (default:
        the process-wide pool)."""
        super().__init__(config, **overrides)
        self._lm, self._lm_pool = lm, lm_pool
        self._text: np.ndarray | None = None
        self._has_id: np.ndarray | None = None
        self.fit_info: dict[str, float] = {}
        self.tuned: TunedEncoder | None = None
        self._lms: list[LanguageModel] = []

    def fit(self, train: Dataset, valid: Dataset | None = None) -> Self:
        """Tune the encoder on ``train`` when ``tune`` is set; encode and whiten the item
        texts, then train SASRec around the adaptor."""
        self.tuned, vectors, info, encoder = fit_text(
            self.config,
            train,
            seed=self.config.seed,
            runtime=self.runtime,
            lm=self._lm,
            lm_pool=self._lm_pool,
        )
        self._lms = [encoder]
        self._text = whiten(vectors, self.config.whiten_dim)
        self._has_id = train.item_popularity() >= self.config.id_min_count
        self.fit_info = info.as_dict()
        return super().fit(train, valid)

    def language_models(self) -> list[LanguageModel]:
        """The encoder the last :meth:`fit` encoded the items with."""
        return list(self._lms)

    def diagnostics(self) -> dict[str, Any]:
        """What tuning the encoder cost, when it was tuned."""
        return tuning_diagnostics(self.tuned)

    def _save_files(self, folder: Path) -> None:
        """The tuned encoder in ``encoder/`` (the vectors are in the state)."""
        super()._save_files(folder)
        save_tuned(self.tuned, folder)

    def _load_files(self, folder: Path) -> None:
        super()._load_files(folder)
        self.tuned = restore_tuned(folder, self.config.tune)

    def _build_net(self) -> Any:
        """The network, its item table made from the whitened text vectors."""
        from llmrec.nets.text_table import LMSASRecNet

        assert self._text is not None and self._has_id is not None
        return LMSASRecNet(self.n_items, self.config, self._text, self._has_id)

    def _check_state(self, state: Mapping[str, np.ndarray]) -> None:
        """The whitened text table and ID mask, one row per item plus padding; the network's
        own arrays are checked against it when loaded."""
        expect(state, "net.item_emb.text", FLOAT, (self.n_items + 1, None))
        expect(state, "net.item_emb.id_mask", NUMBER, (self.n_items + 1, 1))

    def _load_state(self, state: dict[str, np.ndarray]) -> None:
        self._text = state["net.item_emb.text"][1:]
        self._has_id = state["net.item_emb.id_mask"][1:, 0] > 0
        super()._load_state(state)


def whiten(vectors: np.ndarray, n_components: int | None = None, eps: float = 1e-5) -> np.ndarray:
    """PCA whitening: ``(n, d)`` float → ``(n, min(d, n_components))`` float32, zero-mean with
    identity covariance over the ``n`` rows (components ordered by variance)."""
    x = np.asarray(vectors, dtype=np.float64)
    centred = x - x.mean(axis=0, keepdims=True)
    cov = centred.T @ centred / max(len(x) - 1, 1)
    values, basis = np.linalg.eigh(cov)
    order = np.argsort(values)[::-1][: n_components or len(values)]
    scale = 1.0 / np.sqrt(np.maximum(values[order], 0.0) + eps)
    return (centred @ basis[:, order] * scale).astype(np.float32)
