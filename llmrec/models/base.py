"""The recommender protocol every paradigm and baseline implements.

A recommender is a component with a typed, validated config (a pydantic model) and two verbs:
``fit(train, valid)`` and ``recommend(users, k, history=...)``. Scores come from
:meth:`Recommender.score`, which subclasses implement; ranking, exclusion of seen items and the
popularity fallback for users without history live here once.

Models are saved as a folder: ``config.json`` (model name + config) and ``state.safetensors``
(numpy arrays). Nothing is pickled; a folder names its model by a registered short name, and
loading checks every array against the sizes it claims (:mod:`llmrec.models.saved`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Self, cast

import numpy as np
from pydantic import ConfigDict, Field, ValidationError

from llmrec._io import dumps_json, staged_dir
from llmrec.config import StrictConfig, make_config, one_line
from llmrec.data.dataset import Dataset, UserHistory
from llmrec.errors import ConfigError, NotFittedError
from llmrec.models.catalogue import check_saved_name, registered_class
from llmrec.models.query import QueryProfiles
from llmrec.models.saved import CONFIG_FILE, STATE_FILE, read_saved_meta, read_saved_state
from llmrec.runtime import RuntimeOptions, runtime_options, split_legacy

if TYPE_CHECKING:
    from llmrec.lm.base import LanguageModel
    from llmrec.models.trainlog import TrainLog

__all__ = [
    "CONFIG_FILE",
    "STATE_FILE",
    "ModelConfig",
    "Recommendations",
    "Recommender",
]


class ModelConfig(StrictConfig):
    """Base of every model config: strict (unknown keys are errors) and JSON round-trippable."""

    model_config = ConfigDict(validate_assignment=True)

    seed: int = Field(default=0, ge=0, le=2**63 - 1)


@dataclass(frozen=True)
class Recommendations:
    """Top-k answers for a batch of users.

    Attributes:
        users: ``(n,)`` int64 user indices.
        items: ``(n, k)`` int64 item indices, best first; -1 where fewer than k are available.
        scores: ``(n, k)`` float32 scores aligned with ``items`` (``-inf`` where items is -1).
    """

    users: np.ndarray
    items: np.ndarray
    scores: np.ndarray


class Recommender(ABC):
    """Base class of all recommenders.

    Subclasses set ``name`` and ``config_class``, implement :meth:`fit` (calling
    :meth:`_remember_catalogue` first) and :meth:`score`, and, if they hold learned arrays,
    :meth:`_state` / :meth:`_load_state`.
    """

    name: ClassVar[str]
    config_class: ClassVar[type[ModelConfig]] = ModelConfig
    #: False for models that cannot use a query-time history (they use fit-time embeddings).
    uses_query_history: ClassVar[bool] = True
    #: True for models that call a language model at query time (batched by a service).
    queries_lm: ClassVar[bool] = False
    #: True for models whose answer depends on the user's profile attributes.
    reads_profiles: ClassVar[bool] = False

    def __init__(
        self,
        config: ModelConfig | Mapping[str, Any] | None = None,
        *,
        runtime: RuntimeOptions | Mapping[str, Any] | None = None,
        **overrides: Any,
    ):
        """The constructor rule every component follows: ``config`` (the config class, a
        mapping or ``None``), keyword ``overrides`` of its fields, collaborators (here
        ``runtime``; an LM, a pool, a retriever in subclasses) as keyword arguments."""
        if isinstance(config, Mapping):
            config, moved = split_legacy(dict(config), self.name)
        else:
            moved = {}
        overrides, moved_too = split_legacy(overrides, self.name)
        self.config = make_config(self.config_class, config, overrides, self.name)
        #: how this model runs (threads, device, ...): never saved, never in a stage key
        # keys an older config held fill in only where no runtime options are given
        self.runtime = runtime_options(runtime if runtime is not None else {**moved, **moved_too})
        self.n_items = 0
        self.n_users = 0
        self._popularity: np.ndarray | None = None
        self._fit_history: UserHistory | None = None

    # --- the two verbs -----------------------------------------------------------------------
    @abstractmethod
    def fit(self, train: Dataset, valid: Dataset | None = None) -> Self:
        """Learn from ``train``; ``valid`` (held-out next items) may drive early stopping."""

    @abstractmethod
    def score(self, users: np.ndarray, history: UserHistory) -> np.ndarray:
        """``(len(users), n_items)`` float32 scores, higher is better.

        ``history`` holds what is known about each user at query time; sequential models read
        it, others may ignore it. Seen items need not be masked here.
        """

    def recommend(
        self,
        users: np.ndarray | list[int],
        k: int = 10,
        *,
        history: Dataset | UserHistory | None = None,
        exclude_seen: bool = True,
        batch_size: int = 1024,
        profiles: QueryProfiles | None = None,
    ) -> Recommendations:
        """Top-``k`` items for each user index.

        Args:
            users: user indices into the dataset's index space.
            k: list length; rows are padded with -1 when the catalogue runs out.
            history: interactions known at query time (default: those given to ``fit``).
            exclude_seen: drop items in the user's history from the list.
            profiles: ``profiles[u]`` describes user index ``u`` for this query (see
                :mod:`llmrec.models.query`; default: the profiles stored at fit time). Models
                that read no profile (``reads_profiles`` False) ignore it.
        """
        users_arr, hist = self._query(users, history)
        k_eff = max(0, min(k, self.n_items))
        out_items = np.full((len(users_arr), k), -1, dtype=np.int64)
        out_scores = np.full((len(users_arr), k), -np.inf, dtype=np.float32)
        for start in range(0, len(users_arr), batch_size):
            batch = users_arr[start : start + batch_size]
            ranked = self._top_k_on_device(batch, hist, k_eff, exclude_seen)
            if ranked is None:
                scores = self._scores_with_fallback(batch, hist, profiles)
                if exclude_seen:
                    _mask_seen(scores, batch, hist)
                ranked = _top_k(scores, k_eff)
            items, top = ranked
            out_items[start : start + len(batch), :k_eff] = items
            out_scores[start : start + len(batch), :k_eff] = top
        out_items[~np.isfinite(out_scores)] = -1
        return Recommendations(users_arr, out_items, out_scores)

    def _top_k_on_device(
        self, users: np.ndarray, hist: UserHistory, k: int, exclude_seen: bool
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """``(items, scores)``, each ``(len(users), k)``, of :meth:`recommend`'s top ``k``,
        ranked where :meth:`_device_scores` scores (a torch model's device) so that only they
        come back to the CPU; equal, bit for bit, to what :meth:`recommend` ranks from
        :meth:`score` with numpy, which it does when this is ``None``."""
        scores_of = self._device_scores(users, hist)
        if scores_of is None:
            return None
        from llmrec.models._torch import rank_on_device  # torch: only for models that use it

        assert self._popularity is not None
        return rank_on_device(
            self.runtime, scores_of, users, hist, self._popularity, k, exclude_seen
        )

    def _device_scores(self, users: np.ndarray, hist: UserHistory) -> Callable[[], Any] | None:
        """A call computing :meth:`score`'s ``(len(users), n_items)`` scores as a tensor on the
        model's device, for :meth:`recommend` to rank there; ``None`` (the default): the
        model's scores are ranked here, with numpy. A subclass that overrides :meth:`score`
        of a model that ranks on its device overrides this too."""
        return None

    def score_candidates(
        self,
        users: np.ndarray,
        candidates: np.ndarray,
        *,
        history: Dataset | UserHistory | None = None,
        profiles: QueryProfiles | None = None,
    ) -> np.ndarray:
        """``(n, c)`` float32 scores of each user's candidate items ``(n, c)`` int64
        (``profiles`` as in :meth:`recommend`)."""
        users_arr, hist = self._query(users, history)
        scores = self._scores_with_fallback(users_arr, hist, profiles)
        return np.take_along_axis(scores, np.asarray(candidates, dtype=np.int64), axis=1)

    def score_with_profiles(
        self, users: np.ndarray, history: UserHistory, profiles: QueryProfiles | None
    ) -> np.ndarray:
        """:meth:`score` for a query that describes its users by ``profiles`` (``None``: the
        stored ones). Models that read profiles (``reads_profiles`` True) override this."""
        return self.score(users, history)

    # --- shared helpers for subclasses -------------------------------------------------------
    def _remember_catalogue(self, train: Dataset) -> None:
        """Record catalogue size, popularity (the fallback) and the fit-time history."""
        self.n_items = train.n_items
        self.n_users = train.n_users
        self._popularity = train.item_popularity().astype(np.float32)
        self._fit_history = train.history()

    def share_catalogue(self, source: Recommender) -> None:
        """Take ``source``'s catalogue size, popularity and fit-time history, as if fitted on
        the same data (a composite restoring a child whose arrays it saved itself)."""
        self.n_items, self.n_users = source.n_items, source.n_users
        self._popularity, self._fit_history = source._popularity, source._fit_history

    def _require_fitted(self) -> None:
        if self._popularity is None:
            raise NotFittedError(f"{self.name} is not fitted; call fit() or load() first")

    def _query_history(self, history: Dataset | UserHistory | None) -> UserHistory:
        self._require_fitted()
        if history is None:
            assert self._fit_history is not None
            return self._fit_history
        return history.history() if isinstance(history, Dataset) else history

    def _query(
        self, users: np.ndarray | list[int], history: Dataset | UserHistory | None
    ) -> tuple[np.ndarray, UserHistory]:
        """``(users as int64, query-time history)``, checked: fitted, users in range."""
        hist = self._query_history(history)
        users_arr = np.asarray(users, dtype=np.int64)
        self._check_users(users_arr, hist)
        return users_arr, hist

    def _check_users(self, users: np.ndarray, hist: UserHistory) -> None:
        if len(users) and (users.min() < 0 or users.max() >= hist.n_users):
            bad = users[(users < 0) | (users >= hist.n_users)][:5].tolist()
            raise ConfigError(f"user indices {bad} are outside 0..{hist.n_users - 1}")

    def _scores_with_fallback(
        self, users: np.ndarray, hist: UserHistory, profiles: QueryProfiles | None = None
    ) -> np.ndarray:
        scores = np.asarray(self.score_with_profiles(users, hist, profiles), dtype=np.float32)
        # a NaN score (a diverged model) ranks last instead of breaking the ordering
        scores[np.isnan(scores)] = -np.inf
        cold = hist.lengths()[users] == 0
        if cold.any():
            assert self._popularity is not None
            scores[cold] = self._popularity
        return scores

    # --- persistence -------------------------------------------------------------------------
    def _state(self) -> dict[str, np.ndarray]:
        """Learned arrays to save (popularity and history are saved by the base class)."""
        return {}

    def _load_state(self, state: dict[str, np.ndarray]) -> None:
        """Restore what :meth:`_state` returned."""

    def _save_files(self, folder: Path) -> None:
        """Write artefacts that are not arrays (e.g. a vector index) into ``folder``."""

    def _load_files(self, folder: Path) -> None:
        """Read what :meth:`_save_files` wrote; called after :meth:`_load_state`."""

    def save(self, path: str | Path) -> Path:
        """Write ``config.json`` and ``state.safetensors`` into the folder ``path``.

        The folder is written beside ``path`` and renamed into place when complete, so an
        interrupted save leaves the previous folder (or none), never a half-written one. An
        existing ``path`` is replaced only when it is empty or a saved model.
        """
        from safetensors.numpy import save_file

        self._require_fitted()
        assert self._popularity is not None and self._fit_history is not None
        folder = Path(path)
        _check_replaceable(folder)
        meta = {
            "model": self.name,
            "config": self.config.model_dump(mode="json"),
            "n_users": self.n_users,
            "n_items": self.n_items,
        }
        state = {f"model.{k}": np.ascontiguousarray(v) for k, v in self._state().items()}
        state["base.popularity"] = self._popularity
        state["base.indptr"] = self._fit_history.indptr
        state["base.items"] = self._fit_history.items
        state["base.timestamps"] = self._fit_history.timestamps
        with staged_dir(folder) as partial:
            (partial / CONFIG_FILE).write_text(dumps_json(meta), encoding="utf-8")
            save_file(state, str(partial / STATE_FILE))
            self._save_files(partial)
        return folder

    @classmethod
    def load(
        cls, path: str | Path, *, runtime: RuntimeOptions | Mapping[str, Any] | None = None
    ) -> Recommender:
        """Load a saved model; on the base class, the model class is read from config.json.

        ``runtime`` says how the loaded model runs (device, threads, ...); a model saved on
        one device loads on any other (its state is saved as numpy arrays).

        A saved folder names its model by a registered short name only (never an import path).
        Every damage — unreadable or malformed ``config.json``, a missing, truncated or foreign
        ``state.safetensors``, sizes that disagree with the arrays — is a one-line
        :class:`ConfigError` naming the folder.
        """
        folder = Path(path)
        meta = read_saved_meta(folder)
        klass = _saved_class(cls, meta.model, folder)
        try:
            saved, moved = split_legacy(dict(meta.config), str(folder))
            config = klass.config_class.model_validate(saved)
            for nested in klass.nested_models(config):
                check_saved_name(nested, "config")
            model = klass(config, runtime=runtime if runtime is not None else moved)
        except ValidationError as exc:
            raise ConfigError(one_line(exc, f"{folder}/{CONFIG_FILE}: config")) from None
        except ConfigError as exc:
            raise ConfigError(f"{folder}/{CONFIG_FILE}: {exc}") from None
        state = read_saved_state(folder, meta.n_users, meta.n_items)
        model.n_users, model.n_items = meta.n_users, meta.n_items
        model._popularity = state.pop("base.popularity")
        model._fit_history = UserHistory(
            state.pop("base.indptr"),
            state.pop("base.items"),
            state.pop("base.timestamps"),
            model.n_items,
        )
        model._restore(folder, {k.removeprefix("model."): v for k, v in state.items()})
        return model

    # --- what callers may ask a model (compare, serve, report use only these) ----------------
    def language_models(self) -> list[LanguageModel]:
        """Every LM backend this model holds now — query-time rankers and the encoders its fit
        used — so that their usage counters can be read; empty for models without one.

        Never loads an LM: a model loaded from a folder lists only what it has loaded since.
        """
        return []

    def lm_batch_size(self) -> int | None:
        """Users this model sends to its LM in one call at query time (a ranker's batch size,
        sized from the device); ``None`` when it does not say (evaluation then asks 8 at a
        time)."""
        return None

    def fallback(self) -> Recommender | None:
        """The model that answers when this one's LM fails or is too slow (a two-stage's
        retriever); ``None`` when there is none."""
        return None

    def training_log(self) -> TrainLog | None:
        """What early stopping saw during the last :meth:`fit` (torch-trained models)."""
        return None

    def fit_history(self) -> UserHistory | None:
        """The interactions given to :meth:`fit` (or saved with the model); ``None`` before."""
        return self._fit_history

    def diagnostics(self) -> dict[str, int]:
        """Counts the run record should carry about how this model answered (e.g. how many
        users an LM ranked and how many fell back); empty for models with nothing to say."""
        return {}

    @classmethod
    def nested_models(cls, config: ModelConfig) -> list[str]:
        """Names of the models ``config`` builds inside this one (a two-stage's retriever).

        :meth:`load` checks each is a registered short name before building anything, so a
        saved folder cannot choose an import through a nested config either.
        """
        return []

    def _check_state(self, state: Mapping[str, np.ndarray]) -> None:
        """Raise :class:`ConfigError` when the saved arrays ``state`` (keys as :meth:`_state`
        wrote them) do not fit this model's config, ``n_users`` and ``n_items``.

        Called by :meth:`load` before :meth:`_load_state`; subclasses holding arrays check
        each one's presence, dtype and shape (see :func:`llmrec.models.saved.expect`).
        """

    def _restore(self, folder: Path, state: dict[str, np.ndarray]) -> None:
        """Check and load the model's own arrays and files; damage is a :class:`ConfigError`
        naming ``folder``. Errors a damaged state provokes inside :meth:`_load_state` (a missing
        key, a torch size mismatch) are reported the same way."""
        try:
            self._check_state(state)
            self._load_state(state)
            self._load_files(folder)
        except ConfigError as exc:
            raise ConfigError(f"{folder}: {exc}") from None
        except (KeyError, IndexError, TypeError, ValueError, RuntimeError) as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise ConfigError(
                f"{folder}: the saved state does not fit {self.name}: {first}"
            ) from None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config!r})"


def _saved_class(cls: type[Recommender], name: str, folder: Path) -> type[Recommender]:
    """The class a saved folder names (through the catalogue: a registered short name only).
    Loaded through a subclass, the folder must hold that class or one derived from it."""
    if cls is not Recommender and name == cls.name:
        return cls
    hint = "; load it with its own class: MyModel.load(path)" if cls is Recommender else ""
    check_saved_name(name, f"{folder}/{CONFIG_FILE}", hint=hint)
    klass = cast("type[Recommender]", registered_class(name, Recommender))
    if not issubclass(klass, cls):
        raise ConfigError(f"{folder} holds a {name} model, not {cls.name}")
    return klass


def _check_replaceable(folder: Path) -> None:
    """Refuse to replace an existing folder that is neither empty nor a saved model."""
    if not folder.exists():
        return
    if not folder.is_dir():
        raise ConfigError(f"cannot save a model to {folder}: it is a file")
    if (folder / STATE_FILE).is_file() or not any(folder.iterdir()):
        return
    raise ConfigError(
        f"cannot save a model to {folder}: the folder holds other files (no {STATE_FILE}); "
        "choose a new or empty folder"
    )


def seen_cells(users: np.ndarray, hist: UserHistory) -> tuple[np.ndarray, np.ndarray]:
    """``(rows, cols)`` int64: row ``i`` of a ``(len(users), n_items)`` score matrix, column
    of each item ``users[i]`` has in ``hist`` (the cells :meth:`Recommender.recommend` masks)."""
    starts = hist.indptr[users]
    ends = hist.indptr[users + 1]
    rows = np.repeat(np.arange(len(users), dtype=np.int64), ends - starts)
    if not len(rows):
        return rows, rows.copy()
    cols = np.concatenate([hist.items[s:e] for s, e in zip(starts, ends, strict=True)])
    return rows, cols.astype(np.int64)


def _mask_seen(scores: np.ndarray, users: np.ndarray, hist: UserHistory) -> None:
    rows, cols = seen_cells(users, hist)
    scores[rows, cols] = -np.inf


def _top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best items per row, best first; equal scores go to the lower item index.

    Ties matter at the cut: ``argpartition`` alone picks among items tied with the k-th score
    arbitrarily, so the top 10 would not be the full ranking cut at 10. Items strictly above the
    k-th score are all kept, and the tied ones are filled in index order.
    """
    n_rows, n_items = scores.shape
    if k == 0:
        empty = np.zeros((n_rows, 0))
        return empty.astype(np.int64), empty.astype(np.float32)
    if k < n_items:
        kth = -np.partition(-scores, k - 1, axis=1)[:, k - 1 : k]
        above = scores > kth
        tied = scores == kth
        room = k - above.sum(axis=1, keepdims=True)
        keep = above | (tied & (np.cumsum(tied, axis=1) <= room))
        part = np.nonzero(keep)[1].reshape(n_rows, k)
    else:
        part = np.tile(np.arange(n_items), (n_rows, 1))
    part_scores = np.take_along_axis(scores, part, axis=1)
    order = np.lexsort((part, -part_scores), axis=1)
    items = np.take_along_axis(part, order, axis=1)
    return items.astype(np.int64), np.take_along_axis(part_scores, order, axis=1)
