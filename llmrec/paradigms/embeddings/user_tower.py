"""User-text tower: the LM reads a user's profile and recent titles; items are ranked by cosine.

A user's text is their profile attributes (``"age: 24. gender: M. occupation: technician."``
or a template) followed by the titles of their most recent items, newest first. The LM encodes
it into the same space as the item texts, and items are scored by cosine similarity, plus an
optional popularity prior (``popularity_weight * log1p(count) / log1p(max count)``).

Unlike the other recommenders, a user with **no history** is not handed the popularity
fallback: their profile text alone is encoded and scored — the point of the tower. User texts
are encoded at query time (cached on disk like item texts), so the LM is loaded on first
query after :meth:`~llmrec.models.base.Recommender.load`.

Example::

    tower = UserTower(encoder="minilm-l6", profile_template="A {age}-year-old {occupation}.")
    tower.fit(split.train).recommend([0, 1], k=10, history=empty_history)
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Self

import numpy as np
import pandas as pd
from pydantic import Field

from llmrec._io import atomic_write_text, dumps_json, read_json_object
from llmrec.data.dataset import Dataset, UserHistory
from llmrec.errors import ConfigError
from llmrec.lm.base import LanguageModel
from llmrec.lm.pool import LMPool
from llmrec.models.base import Recommender
from llmrec.models.query import QueryProfiles
from llmrec.models.saved import BYTES, FLOAT, expect
from llmrec.paradigms.embeddings.encoder import (
    TextEncoder,
    TextModelConfig,
    fit_text,
)
from llmrec.paradigms.embeddings.text_views import UserView
from llmrec.paradigms.embeddings.tune import (
    TunedEncoder,
    restore_tuned,
    save_tuned,
    tuning_diagnostics,
)


class UserTowerConfig(TextModelConfig):
    """User-tower settings (plus the encoder fields of :class:`TextModelConfig`).

    Attributes:
        profile_template: ``str.format`` template over the user attributes (``None``: all
            attributes as ``name: value``).
        history_items: most recent titles in the user text.
        title_field: the item text field that names an item in the user text.
        popularity_weight: weight of the log-popularity prior added to the cosine.
    """

    profile_template: str | None = None
    history_items: int = Field(default=10, ge=0)
    title_field: str = "title"
    popularity_weight: float = Field(default=0.0, ge=0)


#: The file of a saved user tower's item titles and user profiles.
TEXTS_FILE = "texts.json"


class UserTower(Recommender):
    """Cosine between the LM vector of a user's text and the LM vectors of item texts."""

    name = "user-tower"
    config_class = UserTowerConfig
    config: UserTowerConfig
    queries_lm = True
    reads_profiles = True

    def __init__(
        self,
        config: UserTowerConfig | Mapping[str, Any] | None = None,
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
        self._profiles: list[str] = []
        self._titles: list[str] = []
        self._encoder: TextEncoder | None = None
        self.fit_info: dict[str, float] = {}
        self.tuned: TunedEncoder | None = None
        self._lms: list[LanguageModel] = []

    @property
    def view(self) -> UserView:
        return UserView(
            profile_template=self.config.profile_template,
            history_items=self.config.history_items,
        )

    @property
    def encoder(self) -> TextEncoder:
        if self._encoder is None:
            self._encoder = TextEncoder(
                self.config.encoder_settings(self.runtime, self.tuned),
                lm=self._lm,
                lm_pool=self._lm_pool,
            )
        return self._encoder

    def language_models(self) -> list[LanguageModel]:
        """The encoder of the last :meth:`fit` and the one that encodes users at query time
        (the same backend unless the model was loaded from a folder)."""
        lms = list(self._lms)
        if self._encoder is not None:
            lms.append(self._encoder.lm)
        return list({id(lm): lm for lm in lms}.values())

    def fit(self, train: Dataset, valid: Dataset | None = None) -> Self:
        """Tune the encoder on ``train`` when ``tune`` is set; encode the item texts and keep
        the user profiles and item titles as text (users are encoded by the same encoder)."""
        self._remember_catalogue(train)
        self._encoder = None
        self.tuned, self.item_vectors, info, encoder = fit_text(
            self.config,
            train,
            seed=self.config.seed,
            runtime=self.runtime,
            lm=self._lm,
            lm_pool=self._lm_pool,
        )
        self._lms = [encoder]
        self.fit_info = info.as_dict()
        self._profiles = self.view.profiles(train.user_attrs)
        field = self.config.title_field
        if field in train.item_text.columns:
            self._titles = train.item_text[field].fillna("").astype(str).tolist()
        else:
            self._titles = train.item_texts(self.config.item_template, self.config.item_fields)
        return self

    def user_texts(
        self, users: np.ndarray, history: UserHistory, profiles: QueryProfiles | None = None
    ) -> list[str]:
        """The text the LM reads for each user (profile, then recent titles); ``profiles[u]``,
        when given, replaces user index ``u``'s stored profile (:mod:`llmrec.models.query`)."""
        users = np.asarray(users, dtype=np.int64)
        texts: Sequence[str] | dict[int, str] = self._profiles
        if profiles is not None:
            texts = self._profile_texts(users, profiles)
        return self.view.render(users, texts, self._titles, history)

    def _profile_texts(self, users: np.ndarray, profiles: QueryProfiles) -> dict[int, str]:
        specs = {int(u): profiles[int(u)] for u in users}
        given = {u: dict(p) for u, p in specs.items() if not isinstance(p, int)}
        rendered = self.view.profiles(pd.DataFrame(list(given.values()), index=range(len(given))))
        out = dict(zip(given, rendered, strict=True))
        stored = self._profiles
        for u, p in specs.items():
            if isinstance(p, int):
                out[u] = stored[p] if 0 <= p < len(stored) else ""
        return out

    def score(self, users: np.ndarray, history: UserHistory) -> np.ndarray:
        return self.score_with_profiles(users, history, None)

    def diagnostics(self) -> dict[str, Any]:
        """What tuning the encoder cost, when it was tuned."""
        return tuning_diagnostics(self.tuned)

    def score_with_profiles(
        self, users: np.ndarray, history: UserHistory, profiles: QueryProfiles | None
    ) -> np.ndarray:
        assert self.item_vectors is not None and self._popularity is not None
        texts = self.user_texts(np.asarray(users, dtype=np.int64), history, profiles)
        vectors, _ = self.encoder.encode(texts, desc="encoding users")
        scores = vectors @ self.item_vectors.T
        if self.config.popularity_weight:
            prior = np.log1p(self._popularity) / np.log1p(max(float(self._popularity.max()), 1.0))
            scores += self.config.popularity_weight * prior.astype(np.float32)
        return scores

    def _scores_with_fallback(
        self, users: np.ndarray, hist: UserHistory, profiles: QueryProfiles | None = None
    ) -> np.ndarray:
        # no popularity fallback: a user without history still has a profile to encode
        return np.asarray(self.score_with_profiles(users, hist, profiles), dtype=np.float32)

    # --- persistence ---------------------------------------------------------------------------
    def _state(self) -> dict[str, np.ndarray]:
        assert self.item_vectors is not None
        return {"item_vectors": self.item_vectors}

    def _save_files(self, folder: Path) -> None:
        """Item titles and user profiles go to ``texts.json`` (arrays stay in the state)."""
        texts = {"titles": self._titles, "profiles": self._profiles}
        atomic_write_text(folder / TEXTS_FILE, dumps_json(texts))
        save_tuned(self.tuned, folder)

    def _check_state(self, state: Mapping[str, np.ndarray]) -> None:
        """Item vectors ``(n_items, dim)``; in the old layout also titles (one per item) and
        profiles as UTF-8 JSON arrays."""
        expect(state, "item_vectors", FLOAT, (self.n_items, None))
        if "titles_json" in state or "profiles_json" in state:
            titles = _array_text(expect(state, "titles_json", BYTES, (None,)), "titles_json")
            self._check_titles(titles, "titles_json")
            _array_text(expect(state, "profiles_json", BYTES, (None,)), "profiles_json")

    def _load_state(self, state: dict[str, np.ndarray]) -> None:
        self.item_vectors = state["item_vectors"]
        if "titles_json" in state:  # the old layout
            self._profiles = _array_text(state["profiles_json"], "profiles_json")
            self._titles = _array_text(state["titles_json"], "titles_json")

    def _load_files(self, folder: Path) -> None:
        # users are encoded at query time: by the tuned encoder the folder holds, if tuned
        self.tuned = restore_tuned(folder, self.config.tune)
        self._encoder = None
        if self._titles:  # read from the old layout by _load_state
            return
        path = folder / TEXTS_FILE
        if not path.exists():
            raise ConfigError(f"{TEXTS_FILE} is missing (saved incompletely?)")
        data = read_json_object(path, "user-tower texts")
        titles, profiles = data.get("titles"), data.get("profiles")
        for key, texts in (("titles", titles), ("profiles", profiles)):
            if not (isinstance(texts, list) and all(isinstance(t, str) for t in texts)):
                raise ConfigError(f"{TEXTS_FILE}: {key!r} must be a list of strings")
        assert isinstance(titles, list) and isinstance(profiles, list)
        self._check_titles(titles, TEXTS_FILE)
        self._titles, self._profiles = titles, profiles

    def _check_titles(self, titles: list[str], where: str) -> None:
        if len(titles) != self.n_items:
            raise ConfigError(f"{where} holds {len(titles)} titles for {self.n_items} items")


def _array_text(raw: np.ndarray, key: str = "texts") -> list[str]:
    """The strings an old-layout ``(n_bytes,)`` uint8 array of UTF-8 JSON holds; a
    :class:`ConfigError` when ``raw`` is not a UTF-8 JSON list (a damaged saved state)."""
    try:
        texts = json.loads(bytes(np.asarray(raw, dtype=np.uint8)).decode("utf-8"))
    except ValueError:
        texts = None
    if not isinstance(texts, list):
        raise ConfigError(f"array {key!r} is not a UTF-8 JSON list of texts")
    return [str(t) for t in texts]
