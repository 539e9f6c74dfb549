"""SASRec whose item representation is built from semantic tokens.

An item's embedding is the sum of its semantic-ID code embeddings (one table per tuple
position), optionally plus the mean of its tag embeddings and its own ID embedding. Items that
share codes share parameters, so an item seen a few times in training borrows what its code
neighbours learned — the cold-start case where an ID-only table has nothing to go on.

Everything else — network, all-positions causal loss, early stopping on validation NDCG@10,
scoring — is :class:`~llmrec.models.sasrec.SASRec`, reused by subclassing: the network SASRec
builds gets its ``item_emb`` module replaced by
:class:`~llmrec.nets.token_table.TokenEmbedding`, which answers the two things SASRec asks of
it (``item_emb(tokens)`` and ``item_emb.weight``).

Example::

    model = TokenSASRec(encoder="minilm-l6", id_embedding=True).fit(split.train, split.valid)
    evaluate(model, split)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Self

import numpy as np

from llmrec.data.dataset import Dataset
from llmrec.lm.base import LanguageModel
from llmrec.lm.pool import LMPool
from llmrec.models._torch import torch_session
from llmrec.models.sasrec import SASRec, SASRecConfig
from llmrec.models.saved import INTEGER, expect
from llmrec.paradigms.embeddings.tune import (
    TunedEncoder,
    restore_tuned,
    save_tuned,
    tuning_diagnostics,
)
from llmrec.paradigms.tokens._ids import SemanticIDConfig, fit_semantic_ids, saved_tune
from llmrec.paradigms.tokens.quantize import SemanticIDs, semantic_ids_from_state


class TokenSASRecConfig(SASRecConfig, SemanticIDConfig):
    """SASRec settings plus where the semantic IDs come from, and:

    Attributes:
        id_embedding: also add a per-item ID embedding (warm items keep their own vector;
            cold ones lean on their codes). ``False`` is the pure semantic-ID model.
        use_dedup_digit: embed the de-duplication digit too (it separates colliding items
            but carries no meaning).
    """

    id_embedding: bool = True
    use_dedup_digit: bool = False


class TokenSASRec(SASRec):
    """:class:`SASRec` with item embeddings summed from semantic-ID codes (and tags)."""

    name = "token-sasrec"
    config_class = TokenSASRecConfig  # type: ignore[assignment]
    config: TokenSASRecConfig

    def __init__(
        self,
        config: TokenSASRecConfig | Mapping[str, Any] | None = None,
        *,
        ids: SemanticIDs | None = None,
        tags: Sequence[Sequence[str]] | None = None,
        lm: LanguageModel | None = None,
        lm_pool: LMPool | None = None,
        **overrides: Any,
    ) -> None:
        """``ids``: ready semantic IDs; ``tags``: per-item tag lists (one list per item index);
        ``lm``: the encoder instance, else ``config.encoder`` from ``lm_pool``."""
        self.ids = ids
        self.tag_index: np.ndarray | None = None  # (n_items, max_tags) int64, -1 = none
        self.tag_vocab: list[str] = []
        self._lm, self._lm_pool = lm, lm_pool
        self.tuned: TunedEncoder | None = None
        super().__init__(config, **overrides)
        if tags is not None:
            self.tag_vocab = sorted({t for item in tags for t in item})
            pos = {t: i for i, t in enumerate(self.tag_vocab)}
            width = max([1, *(len(item) for item in tags)])
            self.tag_index = np.full((len(tags), width), -1, dtype=np.int64)
            for row, item in enumerate(tags):
                self.tag_index[row, : len(item)] = [pos[t] for t in item]

    def language_models(self) -> list[LanguageModel]:
        """The LM the item texts were encoded with for the semantic IDs (none when they were
        given or loaded)."""
        return [self._lm] if self._lm is not None else []

    def diagnostics(self) -> dict[str, Any]:
        """What tuning the encoder cost, when it was tuned."""
        return tuning_diagnostics(self.tuned)

    def _save_files(self, folder: Path) -> None:
        """The tuned encoder in ``encoder/`` (the semantic IDs are in the state)."""
        super()._save_files(folder)
        save_tuned(self.tuned, folder)

    def _load_files(self, folder: Path) -> None:
        super()._load_files(folder)
        self.tuned = restore_tuned(folder, saved_tune(self.config))

    def _build_net(self) -> Any:
        """SASRec's network with the item table replaced by summed code (and tag) embeddings."""
        net = super()._build_net()
        net.item_emb = self._token_embedding(net.item_emb.embedding_dim)
        return net

    def _token_embedding(self, dim: int) -> Any:
        from llmrec.nets.token_table import TokenEmbedding

        assert self.ids is not None
        codes = self.ids.codes if self.config.use_dedup_digit else self.ids.codes[:, :-1]
        sizes = self.ids.vocab_sizes[: codes.shape[1]]
        return TokenEmbedding(codes, sizes, dim, self.config.id_embedding, self.tag_index)

    def fit(self, train: Dataset, valid: Dataset | None = None) -> Self:
        if self.ids is None or self.ids.n_items != train.n_items:
            cfg = self.config
            self.ids, self._lm, self.tuned = fit_semantic_ids(
                train, cfg, cfg.seed, lm=self._lm, lm_pool=self._lm_pool, runtime=self.runtime
            )
        if self.tag_index is not None and len(self.tag_index) != train.n_items:
            from llmrec.errors import ConfigError

            raise ConfigError(f"{len(self.tag_index)} tag lists for {train.n_items} items")
        return super().fit(train, valid)

    # --- persistence -------------------------------------------------------------------------
    def _state(self) -> dict[str, np.ndarray]:
        assert self.ids is not None
        state = super()._state()
        state["codes"] = self.ids.codes
        for i, book in enumerate(self.ids.codebooks):
            state[f"codebook{i}"] = book
        if self.tag_index is not None:
            state["tag_index"] = self.tag_index
        return state

    def _load_state(self, state: dict[str, np.ndarray]) -> None:
        self.ids = semantic_ids_from_state(state, self.n_items, self.config.quantizer)
        state = {k: v for k, v in state.items() if k.startswith("net.") or k == "tag_index"}
        self.tag_index = state.pop("tag_index", None)
        if self.tag_index is not None:
            expect({"tag_index": self.tag_index}, "tag_index", INTEGER, (self.n_items, None))
        with torch_session(self.runtime):
            super()._load_state(state)
