"""``TwoStage(retriever, ranker)``: any recommender proposes candidates, an LM re-ranks them.

``recommend`` asks the retriever for each user's top ``n_candidates`` unseen items (LlamaRec's
protocol: top 20) and lets the LM ranker order them; items beyond the candidates keep the
retriever's order below them, so lists longer than ``n_candidates`` stay valid. In the
candidate protocol (:func:`~llmrec.eval.protocols.evaluate_candidates`) the ranker scores the
given candidates directly and the retriever is not consulted.

Example::

    model = TwoStage(Popularity(), VerbaliserRanker(lm=load_lm("smollm2-135m")))
    model.fit(split.train)
    recs = model.recommend(users, k=10, history=split.known_at_test())

Saving writes the retriever's arrays, the rendered item texts and user profiles next to the
config; loading rebuilds the LM from ``ranker.lm`` (a registered spec such as ``smollm2-135m``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, Self

import numpy as np
from pydantic import Field

from llmrec.data.dataset import Dataset, UserHistory
from llmrec.errors import ConfigError
from llmrec.lm.base import LanguageModel
from llmrec.models.base import ModelConfig, Recommender
from llmrec.models.registry import get_model_class
from llmrec.paradigms.direct.prompts import user_profiles
from llmrec.paradigms.direct.rankers import Ranker, RankerSpec, VerbaliserConfig, make_ranker

__all__ = ["TwoStage", "TwoStageConfig"]


class TwoStageConfig(ModelConfig):
    """Attributes:
    retriever: registered name (or ``module:Class``) of the first stage.
    retriever_config: its config.
    ranker: the LM ranker's config (``kind`` selects verbaliser / likelihood / generation).
    n_candidates: retriever items the LM re-ranks per user (at most 26: one label each).
    """

    retriever: str = "popularity"
    retriever_config: dict[str, Any] = Field(default_factory=dict)
    ranker: RankerSpec = Field(default_factory=VerbaliserConfig)
    n_candidates: int = Field(default=20, ge=1, le=26)


class TwoStage(Recommender):
    """A retriever's top ``n_candidates`` re-ranked by an LM ranker.

    Construct as ``TwoStage(retriever, ranker, n_candidates=20)`` with instances, or as
    ``TwoStage(config_dict_or_TwoStageConfig)`` (what loading and config round-trips use).
    """

    name = "two_stage"
    config_class = TwoStageConfig
    config: TwoStageConfig
    queries_lm = True
    reads_profiles = True

    def __init__(
        self,
        retriever: Recommender | TwoStageConfig | Mapping[str, Any] | None = None,
        ranker: Ranker | None = None,
        *,
        lm: LanguageModel | None = None,
        **overrides: Any,
    ) -> None:
        if isinstance(retriever, Recommender):
            overrides.setdefault("retriever", retriever.name)
            overrides.setdefault("retriever_config", retriever.config.model_dump(mode="json"))
            config: TwoStageConfig | dict[str, Any] | None = None
        else:
            config = dict(retriever) if isinstance(retriever, Mapping) else retriever
        if ranker is not None:
            overrides.setdefault("ranker", ranker.config.model_dump(mode="json"))
        super().__init__(config, **overrides)
        if isinstance(retriever, Recommender):
            self.retriever = retriever
        else:
            klass = get_model_class(self.config.retriever)
            self.retriever = klass(self.config.retriever_config)
        self.ranker = ranker if ranker is not None else make_ranker(self.config.ranker, lm=lm)

    # --- the two verbs -------------------------------------------------------------------------
    def fit(self, train: Dataset, valid: Dataset | None = None) -> Self:
        """Fit the retriever and bind the ranker to ``train``'s texts and attributes."""
        self._remember_catalogue(train)
        self.retriever.fit(train, valid)
        self.ranker.fit(train)
        self._texts = list(self.ranker.item_texts)
        self._profiles = user_profiles(train, self.ranker.config.prompt.profile_fields)
        return self

    def score(self, users: np.ndarray, history: UserHistory) -> np.ndarray:
        """``(n, n_items)`` float32: the LM's order on the retriever's top ``n_candidates``
        (scores above ``n_items``), then every other item in the retriever's order."""
        base = np.asarray(self.retriever.score(users, history), dtype=np.float32).copy()
        seen_mask = _seen(users, history, self.n_items)
        base[seen_mask] = -np.inf
        order = np.argsort(-base, axis=1, kind="stable")
        out = np.empty_like(base)
        np.put_along_axis(out, order, -np.arange(self.n_items, dtype=np.float32)[None, :], 1)
        n_cand = min(self.config.n_candidates, self.n_items)
        cands = order[:, :n_cand]
        available = np.take_along_axis(np.isfinite(base), cands, axis=1).all(axis=1)
        available &= history.lengths()[users] > 0  # cold users get the popularity fallback
        if available.any():
            rows = np.flatnonzero(available)
            lm_scores = self.ranker.rank(users[rows], history, cands[rows])
            lm_rank = np.argsort(np.argsort(-lm_scores, axis=1, kind="stable"), axis=1)
            top = (self.n_items + n_cand - lm_rank).astype(np.float32)
            out[rows] = _put(out[rows], cands[rows], top)
        out[seen_mask] = -np.inf
        return out

    def score_candidates(
        self,
        users: np.ndarray,
        candidates: np.ndarray,
        *,
        history: Dataset | UserHistory | None = None,
    ) -> np.ndarray:
        """``(n, c)`` float32 LM scores of the given candidates (the retriever is skipped)."""
        users_arr, hist = self._query(users, history)
        return self.ranker.rank(users_arr, hist, np.asarray(candidates, dtype=np.int64))

    @contextmanager
    def query_profiles(self, profiles: Sequence[Mapping[str, str] | int]) -> Iterator[None]:
        with self.ranker.row_profiles(profiles):
            yield

    # --- persistence ---------------------------------------------------------------------------
    def _state(self) -> dict[str, np.ndarray]:
        state = {f"retriever.{k}": v for k, v in self.retriever._state().items()}
        blob = json.dumps({"texts": self._texts, "profiles": self._profiles}).encode()
        state["texts_json"] = np.frombuffer(blob, dtype=np.uint8).copy()
        return state

    def _load_state(self, state: dict[str, np.ndarray]) -> None:
        r = self.retriever
        r.n_items, r.n_users = self.n_items, self.n_users
        r._popularity, r._fit_history = self._popularity, self._fit_history
        r._load_state(
            {k.removeprefix("retriever."): v for k, v in state.items() if k != "texts_json"}
        )
        blob = json.loads(bytes(state["texts_json"]).decode())
        self._texts, self._profiles = blob["texts"], blob["profiles"]
        self.ranker.bind(self._texts, self._profiles, self._fit_history)
        if len(self._texts) != self.n_items:
            raise ConfigError("saved item texts do not match the catalogue size")


def _seen(users: np.ndarray, history: UserHistory, n_items: int) -> np.ndarray:
    """``(n, n_items)`` bool: items each user already has."""
    mask = np.zeros((len(users), n_items), dtype=bool)
    for row, user in enumerate(users):
        mask[row, history.of(int(user))] = True
    return mask


def _put(block: np.ndarray, cols: np.ndarray, values: np.ndarray) -> np.ndarray:
    block = block.copy()
    np.put_along_axis(block, cols, values, 1)
    return block
