"""The service's core, without HTTP: loaded models, id resolution, batched answers, fallbacks.

:class:`Service` holds the dataset (original ids, titles, histories, profiles) and one
:class:`ServedModel` per entry. A request becomes a :class:`Query` (indices, checked); a list of
queries is answered by :meth:`ServedModel.answer` in one call to the model — one forward pass
for the whole batch. The HTTP layer (:mod:`llmrec.serve.app`) adds batching in time, limits and
metrics around it; everything here is plain, blocking, and testable without a server.

How a query reaches a model: a model that reads the query-time history (all but ID-embedding
models such as BPR) is asked for rows ``0..n-1`` of a history built from the batch, so a user
the model never saw is served from the history the request gives. A model that cannot
(``uses_query_history`` False) serves known users only, from their stored history.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from llmrec.data.dataset import Dataset, UserHistory, coerce_id
from llmrec.errors import ConfigError, LlmrecError, UnknownIdError
from llmrec.models.base import Recommender
from llmrec.models.catalogue import Paradigm, model_spec
from llmrec.models.registry import load_model
from llmrec.paradigms.direct.two_stage import MIN_LM_CANDIDATES, TwoStage
from llmrec.serve.config import ServeConfig, ServeEntry
from llmrec.serve.folders import config_from_folder

__all__ = [
    "Answer",
    "CannotServe",
    "Query",
    "ServedModel",
    "Service",
    "config_from_folder",
]


class CannotServe(LlmrecError):
    """The chosen model cannot answer this query (e.g. an ID model asked about a new user)."""


@dataclass(frozen=True)
class Query:
    """One request resolved to indices.

    Attributes:
        user: the dataset's user index, or ``None`` for a user known only by the request.
        history: ``(m,)`` int64 item indices, oldest first (what the model reads).
        profile: attributes shown to models that read profiles, as given by the request;
            ``None``: the known user's stored profile (none for an unknown user).
        k: list length.
        exclude_seen: drop the history's items from the list.
    """

    user: int | None
    history: np.ndarray
    profile: dict[str, str] | None
    k: int
    exclude_seen: bool = True


@dataclass
class Answer:
    """A model's answer to one query.

    Attributes:
        items: ``(<=k,)`` int64 item indices, best first (no padding).
        scores: ``(<=k,)`` float32 scores aligned with ``items``.
        degraded: the answer is the retriever's ranking because the LM failed or was too slow.
        reason: why it is degraded (``""`` otherwise).
        batch_size: queries answered by the same model call.
        model_ms: wall time of that call.
    """

    items: np.ndarray
    scores: np.ndarray
    degraded: bool = False
    reason: str = ""
    batch_size: int = 1
    model_ms: float = 0.0
    lm_calls: int = field(default=0)


class ServedModel:
    """One loaded model behind a service entry."""

    def __init__(self, entry: ServeEntry, model: Recommender) -> None:
        self.entry = entry
        self.model = model

    @property
    def name(self) -> str:
        return self.entry.name

    @property
    def uses_lm(self) -> bool:
        return bool(self.model.queries_lm)

    @property
    def paradigm(self) -> Paradigm:
        """The entry's paradigm (the catalogue's for the model when the entry gives none)."""
        return self.entry.paradigm or model_spec(self.model.name).paradigm

    @property
    def can_degrade(self) -> bool:
        """Whether a fallback stands behind the LM (answers when the LM cannot)."""
        return self.model.fallback() is not None

    def lm_calls(self) -> int:
        """LM calls the model's LM ranker has made so far (0 for models without one)."""
        return self.model.ranker.stats.lm_calls if isinstance(self.model, TwoStage) else 0

    def describe(self) -> dict[str, Any]:
        m = self.model
        out: dict[str, Any] = {
            "name": self.entry.name,
            "paradigm": self.paradigm,
            "model": m.name,
            "serves_new_users": bool(m.uses_query_history),
            "reads_profile": bool(m.reads_profiles),
            "calls_lm": self.uses_lm,
            "degrades_to": None,
        }
        fallback = m.fallback()
        if fallback is not None:
            out["degrades_to"] = fallback.name
        return out

    def check(self, query: Query) -> None:
        """Raise :class:`CannotServe` when this model cannot answer ``query``."""
        if query.user is None and not self.model.uses_query_history:
            raise CannotServe(
                f"{self.entry.name} ({self.model.name}) scores from user vectors learned at fit "
                "time and cannot serve a user it was not trained on; give a known user_id or "
                "choose a paradigm that reads the history"
            )

    def answer(self, queries: list[Query], history: UserHistory) -> list[Answer]:
        """Answer every query in one model call (per ``exclude_seen`` value)."""
        return self._answer(self.model, queries, history)

    def fallback(self, queries: list[Query], history: UserHistory, reason: str) -> list[Answer]:
        """The fallback's answers, marked degraded (only where :attr:`can_degrade`)."""
        retriever = self.model.fallback()
        if retriever is None:
            raise CannotServe(f"{self.entry.name} has no retriever to fall back on")
        answers = self._answer(retriever, queries, history)
        for a in answers:
            a.degraded, a.reason = True, reason
        return answers

    def _answer(
        self, model: Recommender, queries: list[Query], history: UserHistory
    ) -> list[Answer]:
        out: list[Answer | None] = [None] * len(queries)
        for flag in (True, False):
            rows = [i for i, q in enumerate(queries) if q.exclude_seen is flag]
            if not rows:
                continue
            group = [queries[i] for i in rows]
            tic = time.perf_counter()
            items, scores = _recommend(model, group, history, exclude_seen=flag)
            ms = 1000.0 * (time.perf_counter() - tic)
            for row, q, its, scs in zip(rows, group, items, scores, strict=True):
                keep = its[: q.k] >= 0
                out[row] = Answer(
                    items=its[: q.k][keep],
                    scores=scs[: q.k][keep],
                    batch_size=len(queries),
                    model_ms=ms,
                )
        return [a for a in out if a is not None]


