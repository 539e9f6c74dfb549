"""Build a :class:`~llmrec.data.dataset.Dataset` from tables: pandas/polars frames, CSV, Parquet.

Interactions name a user, an item and optionally a time and a rating; an optional item table
adds text fields and an optional user table adds attributes. A :class:`ColumnMap` says which
column is which. Everything is vectorised (``pd.factorize``, index look-ups), so ten million
interactions load in seconds.

Conventions (also in ``docs/data.md``):

* **Index order**: users and items are indexed in *sorted* order of their original ids (ids
  that cannot be compared with each other, such as a mix of numbers and strings, fall back to
  order of first appearance). With an item (user) table, its ids define the item (user) space,
  so items nobody interacted with still get an index.
* **Rows in error messages** are 1-based *data* rows: row 1 is the first row after the header
  (line 2 of a CSV file; blank lines are skipped), and for a frame the first row by position.
* **Timestamps** are integers (seconds since the epoch), floats (truncated to seconds) or
  strings/datetimes that pandas parses (naive times are taken as UTC). Without a timestamp
  column the row order is the time order: row ``i`` gets timestamp ``i``.
* **Impossible values are refused**, never coerced: a timestamp must be finite, not negative
  and fit in int64 (so 1970 onwards, in any unit up to nanoseconds); a rating must be finite
  and fit in float32; an id must be a finite scalar (not a list, dict or struct); each role
  needs its own column.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from llmrec.config import StrictConfig, validated
from llmrec.data._files import (
    _check_regular_file,
    _header,
    _is_parquet,
    _os_reason,
    _pyarrow_parquet,
    _read_csv,
    _read_parquet_file,
    _repeated,
    _stem,
    _to_pandas,
)
from llmrec.data._values import (
    _align_id_types,
    _factorize_sorted,
    _ids,
    _show,
    _sorted_unique,
    _Source,
    parse_ratings,
    parse_timestamps,
)
from llmrec.data.dataset import Dataset
from llmrec.errors import DataError

__all__ = [
    "ColumnMap",
    "from_frame",
    "read_csv",
    "read_parquet",
    "read_table",
    "side_paths",
    "to_frames",
    "write_parquet",
]

#: names tried, in order, for a role whose column was not named explicitly
ALIASES: dict[str, tuple[str, ...]] = {
    "user": ("user_id", "userId", "userid", "user"),
    "item": ("item_id", "itemId", "itemid", "item", "movieId", "movie_id"),
    "timestamp": ("timestamp", "time", "ts", "datetime", "date"),
    "rating": ("rating",),
}


class ColumnMap(StrictConfig):
    """Which column holds what.

    Interactions: ``user``, ``item`` (required), ``timestamp`` and ``rating`` (optional; a
    role left at its default is looked up under a few common names, see :data:`ALIASES`, and
    is simply absent when none is found; a role named explicitly must exist; ``None`` means
    "do not use"). Item table: ``item_id`` (default: same name as ``item``) and ``item_text``
    (default: every other column). User table: ``user_id`` (default: same name as ``user``)
    and ``user_attrs`` (default: every other column).
    """

    user: str = "user_id"
    item: str = "item_id"
    timestamp: str | None = "timestamp"
    rating: str | None = "rating"
    item_id: str | None = None
    item_text: list[str] | None = None
    user_id: str | None = None
    user_attrs: list[str] | None = None


# --- public entry points -----------------------------------------------------------------------


def from_frame(
    interactions: Any,
    *,
    items: Any = None,
    users: Any = None,
    columns: ColumnMap | dict[str, Any] | None = None,
    name: str = "dataset",
) -> Dataset:
    """A :class:`Dataset` from an interactions frame and optional item and user frames.

    Args:
        interactions: pandas or polars frame (anything with ``to_pandas()``), one row per event.
        items: frame with one row per item: the id column and text fields.
        users: frame with one row per user: the id column and attributes.
        columns: a :class:`ColumnMap` (or a dict of its fields).
        name: the dataset's label in reports.

    Raises:
        DataError: naming the frame, the 1-based row and the column of the first bad value.
    """
    cmap = _column_map(columns)
    return _build(
        _to_pandas(interactions),
        None if items is None else _to_pandas(items),
        None if users is None else _to_pandas(users),
        cmap,
        (_Source("interactions frame"), _Source("items frame"), _Source("users frame")),
        name,
    )


def read_csv(
    path: str | Path,
    *,
    items: str | Path | None = None,
    users: str | Path | None = None,
    columns: ColumnMap | dict[str, Any] | None = None,
    name: str | None = None,
    sep: str | None = None,
    **read_kwargs: Any,
) -> Dataset:
    """A :class:`Dataset` from CSV (or TSV) files.

    ``sep`` defaults to a tab for ``.tsv``/``.tab`` files and a comma otherwise. Extra keyword
    arguments go to :func:`pandas.read_csv` (e.g. ``dtype={"sku": str}`` to keep leading zeros,
    ``encoding="latin-1"``).
    """
    return read_table(
        path, items=items, users=users, columns=columns, name=name, sep=sep, **read_kwargs
    )


def read_parquet(
    path: str | Path,
    *,
    items: str | Path | None = None,
    users: str | Path | None = None,
    columns: ColumnMap | dict[str, Any] | None = None,
    name: str | None = None,
) -> Dataset:
    """A :class:`Dataset` from Parquet files (needs the ``parquet`` extra: pyarrow)."""
    return read_table(path, items=items, users=users, columns=columns, name=name)


def read_table(
    path: str | Path,
    *,
    items: str | Path | None = None,
    users: str | Path | None = None,
    columns: ColumnMap | dict[str, Any] | None = None,
    name: str | None = None,
    sep: str | None = None,
    **read_kwargs: Any,
) -> Dataset:
    """A :class:`Dataset` from files, each read as Parquet or CSV by its extension."""
    cmap = _column_map(columns)
    inter_path = Path(path)
    inter_cols = _wanted_interaction_columns(inter_path, cmap, sep, read_kwargs)
    inter = _read_file(inter_path, inter_cols, sep, read_kwargs)
    item_frame = None if items is None else _read_file(Path(items), None, sep, read_kwargs)
    user_frame = None if users is None else _read_file(Path(users), None, sep, read_kwargs)
    sources = (
        _Source(str(inter_path)),
        _Source(str(items) if items is not None else "items"),
        _Source(str(users) if users is not None else "users"),
    )
    return _build(inter, item_frame, user_frame, cmap, sources, name or _stem(inter_path))


# --- reading files -----------------------------------------------------------------------------


def _wanted_interaction_columns(
    path: Path, cmap: ColumnMap, sep: str | None, read_kwargs: dict[str, Any]
) -> list[str]:
    """The interaction columns to read (only those, to save memory on wide files)."""
    available, repeated = _header(path, sep, read_kwargs)
    roles = _resolve_roles(available, cmap, _Source(str(path)), repeated)
    return [c for c in roles.values() if c is not None]


def _read_file(
    path: Path, usecols: list[str] | None, sep: str | None, read_kwargs: dict[str, Any]
) -> pd.DataFrame:
    if _is_parquet(path):
        return _read_parquet_file(path, usecols)
    _check_regular_file(path)
    # All CSV columns are read (pandas' usecols would silently accept rows with extra fields).
    frame = _read_csv(path, sep, dict(read_kwargs))
    return frame if usecols is None else frame[usecols]


def _column_map(columns: ColumnMap | dict[str, Any] | None) -> ColumnMap:
    if columns is None:
        return ColumnMap()
    if isinstance(columns, ColumnMap):
        return columns
    return validated(ColumnMap, columns, "invalid column mapping")


# --- building the dataset ----------------------------------------------------------------------


def _resolve_roles(
    available: Sequence[str], cmap: ColumnMap, src: _Source, repeated: set[str] | None = None
) -> dict[str, str | None]:
    """Map each interaction role to an existing column (or ``None`` for absent optional ones).

    Each role needs a column of its own, named once in the header (``repeated`` are the names
    the header holds more than once)."""
    present = set(available)
    out: dict[str, str | None] = {}
    for role in ("user", "item", "timestamp", "rating"):
        wanted = getattr(cmap, role)
        explicit = role in cmap.model_fields_set
        if wanted is None:
            out[role] = None
        elif wanted in present:
            out[role] = wanted
        elif not explicit:
            out[role] = next((a for a in ALIASES[role] if a in present), None)
            if out[role] is None and role in ("user", "item"):
                raise src.error(
                    f"no {role} column (looked for {', '.join(ALIASES[role])}); columns are "
                    f"{list(available)}; name it with columns={{'{role}': ...}}",
                    column=wanted,
                )
        else:
            raise src.error(f"column not found; columns are {list(available)}", column=wanted)
    _check_distinct(out, src, repeated or _repeated(available))
    return out


def _check_distinct(roles: dict[str, str | None], src: _Source, repeated: set[str]) -> None:
    """One column per role and one role per column: a column read as both the timestamp and
    the rating, or a header naming the user column twice, is a mistake to report, not guess."""
    taken: dict[str, str] = {}
    for role, column in roles.items():
        if column is None:
            continue
        if column in taken:
            raise src.error(
                f"mapped to both {taken[column]} and {role}; each role needs a column of its own",
                column=column,
            )
        if column in repeated:
            raise src.error(
                f"the header names this {role} column more than once; rename the copies",
                column=column,
            )
        taken[column] = role


def _build(
    inter: pd.DataFrame,
    items: pd.DataFrame | None,
    users: pd.DataFrame | None,
    cmap: ColumnMap,
    sources: tuple[_Source, _Source, _Source],
    name: str,
) -> Dataset:
    inter_src, item_src, user_src = sources
    roles = _resolve_roles([str(c) for c in inter.columns], cmap, inter_src)
    if len(inter) == 0:
        raise inter_src.error("no interaction rows (only a header)")
    user_col, item_col = str(roles["user"]), str(roles["item"])
    user_raw = _ids(inter[user_col], inter_src, user_col)
    item_raw = _ids(inter[item_col], inter_src, item_col)
    timestamps = (
        np.arange(len(inter), dtype=np.int64)
        if roles["timestamp"] is None
        else parse_timestamps(inter[roles["timestamp"]], inter_src, roles["timestamp"])
    )
    ratings = (
        None
        if roles["rating"] is None
        else parse_ratings(inter[roles["rating"]], inter_src, roles["rating"])
    )
    item_ids, item_idx, item_text = _space(
        item_raw, items, cmap.item_id or item_col, cmap.item_text, "item", inter_src, item_src,
        item_col,
    )  # fmt: skip
    user_ids, user_idx, user_attrs = _space(
        user_raw, users, cmap.user_id or user_col, cmap.user_attrs, "user", inter_src, user_src,
        user_col,
    )  # fmt: skip
    return Dataset(
        user_ids=user_ids,
        item_ids=item_ids,
        users=user_idx,
        items=item_idx,
        timestamps=timestamps,
        ratings=ratings,
        item_text=item_text,
        user_attrs=user_attrs,
        name=name,
    )


def _space(
    raw: pd.Series,
    table: pd.DataFrame | None,
    id_col: str,
    fields: list[str] | None,
    kind: str,
    inter_src: _Source,
    table_src: _Source,
    inter_col: str,
) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    """The id space of users or items: (sorted ids, index of each interaction, side table)."""
    if table is None:
        ids, codes = _factorize_sorted(raw)
        return ids, codes, pd.DataFrame(index=pd.RangeIndex(len(ids)))
    side = _side_table(table, id_col, fields, table_src)
    raw, side_ids = _align_id_types(raw, side.index.to_series())
    side.index = pd.Index(side_ids)
    ids = _sorted_unique(side.index.to_numpy())
    lookup = pd.Index(ids)
    codes = lookup.get_indexer(raw)
    unknown = np.flatnonzero(codes < 0)
    if len(unknown):
        first = int(unknown[0])
        raise inter_src.error(
            f"{kind} id {_show(raw.iloc[first])} is not in the {kind} table {table_src.label} "
            f"({len(unknown)} interaction(s) name unknown {kind}s)",
            row=first + 1,
            column=inter_col,
        )
    return ids, codes.astype(np.int32), side.loc[ids].reset_index(drop=True)


def _side_table(
    table: pd.DataFrame, id_col: str, fields: list[str] | None, src: _Source
) -> pd.DataFrame:
    """The item (user) table indexed by id, duplicates that agree dropped, conflicts refused."""
    available = [str(c) for c in table.columns]
    if id_col not in available:
        raise src.error(f"id column not found; columns are {available}", column=id_col)
    cols = [c for c in available if c != id_col] if fields is None else list(fields)
    missing = [c for c in cols if c not in available]
    if missing:
        raise src.error(f"column not found; columns are {available}", column=missing[0])
    if len(table) == 0:
        raise src.error("no rows (only a header)")
    frame = table[[id_col, *cols]].reset_index(drop=True)
    frame[id_col] = _ids(frame[id_col], src, id_col)
    frame = _drop_agreeing_duplicates(frame, id_col, src)
    return frame.set_index(id_col)


def _drop_agreeing_duplicates(frame: pd.DataFrame, id_col: str, src: _Source) -> pd.DataFrame:
    """Keep the first row of each id; raise on the first later row whose fields differ."""
    dup = frame.duplicated(id_col, keep=False).to_numpy()
    if not dup.any():
        return frame
    rows = frame[dup]
    first = rows.drop_duplicates(id_col).set_index(id_col)
    ref = first.reindex(rows[id_col])
    for col in first.columns:
        a, b = rows[col].to_numpy(), ref[col].to_numpy()
        differs = ~((a == b) | (pd.isna(a) & pd.isna(b)))
        if differs.any():
            pos = int(rows.index[np.flatnonzero(differs)[0]])
            the_id = frame[id_col].iat[pos]
            first_row = int(frame.index[frame[id_col] == the_id][0]) + 1
            raise src.error(
                f"duplicate id {_show(the_id)} with a different value {_show(frame[col].iat[pos])} "
                f"than row {first_row} ({_show(frame[col].iat[first_row - 1])})",
                row=pos + 1,
                column=str(col),
            )
    return frame.drop_duplicates(id_col)


# --- writing -----------------------------------------------------------------------------------


def to_frames(data: Dataset) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(interactions, items, users) frames with original ids, the inverse of :func:`from_frame`.

    Interactions have ``user_id``, ``item_id``, ``timestamp`` (and ``rating``); the item table
    has ``item_id`` and the text fields; the user table ``user_id`` and the attributes.
    """
    inter = pd.DataFrame(
        {
            "user_id": data.user_ids[data.users],
            "item_id": data.item_ids[data.items],
            "timestamp": data.timestamps,
        }
    )
    if data.ratings is not None:
        inter["rating"] = data.ratings
    items = data.item_text.reset_index(drop=True).copy()
    items.insert(0, "item_id", data.item_ids)
    users = data.user_attrs.reset_index(drop=True).copy()
    users.insert(0, "user_id", data.user_ids)
    return inter, items, users


