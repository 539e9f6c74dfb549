"""The one data structure every part of llmrec shares.

A :class:`Dataset` holds users and items mapped to contiguous integer indices (the original ids
are kept), interactions as parallel numpy arrays, item text fields and user attributes. Splits
produce datasets that share the same index space, so an item index means the same item in the
training, validation and test parts.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import pandas as pd
import scipy.sparse as sp

from llmrec.errors import DataError, UnknownIdError


def ragged(
    rows: Sequence[Sequence[int] | np.ndarray], dtype: type = np.int64
) -> tuple[np.ndarray, np.ndarray]:
    """``(indptr, values)``: the CSR layout of ``rows``; row ``i`` is
    ``values[indptr[i]:indptr[i + 1]]``. ``indptr`` is ``(len(rows) + 1,)`` int64."""
    lengths = np.array([len(r) for r in rows], dtype=np.int64)
    indptr = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum(lengths, out=indptr[1:])
    if not len(rows):
        return indptr, np.zeros(0, dtype=dtype)
    return indptr, np.concatenate([np.asarray(r, dtype=dtype) for r in rows])


@dataclass(frozen=True, eq=False)
class UserHistory:
    """Each user's interactions in time order, as a CSR layout.

    ``items[indptr[u]:indptr[u + 1]]`` are user ``u``'s item indices, oldest first.

    Attributes:
        indptr: ``(n_users + 1,)`` int64 row offsets.
        items: ``(n_interactions,)`` int32 item indices.
        timestamps: ``(n_interactions,)`` int64 seconds, aligned with ``items``.
        n_items: size of the item index space.
    """

    indptr: np.ndarray
    items: np.ndarray
    timestamps: np.ndarray
    n_items: int

    @classmethod
    def from_rows(cls, rows: Sequence[Sequence[int] | np.ndarray], n_items: int) -> UserHistory:
        """A history whose user ``i`` has the items ``rows[i]``, oldest first (each row's order
        is its time: timestamps are positions within the row)."""
        indptr, items = ragged(rows, np.int32)
        stamps = np.arange(len(items), dtype=np.int64) - np.repeat(indptr[:-1], np.diff(indptr))
        return cls(indptr, items, stamps, n_items)

    @property
    def n_users(self) -> int:
        return len(self.indptr) - 1

    def of(self, user: int) -> np.ndarray:
        """Item indices of ``user``, oldest first."""
        return self.items[self.indptr[user] : self.indptr[user + 1]]

    def lengths(self) -> np.ndarray:
        """``(n_users,)`` int64 number of interactions per user."""
        return np.diff(self.indptr)

    def to_csr(self) -> sp.csr_matrix:
        """Binary ``(n_users, n_items)`` float32 matrix of who interacted with what."""
        data = np.ones(len(self.items), dtype=np.float32)
        # copies: scipy sorts and merges indices in place, and ``items`` is this history's
        # time order (shared by every model fitted on the same split)
        mat = sp.csr_matrix(
            (data, self.items.copy(), self.indptr.copy()), shape=(self.n_users, self.n_items)
        )
        mat.sum_duplicates()
        mat.data[:] = 1.0
        return mat

    def recent(self, length: int) -> UserHistory:
        """The same users with only their ``length`` most recent items each."""
        lengths = np.minimum(self.lengths(), length)
        keep = np.arange(len(self.items)) >= np.repeat(self.indptr[1:] - lengths, self.lengths())
        indptr = np.zeros_like(self.indptr)
        np.cumsum(lengths, out=indptr[1:])
        return UserHistory(indptr, self.items[keep], self.timestamps[keep], self.n_items)

    def last(self, users: np.ndarray, length: int) -> np.ndarray:
        """``(len(users), length)`` int64 matrix of each user's most recent items, right-aligned.

        Positions without an item hold -1. The newest item is in the last column.
        """
        out = np.full((len(users), length), -1, dtype=np.int64)
        for row, user in enumerate(users):
            seq = self.of(int(user))[-length:]
            if len(seq):
                out[row, length - len(seq) :] = seq
        return out


@dataclass(eq=False)
class Dataset:
    """Users, items and their interactions, indexed by contiguous integers.

    Attributes:
        user_ids: ``(n_users,)`` original user ids; ``user_ids[u]`` is the id of index ``u``.
        item_ids: ``(n_items,)`` original item ids.
        users: ``(n,)`` int32 user index of each interaction.
        items: ``(n,)`` int32 item index of each interaction.
        timestamps: ``(n,)`` int64 seconds since the epoch (or any monotone clock).
        ratings: ``(n,)`` float32 explicit ratings, or ``None`` for implicit data.
        item_text: one row per item index with text fields (title, genres, ...).
        user_attrs: one row per user index with attributes (age, gender, ...).
        name: a short label used in reports.
    """

    user_ids: np.ndarray
    item_ids: np.ndarray
    users: np.ndarray
    items: np.ndarray
    timestamps: np.ndarray
    ratings: np.ndarray | None = None
    item_text: pd.DataFrame = field(default_factory=pd.DataFrame)
    user_attrs: pd.DataFrame = field(default_factory=pd.DataFrame)
    name: str = "dataset"

    def __post_init__(self) -> None:
        self.users = np.asarray(self.users, dtype=np.int32)
        self.items = np.asarray(self.items, dtype=np.int32)
        self.timestamps = np.asarray(self.timestamps, dtype=np.int64)
        if self.ratings is not None:
            self.ratings = np.asarray(self.ratings, dtype=np.float32)
        n = len(self.users)
        lengths = {len(self.items), len(self.timestamps)}
        if self.ratings is not None:
            lengths.add(len(self.ratings))
        if lengths != {n}:
            raise DataError("interaction arrays have different lengths")
        if n and (self.users.min() < 0 or self.users.max() >= len(self.user_ids)):
            raise DataError("an interaction names a user index outside the user table")
        if n and (self.items.min() < 0 or self.items.max() >= len(self.item_ids)):
            raise DataError("an interaction names an item index outside the item table")
        if len(self.item_text) == 0:
            self.item_text = pd.DataFrame(index=pd.RangeIndex(len(self.item_ids)))
        if len(self.user_attrs) == 0:
            self.user_attrs = pd.DataFrame(index=pd.RangeIndex(len(self.user_ids)))

    # --- sizes -------------------------------------------------------------------------------
    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @property
    def n_interactions(self) -> int:
        return len(self.users)

    def __len__(self) -> int:
        return self.n_interactions

    def __repr__(self) -> str:
        return (
            f"Dataset({self.name!r}, users={self.n_users}, items={self.n_items}, "
            f"interactions={self.n_interactions})"
        )

    # --- id lookup ---------------------------------------------------------------------------
    @cached_property
    def _user_lookup(self) -> pd.Index:
        return pd.Index(self.user_ids)

    @cached_property
    def _item_lookup(self) -> pd.Index:
        return pd.Index(self.item_ids)

    def user_index(self, ids: Iterable[object]) -> np.ndarray:
        """Indices of original user ids; raises :class:`UnknownIdError` naming unknown ones."""
        return _lookup(self._user_lookup, list(ids), "user")

    def item_index(self, ids: Iterable[object]) -> np.ndarray:
        """Indices of original item ids; raises :class:`UnknownIdError` naming unknown ones."""
        return _lookup(self._item_lookup, list(ids), "item")

    # --- derived views -----------------------------------------------------------------------
    @cached_property
    def _history(self) -> UserHistory:
        order = np.lexsort((self.timestamps, self.users))
        counts = np.bincount(self.users, minlength=self.n_users)
        indptr = np.zeros(self.n_users + 1, dtype=np.int64)
        np.cumsum(counts, out=indptr[1:])
        return UserHistory(indptr, self.items[order], self.timestamps[order], self.n_items)

    def history(self) -> UserHistory:
        """Each user's items in time order (ties keep input order). Computed once."""
        return self._history

    def item_popularity(self) -> np.ndarray:
        """``(n_items,)`` int64 number of interactions per item."""
        return np.bincount(self.items, minlength=self.n_items).astype(np.int64)

    def active_users(self) -> np.ndarray:
        """Sorted indices of users with at least one interaction."""
        return np.flatnonzero(np.bincount(self.users, minlength=self.n_users))

    # --- building related datasets -----------------------------------------------------------
    def subset(self, mask: np.ndarray, name: str | None = None) -> Dataset:
        """The interactions ``mask`` selects, sharing this dataset's index space: a boolean
        ``(n_interactions,)`` mask, or row indices (taken in their order, e.g. a sort)."""
        return Dataset(
            user_ids=self.user_ids,
            item_ids=self.item_ids,
            users=self.users[mask],
            items=self.items[mask],
            timestamps=self.timestamps[mask],
            ratings=None if self.ratings is None else self.ratings[mask],
            item_text=self.item_text,
            user_attrs=self.user_attrs,
            name=name or self.name,
        )

    def concat(self, other: Dataset, name: str | None = None) -> Dataset:
        """Interactions of both datasets (which must share an index space)."""
        same_space = (other.user_ids is self.user_ids and other.item_ids is self.item_ids) or (
            np.array_equal(other.user_ids, self.user_ids)
            and np.array_equal(other.item_ids, self.item_ids)
        )
        if not same_space:
            raise DataError("cannot concatenate datasets with different id spaces")
        ratings = None
        if self.ratings is not None and other.ratings is not None:
            ratings = np.concatenate([self.ratings, other.ratings])
        return Dataset(
            user_ids=self.user_ids,
            item_ids=self.item_ids,
            users=np.concatenate([self.users, other.users]),
            items=np.concatenate([self.items, other.items]),
            timestamps=np.concatenate([self.timestamps, other.timestamps]),
            ratings=ratings,
            item_text=self.item_text,
            user_attrs=self.user_attrs,
            name=name or self.name,
        )

    def with_interactions(
        self, users: np.ndarray, items: np.ndarray, timestamps: np.ndarray | None = None
    ) -> Dataset:
        """A dataset in the same index space holding only the given interactions."""
        if timestamps is None:
            timestamps = np.arange(len(users), dtype=np.int64)
        return Dataset(
            user_ids=self.user_ids,
            item_ids=self.item_ids,
            users=users,
            items=items,
            timestamps=timestamps,
            item_text=self.item_text,
            user_attrs=self.user_attrs,
            name=self.name,
        )

    def item_texts(
        self, template: str | None = None, fields: Sequence[str] | None = None
    ) -> list[str]:
        """One text per item index, from a ``str.format`` template or joined fields.

        Missing values render as empty strings. With neither argument, all text fields are
        joined with ". ".
        """
        frame = self.item_text
        if template is not None:
            records = frame.fillna("").astype(str).to_dict("records")
            try:
                return [template.format(**{str(k): v for k, v in rec.items()}) for rec in records]
            except KeyError as exc:
                raise DataError(
                    f"item text template names field {exc.args[0]!r}; "
                    f"fields are {list(frame.columns)}"
                ) from None
        cols = list(fields) if fields is not None else list(frame.columns)
        if not cols:
            return [str(i) for i in self.item_ids]
        missing = [c for c in cols if c not in frame.columns]
        if missing:
            raise DataError(f"unknown item text fields {missing}; fields are {list(frame.columns)}")
        parts = frame[cols].fillna("").astype(str)
        return [". ".join(p for p in row if p) for row in parts.itertuples(index=False)]


def coerce_id(value: object, ids: np.ndarray) -> object:
    """``value`` in the id type of ``ids`` (a dataset's ``user_ids`` or ``item_ids``) where it
    reads as one: ``"50"`` finds item ``50`` in an integer id space, ``50`` finds ``"50"`` in a
    string one (ids from JSON, Parquet or a command line); anything else is left as it is."""
    if np.issubdtype(ids.dtype, np.integer) and isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            return value
    if not np.issubdtype(ids.dtype, np.integer) and isinstance(value, int | float):
        return str(value)
    return value


def _lookup(index: pd.Index, ids: list[object], kind: str) -> np.ndarray:
    pos = index.get_indexer(pd.Index(ids))
    bad = [ids[i] for i in np.flatnonzero(pos < 0)[:5]]
    if bad:
        more = int((pos < 0).sum()) - len(bad)
        extra = f" and {more} more" if more > 0 else ""
        raise UnknownIdError(f"unknown {kind} id(s): {', '.join(map(repr, bad))}{extra}")
    return pos.astype(np.int64)