def position_view(served: ServedModel, query: Query, shifts: int) -> dict[str, Any]:
    """How the LM ranks the same candidates shown in ``shifts`` rotated orders.

    The retriever's top candidates are rotated by ``i * n / shifts`` slots for each ``i``; an
    unbiased ranker gives each candidate the same LM rank whatever slot it is shown in.

    Returns ``candidates`` (indices, retriever order) and, per shift, the ``offset``, each
    candidate's ``slot`` (0 = shown first) and LM ``rank`` (0 = best). With fewer candidates
    than ``shifts``, each of the ``n`` rotations is shown once; with fewer than two there is
    nothing to order (:class:`CannotServe`).
    """
    model = served.model
    if not isinstance(model, TwoStage):
        raise CannotServe(f"{served.name} is not an LM ranker over a retriever (direct paradigm)")
    ranker, retriever = model.ranker, model.retriever
    n_cand = model.config.n_candidates
    batch = UserHistory.from_rows([query.history], model.n_items)
    users = np.zeros(1, dtype=np.int64)
    recs = retriever.recommend(users, n_cand, history=batch, exclude_seen=query.exclude_seen)
    cands = recs.items[0][recs.items[0] >= 0]
    n = len(cands)
    if n < MIN_LM_CANDIDATES:
        raise CannotServe(
            f"{served.name}: the retriever has {n} unseen candidate(s) for this user; position "
            f"bias needs at least {MIN_LM_CANDIDATES}"
        )
    rotations = min(shifts, n)  # more would repeat an order
    out: list[dict[str, Any]] = []
    profiles = [_profile_spec(query)]
    for i in range(rotations):
        offset = (i * n) // rotations
        shown = np.roll(cands, -offset)
        scores = ranker.rank(users, batch, shown[None, :], profiles=profiles)[0]
        rank_of_shown = np.argsort(np.argsort(-scores, kind="stable"), kind="stable")
        slot_of = {int(item): s for s, item in enumerate(shown)}
        rank_of = {int(item): int(r) for item, r in zip(shown, rank_of_shown, strict=True)}
        out.append(
            {
                "offset": offset,
                "slot": [slot_of[int(c)] for c in cands],
                "rank": [rank_of[int(c)] for c in cands],
            }
        )
    return {"candidates": cands, "shifts": out}