def side_paths(path: str | Path) -> tuple[Path, Path]:
    """Where :func:`write_parquet` puts the item and user tables next to ``path``:
    ``x.parquet`` -> ``x.items.parquet``, ``x.users.parquet``."""
    path = Path(path)
    stem = path.name.removesuffix(path.suffix)
    suffix = path.suffix
    return path.with_name(f"{stem}.items{suffix}"), path.with_name(f"{stem}.users{suffix}")


def write_parquet(data: Dataset, path: str | Path) -> list[Path]:
    """Write interactions to ``path`` and the item/user tables beside it (see :func:`side_paths`).

    Each file is written under a temporary name and renamed into place once all are written,
    so a failure leaves no half-written file. Returns the paths written. Needs the ``parquet``
    extra (pyarrow).

    Raises:
        DataError: a target is a directory, or the folder cannot be created or written.
    """
    _pyarrow_parquet()
    path = Path(path)
    inter, items, users = to_frames(data)
    items_path, users_path = side_paths(path)
    targets = [
        (frame, target)
        for frame, target in ((inter, path), (items, items_path), (users, users_path))
        if frame.shape[1] > 1 or target == path
    ]
    for _, target in targets:
        if target.is_dir():
            raise DataError("is a directory; name the .parquet file to write", file=str(target))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(
            f"cannot create the folder: {_os_reason(exc)}", file=str(path.parent)
        ) from None
    temps = [target.with_name(f".{target.name}.{os.getpid()}.tmp") for _, target in targets]
    current = path
    try:
        for (frame, target), tmp in zip(targets, temps, strict=True):
            current = target
            frame.to_parquet(tmp, index=False)
        for (_, target), tmp in zip(targets, temps, strict=True):
            current = target
            os.replace(tmp, target)
    except OSError as exc:
        raise DataError(f"cannot write: {_os_reason(exc)}", file=str(current)) from None
    finally:
        for tmp in temps:
            tmp.unlink(missing_ok=True)
    return [target for _, target in targets]
