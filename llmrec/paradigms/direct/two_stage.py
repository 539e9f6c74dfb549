"""``TwoStage(retriever, ranker)``: any recommender proposes candidates, an LM re-ranks them.

``recommend`` asks the retriever for each user's top ``n_candidates`` unseen items (LlamaRec's
protocol: top 20) and lets the LM ranker order them; items beyond the candidates keep the
retriever's order below them, so lists longer than ``n_candidates`` stay valid. A user with
fewer unseen items than ``n_candidates`` has the LM rank the ones there are; a user with fewer
than two (nothing to order) or no history at all keeps the retriever's (popularity's) order,
and :meth:`TwoStage.diagnostics` counts both kinds. In the candidate protocol
(:func:`~llmrec.eval.protocols.evaluate_candidates`) the ranker scores the given candidates
directly and the retriever is not consulted.

Example::

    model = TwoStage(retriever=Popularity(), ranker=VerbaliserRanker(lm=load_lm("smollm2-135m")))
    model.fit(split.train)
    recs = model.recommend(users, k=10, history=split.known_at_test())

Saving writes the retriever into ``retriever/`` through its own ``save``, the rendered item
texts and user profiles into ``texts.json`` and a tuned ranker's weights into ``ranker/``
(LoRA adapters or the whole model, as safetensors: :mod:`~llmrec.paradigms.direct.tuning`);
loading rebuilds the LM from ``ranker.lm`` (a registered spec such as ``smollm2-135m``) and
applies those weights to it. Folders of the old layout (everything in
``state.safetensors``) still load.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Self

import numpy as np
from pydantic import ConfigDict, Field, ValidationError

from llmrec._io import atomic_write_text, dumps_json, read_json_object
from llmrec.config import StrictConfig, one_line
from llmrec.data.dataset import Dataset, UserHistory
from llmrec.errors import ConfigError
from llmrec.lm.base import LanguageModel
from llmrec.models.base import ModelConfig, Recommender
from llmrec.models.query import QueryProfiles
from llmrec.models.registry import get_model_class, registered_model_class
from llmrec.models.saved import BYTES, expect
from llmrec.paradigms.direct.prompts import LABELS, user_profiles
from llmrec.paradigms.direct.rankers import (
    Ranker,
    RankerSpec,
    VerbaliserConfig,
    make_ranker,
)

__all__ = ["MAX_LM_CANDIDATES", "TwoStage", "TwoStageConfig"]

#: Sub-folder and file of a saved two-stage model.
RETRIEVER_DIR = "retriever"
TEXTS_FILE = "texts.json"
RANKER_DIR = "ranker"

log = logging.getLogger(__name__)

#: the fewest candidates the LM is asked to order (one candidate has a single order)
MIN_LM_CANDIDATES = 2
#: the most: one index label each
MAX_LM_CANDIDATES = len(LABELS)


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
    n_candidates: int = Field(default=20, ge=1, le=MAX_LM_CANDIDATES)


@dataclass
class _Counts:
    """Users scored by :meth:`TwoStage.score` and :meth:`TwoStage.score_candidates`, by who
    ordered them."""

    users: int = 0
    lm_ranked: int = 0
    few_candidates: int = 0
    no_history: int = 0


class TwoStage(Recommender):
    """A retriever's top ``n_candidates`` re-ranked by an LM ranker.

    Construct as every component is: ``TwoStage(config, retriever=..., ranker=..., lm=...,
    **overrides)``, with ``config`` a :class:`TwoStageConfig`, a mapping or ``None``, and the
    collaborators as instances (each optional: the config names them otherwise). The
    shorthand ``TwoStage(retriever, ranker, n_candidates=20)`` is the same as
    ``TwoStage(retriever=retriever, ranker=ranker, n_candidates=20)``.
    """

    name = "two_stage"
    config_class = TwoStageConfig
    config: TwoStageConfig
    queries_lm = True
    reads_profiles = True

    def __init__(
        self,
        config: TwoStageConfig | Mapping[str, Any] | Recommender | None = None,
        ranker: Ranker | None = None,
        *,
        retriever: Recommender | None = None,
        lm: LanguageModel | None = None,
        **overrides: Any,
    ) -> None:
        if isinstance(config, Recommender):  # the shorthand TwoStage(retriever, ranker)
            if retriever is not None:
                raise ConfigError("two_stage: the retriever is given twice")
            config, retriever = None, config
        if retriever is not None:
            overrides.setdefault("retriever", retriever.name)
            overrides.setdefault("retriever_config", retriever.config.model_dump(mode="json"))
        if ranker is not None:
            overrides.setdefault("ranker", ranker.config.model_dump(mode="json"))
        super().__init__(config, **overrides)
        if retriever is not None:
            self.retriever = retriever
        else:
            klass = get_model_class(self.config.retriever)
            self.retriever = klass(self.config.retriever_config, runtime=self.runtime)
        self.ranker = ranker if ranker is not None else make_ranker(self.config.ranker, lm=lm)
        self.ranker.runtime = self.runtime  # the LM it loads runs as this model does
        self._counts = _Counts()
        self._warned = False
        self._texts: list[str] = []
        self._profiles: list[dict[str, str]] = []

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
        """``(n, n_items)`` float32: the LM's order on each user's candidates — the retriever's
        top ``n_candidates`` unseen items, or as many as there are — (scores above
        ``n_items``), then every other item in the retriever's order."""
        return self.score_with_profiles(users, history, None)

    def score_with_profiles(
        self, users: np.ndarray, history: UserHistory, profiles: QueryProfiles | None
    ) -> np.ndarray:
        """:meth:`score`, the ranker's prompts showing ``profiles`` when given."""
        base, seen_mask = self._retrieved(users, history)
        order = np.argsort(-base, axis=1, kind="stable")
        out = np.empty_like(base)
        np.put_along_axis(out, order, -np.arange(self.n_items, dtype=np.float32)[None, :], 1)
        cands = order[:, : min(self.config.n_candidates, self.n_items)]
        # seen (-inf) and NaN scores sort last, so each row's candidates are a prefix
        n_cands = (np.take_along_axis(base, cands, axis=1) > -np.inf).sum(axis=1)
        warm = history.lengths()[users] > 0  # users without history get popularity's order
        ranked = warm & (n_cands >= MIN_LM_CANDIDATES)
        for width in sorted(set(n_cands[ranked].tolist()), reverse=True):
            rows = np.flatnonzero(ranked & (n_cands == width))
            shown = cands[rows, :width]
            lm_scores = self.ranker.rank(users[rows], history, shown, profiles=profiles)
            lm_rank = np.argsort(np.argsort(-lm_scores, axis=1, kind="stable"), axis=1)
            top = (self.n_items + width - lm_rank).astype(np.float32)
            out[rows] = _put(out[rows], shown, top)
        out[seen_mask] = -np.inf
        self._count(len(users), int(ranked.sum()), int((~warm).sum()))
        return out

    def candidates(self, users: np.ndarray, history: UserHistory, n: int) -> np.ndarray:
        """``(len(users), n)`` int64: each user's ``n`` best unseen items by the retriever, best
        first, -1 padding a user with fewer. The LM orders the first ``n_candidates`` of them;
        :meth:`score` keeps the rest in this order below.

        Example::

            model.candidates(np.array([0, 1]), history, 30)   # two rows of 30 item indices
        """
        base, _ = self._retrieved(np.asarray(users, dtype=np.int64), history)
        order = np.argsort(-base, axis=1, kind="stable")[:, :n]
        return np.where(np.take_along_axis(base, order, axis=1) > -np.inf, order, -1)

    def with_ranker(self, ranker: Ranker | None = None, *, n_candidates: int | None = None) -> Self:
        """A fitted copy that shares this model's retriever, catalogue and texts, with
        ``ranker`` (default: this one) ordering ``n_candidates`` (default: this model's) — what
        the prompt and candidate-count probes rank with. Its counts start at zero.

        Raises:
            ConfigError: ``n_candidates`` outside 1-26.
        """
        n = self.config.n_candidates if n_candidates is None else n_candidates
        twin = type(self)(
            self.retriever, ranker or self.ranker, n_candidates=n, runtime=self.runtime
        )
        twin.share_catalogue(self)
        twin._texts, twin._profiles = self._texts, self._profiles
        return twin

    def score_candidates(
        self,
        users: np.ndarray,
        candidates: np.ndarray,
        *,
        history: Dataset | UserHistory | None = None,
        profiles: QueryProfiles | None = None,
    ) -> np.ndarray:
        """``(n, c)`` float32 LM scores of the given candidates (the retriever is skipped)."""
        users_arr, hist = self._query(users, history)
        cands = np.asarray(candidates, dtype=np.int64)
        scores = self.ranker.rank(users_arr, hist, cands, profiles=profiles)
        self._count(len(users_arr), len(users_arr), 0)
        return scores

    def _retrieved(self, users: np.ndarray, history: UserHistory) -> tuple[np.ndarray, np.ndarray]:
        """``(n, n_items)`` float32 retriever scores with seen items at -inf, and the
        ``(n, n_items)`` bool mask of those seen items."""
        base = np.asarray(self.retriever.score(users, history), dtype=np.float32).copy()
        seen_mask = _seen(users, history, self.n_items)
        base[seen_mask] = -np.inf
        return base, seen_mask

    @classmethod
    def nested_models(cls, config: ModelConfig) -> list[str]:
        assert isinstance(config, TwoStageConfig)
        return [config.retriever]

    def language_models(self) -> list[LanguageModel]:
        """The ranker's backend (once fitted or loaded: binding the ranker loads it) and
        whatever LMs the retriever holds."""
        ranker = [self.ranker.lm] if self.fit_history() is not None else []
        lms = [*ranker, *self.retriever.language_models()]
        return list({id(lm): lm for lm in lms}.values())

    def lm_batch_size(self) -> int:
        """The ranker's users per LM call (8 on the CPU, 128 on a GPU unless configured)."""
        return self.ranker.batch_size

    def fallback(self) -> Recommender:
        """The retriever: its ranking answers when the LM fails or is too slow."""
        return self.retriever

    def diagnostics(self) -> dict[str, Any]:
        """Who ordered the users this model has scored since it was built or loaded.

        ``users``: users scored; ``lm_ranked``: users whose candidates the LM ordered;
        ``few_candidates``: users with fewer than two unseen candidates (the retriever's order
        stands); ``no_history``: users without history (popularity's order);
        ``lm_ranked_none``: 1 when users were scored and the LM ordered none of them;
        ``tuning``: what adapting the ranker's LM cost (:class:`TuneReport`), when it was tuned.
        """
        counts: dict[str, Any] = asdict(self._counts)
        counts["lm_ranked_none"] = int(self._counts.users > 0 and self._counts.lm_ranked == 0)
        report = self.ranker.tune_report
        if report is not None:
            counts["tuning"] = {k: v for k, v in report.as_dict().items() if k != "curve"}
        return counts

    def _count(self, users: int, lm_ranked: int, no_history: int) -> None:
        c = self._counts
        c.users += users
        c.lm_ranked += lm_ranked
        c.no_history += no_history
        c.few_candidates += users - lm_ranked - no_history
        if c.users and not c.lm_ranked and not self._warned:
            self._warned = True
            log.warning(
                "two_stage: the LM has ranked none of the %d users scored so far (%d had fewer "
                "than %d unseen candidates among %s's top %d, %d had no history): their lists "
                "are the retriever's ranking, not the LM's",
                c.users,
                c.few_candidates,
                MIN_LM_CANDIDATES,
                self.retriever.name,
                self.config.n_candidates,
                c.no_history,
            )

    # --- persistence ---------------------------------------------------------------------------
    def _save_files(self, folder: Path) -> None:
        """The retriever saves itself into ``retriever/``; the rendered item texts and user
        profiles go to ``texts.json``."""
        self.retriever.save(folder / RETRIEVER_DIR)
        texts = {"texts": self._texts, "profiles": self._profiles}
        atomic_write_text(folder / TEXTS_FILE, dumps_json(texts))
        tuned = self._tuned()
        if tuned is not None:
            tuned.save_tuned(folder / RANKER_DIR)

    def _check_state(self, state: Mapping[str, np.ndarray]) -> None:
        """Only folders of the old layout hold arrays of their own: ``texts_json`` (bytes) and
        ``retriever.*`` (what the retriever checks of its own)."""
        if state:
            expect(state, "texts_json", BYTES, (None,))
            self._legacy_retriever()._check_state(_retriever_state(state))

    def _load_state(self, state: dict[str, np.ndarray]) -> None:
        if state:  # the old layout: everything inside the state tensors
            self._legacy_retriever()._load_state(_retriever_state(state))
            self._bind(_SavedTexts.from_bytes(state["texts_json"]))

    def _load_files(self, folder: Path) -> None:
        if self._texts:  # read from the old layout by _load_state
            return
        tuned = self._tuned()
        parts = (RETRIEVER_DIR, TEXTS_FILE, *((RANKER_DIR,) if tuned is not None else ()))
        for part in parts:
            if not (folder / part).exists():
                raise ConfigError(f"two_stage: {part} is missing (saved incompletely?)")
        retriever = registered_model_class(self.config.retriever).load(folder / RETRIEVER_DIR)
        if (retriever.n_items, retriever.n_users) != (self.n_items, self.n_users):
            raise ConfigError(
                f"two_stage: the retriever in {RETRIEVER_DIR}/ was saved for another catalogue "
                f"({retriever.n_users} users x {retriever.n_items} items)"
            )
        self.retriever = retriever
        self._bind(_SavedTexts.from_json(read_json_object(folder / TEXTS_FILE, "item texts")))
        if tuned is not None:
            tuned.load_tuned(folder / RANKER_DIR)

    def _tuned(self) -> Ranker | None:
        """The ranker when it adapts its LM (its tuned weights are saved in ``ranker/``)."""
        return self.ranker if self.ranker.tune_config is not None else None

    def _bind(self, saved: _SavedTexts) -> None:
        if len(saved.texts) != self.n_items:
            raise ConfigError(
                f"two_stage: the saved state holds {len(saved.texts)} item texts for a catalogue "
                f"of {self.n_items} items"
            )
        self._texts, self._profiles = saved.texts, saved.profiles
        self.ranker.bind(self._texts, self._profiles, self._fit_history)

    def _legacy_retriever(self) -> Recommender:
        """The retriever of an old-layout folder, given this model's catalogue and fit-time
        history (that layout saved only its learned arrays)."""
        self.retriever.share_catalogue(self)
        return self.retriever


def _retriever_state(state: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k.removeprefix("retriever."): v for k, v in state.items() if k != "texts_json"}


class _SavedTexts(StrictConfig):
    """The rendered item texts and user profiles (``texts.json``; in the old layout, JSON
    bytes in the ``texts_json`` array)."""

    model_config = ConfigDict(strict=True)

    texts: list[str]
    profiles: list[dict[str, str]]

    @classmethod
    def from_json(cls, data: Any) -> _SavedTexts:
        """The texts ``data`` holds; a one-line :class:`ConfigError` if damaged."""
        return _validated_texts(lambda: cls.model_validate(data), TEXTS_FILE)

    @classmethod
    def from_bytes(cls, blob: np.ndarray) -> _SavedTexts:
        """The texts ``(n,)`` uint8 JSON holds (the old layout)."""
        return _validated_texts(lambda: cls.model_validate_json(blob.tobytes()), "texts_json")


def _validated_texts(parse: Callable[[], _SavedTexts], where: str) -> _SavedTexts:
    try:
        return parse()
    except ValidationError as exc:
        raise ConfigError(
            one_line(exc, f"two_stage: the saved item texts ({where}) are damaged")
        ) from None


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
