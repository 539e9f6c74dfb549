"""Filters that published protocols apply before splitting.

``k_core`` is the "5-core" filtering of LlamaRec's (and most sequential papers') datasets;
``ties_by_item`` orders a user's same-second interactions by item id, as LlamaRec's split sorts
each user's history by (timestamp, item id). Both return a new :class:`Dataset`; a leave-one-out
split of the result is then the paper's split.
"""

from __future__ import annotations

import numpy as np

from llmrec.data.dataset import Dataset
from llmrec.errors import ConfigError, DataError

__all__ = ["k_core", "ties_by_item"]


def k_core(data: Dataset, *, min_user: int = 5, min_item: int = 5) -> Dataset:
    """Drop users with fewer than ``min_user`` interactions and items with fewer than
    ``min_item``, repeatedly until every remaining user and item has enough; users and items
    left with none leave the index space (their ids and text go with them).

    Raises:
        ConfigError: a threshold below 1.
        DataError: nothing survives the filter.
    """
    if min_user < 1 or min_item < 1:
        raise ConfigError(f"k-core thresholds must be 1 or more; got {min_user}, {min_item}")
    keep = np.ones(len(data), dtype=bool)
    while True:
        users, items = data.users[keep], data.items[keep]
        bad_user = np.bincount(users, minlength=data.n_users) < min_user
        bad_item = np.bincount(items, minlength=data.n_items) < min_item
        drop = bad_user[users] | bad_item[items]
        if not drop.any():
            break
        keep[np.flatnonzero(keep)[drop]] = False
    if not keep.any():
        raise DataError(
            f"{min_user}/{min_item}-core filtering leaves no interaction of {data.name!r} "
            f"({len(data):,} interactions)"
        )
    return _compact(data, keep)


def ties_by_item(data: Dataset) -> Dataset:
    """The same interactions, same-time ones ordered by item id (by item index where the ids
    do not compare), so a split that keeps input order on ties sorts them by item."""
    try:
        key = np.argsort(np.argsort(data.item_ids, kind="stable"), kind="stable")[data.items]
    except TypeError:
        key = data.items
    return data.subset(np.lexsort((key, data.timestamps, data.users)))


def _compact(data: Dataset, keep: np.ndarray) -> Dataset:
    """The interactions where ``keep`` holds, users and items renumbered over those present."""
    users, items = data.users[keep], data.items[keep]
    kept_users = np.unique(users)
    kept_items = np.unique(items)
    return Dataset(
        user_ids=data.user_ids[kept_users],
        item_ids=data.item_ids[kept_items],
        users=np.searchsorted(kept_users, users),
        items=np.searchsorted(kept_items, items),
        timestamps=data.timestamps[keep],
        ratings=None if data.ratings is None else data.ratings[keep],
        item_text=data.item_text.iloc[kept_items].reset_index(drop=True),
        user_attrs=data.user_attrs.iloc[kept_users].reset_index(drop=True),
        name=data.name,
    )