def _recommend(
    model: Recommender, queries: list[Query], stored: UserHistory, *, exclude_seen: bool
) -> tuple[np.ndarray, np.ndarray]:
    k = max(q.k for q in queries)
    if not model.uses_query_history:
        users = np.array([q.user for q in queries], dtype=np.int64)
        recs = model.recommend(users, k, history=stored, exclude_seen=exclude_seen)
        return recs.items, recs.scores
    batch = UserHistory.from_rows([q.history for q in queries], stored.n_items)
    users = np.arange(len(queries), dtype=np.int64)
    profiles = [_profile_spec(q) for q in queries]
    recs = model.recommend(users, k, history=batch, exclude_seen=exclude_seen, profiles=profiles)
    return recs.items, recs.scores


def _profile_spec(query: Query) -> dict[str, str] | int:
    if query.profile is not None:
        return query.profile
    return query.user if query.user is not None else {}


class Service:
    """The dataset and the served models; answers queries given as original ids."""

    def __init__(self, config: ServeConfig, data: Dataset, models: dict[str, ServedModel]):
        self.config = config
        self.data = data
        self.models = models
        self.history = data.history()
        self.popularity = data.item_popularity()
        self._titles = _titles(data)
        self._profiles = _profiles(data)

    @classmethod
    def load(cls, config: ServeConfig, data: Dataset | None = None) -> Service:
        """Load every entry's saved model, then the dataset (unless given); a damaged model
        folder or a model of another catalogue is a one-line :class:`ConfigError`."""
        from llmrec.data import load_dataset

        config.runtime.check()
        loaded = {entry.name: (entry, _load_model(entry, config)) for entry in config.entries}
        data = data if data is not None else load_dataset(config.dataset)
        models: dict[str, ServedModel] = {}
        for name, (entry, model) in loaded.items():
            if (model.n_items, model.n_users) != (data.n_items, data.n_users):
                raise ConfigError(
                    f"{entry.name}: the model at {entry.path} was trained on {model.n_users} "
                    f"users x {model.n_items} items, but {config.dataset} has {data.n_users} x "
                    f"{data.n_items}: serve it with the dataset it was trained on"
                )
            models[name] = ServedModel(entry, model)
        service = cls(config, data, models)
        if config.history_source == "train":
            fitted = next(iter(models.values())).model.fit_history()
            if fitted is not None:
                service.history = fitted
        return service

    def close(self) -> None:
        """Release what answering held: under ``engine: ray``, the LM actor pools (and a
        private Ray instance), as the server stops; safe to call twice."""
        if self.config.runtime.engine != "local":
            from llmrec import engine

            engine.shutdown()

    # --- lookup --------------------------------------------------------------------------------
    def entry(self, name: str | None) -> ServedModel:
        """The entry called ``name``, else the first of the paradigm ``name``, else the default."""
        if name is None:
            return next(iter(self.models.values()))
        if name in self.models:
            return self.models[name]
        for served in self.models.values():
            if served.paradigm == name:
                return served
        paradigms = sorted({m.paradigm for m in self.models.values()})
        known = ", ".join([*self.models, *paradigms])
        raise UnknownIdError(f"unknown paradigm or model {name!r}; served: {known}")

    def user_index(self, user_id: object) -> int:
        return int(self.data.user_index([coerce_id(user_id, self.data.user_ids)])[0])

    def item_indices(self, item_ids: list[object]) -> np.ndarray:
        return self.data.item_index([coerce_id(i, self.data.item_ids) for i in item_ids])

    def query(
        self,
        *,
        user_id: object | None = None,
        history: list[object] | None = None,
        profile: dict[str, str] | None = None,
        k: int = 10,
        exclude_seen: bool = True,
    ) -> Query:
        """A :class:`Query` from original ids; unknown ids raise :class:`UnknownIdError`.

        A known user brings their stored history and profile; a given ``history`` (or
        ``profile``) replaces the stored one.
        """
        if user_id is None and history is None:
            raise ConfigError("give user_id or history")
        user = None if user_id is None else self.user_index(user_id)
        if history is not None:
            items = self.item_indices(list(history))
        else:
            assert user is not None
            items = self.history.of(user).astype(np.int64)
        given = None if profile is None else {str(a): str(b) for a, b in profile.items()}
        return Query(user, items, given, int(k), bool(exclude_seen))

    # --- presenting ----------------------------------------------------------------------------
    def item_card(self, index: int) -> dict[str, Any]:
        return {
            "id": _plain(self.data.item_ids[index]),
            "title": self._titles[index],
            "popularity": int(self.popularity[index]),
        }

    def item_details(self, item_id: object) -> dict[str, Any]:
        index = int(self.item_indices([item_id])[0])
        card = self.item_card(index)
        row = self.data.item_text.iloc[index]
        card["fields"] = {str(k): _plain(v) for k, v in row.items() if _present(v)}
        return card

    def user_details(self, user_id: object, last: int = 50) -> dict[str, Any]:
        user = self.user_index(user_id)
        items = self.history.of(user)
        return {
            "id": _plain(self.data.user_ids[user]),
            "profile": self._profiles[user],
            "n_interactions": len(items),
            "history": [self.item_card(int(i)) for i in items[-last:]],
        }

    def search_items(self, text: str, limit: int = 20) -> list[dict[str, Any]]:
        """Items whose title contains ``text`` (case-insensitive), most popular first."""
        needle = text.strip().lower()
        hits = [i for i, t in enumerate(self._titles) if needle in t.lower()]
        hits.sort(key=lambda i: -int(self.popularity[i]))
        return [self.item_card(i) for i in hits[:limit]]

    def sample_users(self, limit: int = 20) -> list[Any]:
        """The first ``limit`` users with a history (for pickers)."""
        users = np.flatnonzero(self.history.lengths() > 0)[:limit]
        return [_plain(self.data.user_ids[u]) for u in users]


def _load_model(entry: ServeEntry, config: ServeConfig) -> Recommender:
    """The saved model of ``entry``, run as ``config.runtime`` says (with ``scoring_threads``
    for a model without an LM); its damage a one-line :class:`ConfigError` naming the entry
    and the folder."""
    try:
        model = load_model(entry.path, runtime=config.runtime)
        if config.scoring_threads and not model.queries_lm:
            scoring = config.runtime.replace(threads=config.scoring_threads)
            for part in (model, model.fallback()):
                if part is not None:
                    part.runtime = scoring
        return model
    except (LlmrecError, OSError) as exc:
        why = str(exc) if isinstance(exc, LlmrecError) else (exc.strerror or str(exc))
        where = "" if str(entry.path) in why else f" from {entry.path}"
        raise ConfigError(f"cannot serve {entry.name}{where}: {why}") from None


# --- small helpers -------------------------------------------------------------------------------
def _plain(value: object) -> Any:
    """A JSON-ready scalar from a numpy/pandas one."""
    return value.item() if isinstance(value, np.generic) else value


def _present(value: object) -> bool:
    try:
        return not bool(np.isnan(value))  # type: ignore[call-overload]
    except TypeError:
        return value is not None and value != ""


def _titles(data: Dataset) -> list[str]:
    if "title" in data.item_text.columns:
        return data.item_text["title"].fillna("").astype(str).tolist()
    return [str(i) for i in data.item_ids]


def _profiles(data: Dataset) -> list[dict[str, str]]:
    attrs = data.user_attrs
    if attrs.shape[1] == 0:
        return [{} for _ in range(data.n_users)]
    records = attrs.astype(object).where(attrs.notna(), None).to_dict("records")
    return [{str(k): str(v) for k, v in r.items() if v is not None and v != ""} for r in records]
