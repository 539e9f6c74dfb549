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

import codecs
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict

from llmrec.data.dataset import Dataset
from llmrec.errors import DataError, MissingExtraError

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


class ColumnMap(BaseModel):
    """Which column holds what.

    Interactions: ``user``, ``item`` (required), ``timestamp`` and ``rating`` (optional; a
    role left at its default is looked up under a few common names, see :data:`ALIASES`, and
    is simply absent when none is found; a role named explicitly must exist; ``None`` means
    "do not use"). Item table: ``item_id`` (default: same name as ``item``) and ``item_text``
    (default: every other column). User table: ``user_id`` (default: same name as ``user``)
    and ``user_attrs`` (default: every other column).
    """

    model_config = ConfigDict(extra="forbid")

    user: str = "user_id"
    item: str = "item_id"
    timestamp: str | None = "timestamp"
    rating: str | None = "rating"
    item_id: str | None = None
    item_text: list[str] | None = None
    user_id: str | None = None
    user_attrs: list[str] | None = None


@dataclass(frozen=True)
class _Source:
    """Where a table came from, for error messages: a file path or a frame label."""

    label: str

    def error(self, message: str, row: int | None = None, column: str | None = None) -> DataError:
        return DataError(message, file=self.label, row=row, column=column)


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


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".gz", ".bz2", ".zip", ".xz", ".zst"):
        name = name.removesuffix(suffix)
    return name.rsplit(".", 1)[0] if "." in name else name


def _is_parquet(path: Path) -> bool:
    return path.suffix.lower() in (".parquet", ".pq", ".parq")


def _csv_sep(path: Path, sep: str | None) -> str:
    if sep is not None:
        return sep
    stem_suffixes = [s.lower() for s in path.suffixes]
    return "\t" if ".tsv" in stem_suffixes or ".tab" in stem_suffixes else ","


def _check_regular_file(path: Path) -> None:
    """Refuse what cannot be read as a table before opening it (a FIFO would block forever)."""
    src = _Source(str(path))
    if not path.exists():
        raise src.error("file not found")
    if path.is_dir():
        raise src.error("is a directory, not a data file")
    if not path.is_file():
        raise src.error("is not a regular file (a FIFO, socket or device); give a data file")


def _header(path: Path, sep: str | None, read_kwargs: dict[str, Any]) -> tuple[list[str], set[str]]:
    """Column names of a file without reading its rows, and the names its header repeats."""
    src = _Source(str(path))
    if _is_parquet(path):
        pq = _pyarrow_parquet()
        _check_regular_file(path)
        try:
            names = [str(n) for n in pq.read_schema(path).names]
        except Exception as exc:
            raise src.error(f"not a readable Parquet file ({_first_line(exc)})") from None
        return names, _repeated(names)
    _check_regular_file(path)
    frame = _read_csv(path, sep, {**read_kwargs, "nrows": 0})
    return [str(c) for c in frame.columns], _repeated(_raw_csv_header(path, sep, read_kwargs))


def _raw_csv_header(path: Path, sep: str | None, read_kwargs: dict[str, Any]) -> list[str]:
    """The header fields as written: pandas renames a repeated ``a`` to ``a.1``, which would
    hide that the file names one column twice."""
    if "names" in read_kwargs or read_kwargs.get("header", "infer") not in ("infer", 0):
        return []
    kwargs = {k: v for k, v in read_kwargs.items() if k not in _NOT_FOR_RAW_HEADER}
    kwargs.update(header=None, nrows=1, dtype=str, keep_default_na=False)
    first = _read_csv(path, sep, kwargs)
    return [str(v) for v in first.iloc[0]] if len(first) else []


#: ``pandas.read_csv`` options that would change or break reading the header as a data row
_NOT_FOR_RAW_HEADER = frozenset(
    ("usecols", "index_col", "converters", "parse_dates", "na_values", "true_values",
     "false_values", "date_format", "skipfooter")
)  # fmt: skip


def _repeated(names: Sequence[str]) -> set[str]:
    return {name for name, count in Counter(names).items() if count > 1}


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


def _read_csv(path: Path, sep: str | None, kwargs: dict[str, Any]) -> pd.DataFrame:
    src = _Source(str(path))
    try:
        return pd.read_csv(path, sep=_csv_sep(path, sep), **kwargs)
    except FileNotFoundError:
        raise src.error("file not found") from None
    except pd.errors.EmptyDataError:
        raise src.error("file is empty (no header, no rows)") from None
    except pd.errors.ParserError as exc:
        raise src.error(f"malformed CSV: {_first_line(exc)}") from None
    except UnicodeDecodeError as exc:
        raise src.error(_not_text(path, kwargs.get("encoding"), exc)) from None
    except ValueError as exc:  # e.g. usecols naming a column pandas did not find
        raise src.error(f"cannot read CSV: {_first_line(exc)}") from None
    except LookupError as exc:  # an encoding Python does not know
        raise src.error(f"cannot read CSV: {_first_line(exc)}") from None
    except OSError as exc:  # a directory, no permission, an I/O error
        raise src.error(f"cannot read file: {_os_reason(exc)}") from None


def _not_text(path: Path, encoding: str | None, exc: UnicodeDecodeError) -> str:
    """Where a file stops being text in its encoding: the line, when the file is not
    compressed (then a line of the file is a line of the table)."""
    codec = encoding or "utf-8"
    hint = "convert it to UTF-8 (or pass encoding=..., e.g. 'latin-1', to read_csv)"
    bad = f"byte 0x{exc.object[exc.start]:02x}" if exc.start < len(exc.object) else "a byte"
    compressed = path.suffix.lower() in (".gz", ".bz2", ".zip", ".xz", ".zst")
    if compressed or _codec_name(codec) not in ("utf-8", "ascii"):
        return f"file is not {codec} text ({bad}); {hint}"
    try:
        with path.open("rb") as fh:
            for number, line in enumerate(fh, start=1):
                try:
                    line.decode(codec)
                except UnicodeDecodeError as err:
                    bad = f"byte 0x{line[err.start]:02x}"
                    return f"line {number} is not {codec} text ({bad}); {hint}"
    except OSError:
        pass
    return f"file is not {codec} text ({bad}); {hint}"


def _codec_name(codec: str) -> str:
    try:
        return codecs.lookup(codec).name
    except LookupError:
        return codec


def _read_parquet_file(path: Path, usecols: list[str] | None) -> pd.DataFrame:
    pq = _pyarrow_parquet()
    _check_regular_file(path)
    src = _Source(str(path))
    try:
        table = pq.read_table(path, columns=usecols)
    except Exception as exc:  # pyarrow raises ArrowInvalid, OSError, ... for damaged files
        raise src.error(f"not a readable Parquet file ({_first_line(exc)})") from None
    return table.to_pandas()


def _pyarrow_parquet() -> Any:
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise MissingExtraError("pyarrow", "parquet") from exc
    return pq


def _show(value: Any) -> str:
    """``repr`` of a cell value without numpy's ``np.int64(...)`` wrapping."""
    return repr(value.item() if isinstance(value, np.generic) else value)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _to_pandas(frame: Any) -> pd.DataFrame:
    """A pandas frame from pandas, polars or pyarrow input (polars/pyarrow via ``to_pandas``)."""
    if isinstance(frame, pd.DataFrame):
        return frame
    if hasattr(frame, "to_pandas"):
        out = frame.to_pandas()
        if isinstance(out, pd.DataFrame):
            return out
    raise DataError(f"expected a pandas or polars DataFrame, got {type(frame).__name__}")


def _column_map(columns: ColumnMap | dict[str, Any] | None) -> ColumnMap:
    if columns is None:
        return ColumnMap()
    if isinstance(columns, ColumnMap):
        return columns
    from llmrec.errors import ConfigError

    try:
        return ColumnMap.model_validate(columns)
    except ValueError as exc:
        raise ConfigError(f"invalid column mapping: {_first_line(exc)}") from None


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


def _ids(col: pd.Series, src: _Source, name: str) -> pd.Series:
    """Id column with missing, nested and non-finite values refused and integral floats
    turned into integers."""
    _refuse_non_scalars(col, src, name, "id")
    missing = col.isna().to_numpy()
    if missing.any():
        raise src.error("missing id", row=int(np.flatnonzero(missing)[0]) + 1, column=name)
    if pd.api.types.is_float_dtype(col.dtype):
        values = col.to_numpy(dtype=np.float64)
        bad = ~np.isfinite(values)
        if bad.any():
            first = int(np.flatnonzero(bad)[0])
            raise src.error(
                f"id {_show(values[first])} is not a finite number", row=first + 1, column=name
            )
        if np.all(np.mod(values, 1) == 0) and np.all(np.abs(values) < _INT64_BOUND):
            return col.astype(np.int64)
    return col


def _refuse_non_scalars(col: pd.Series, src: _Source, name: str, what: str) -> None:
    """Refuse lists, dicts and structs (e.g. a Parquet ``list<int64>`` column) in a column
    that must hold one value per row."""
    if col.dtype != object or pd.api.types.infer_dtype(col, skipna=True) not in _MAYBE_NESTED:
        return
    scalar = col.map(pd.api.types.is_scalar).to_numpy(dtype=bool)
    if scalar.all():
        return
    first = int(np.flatnonzero(~scalar)[0])
    value = col.iloc[first]
    kind = "a mapping" if isinstance(value, dict) else "a list"
    shown = _clip(repr(value.tolist() if isinstance(value, np.ndarray) else value))
    raise src.error(
        f"holds {kind} ({shown}), not one {what} per row; flatten the column first",
        row=first + 1,
        column=name,
    )


#: what ``pandas.api.types.infer_dtype`` calls a column that may hold lists or dicts
_MAYBE_NESTED = frozenset(("mixed", "mixed-integer", "unknown-array"))
#: floats at or beyond this magnitude do not fit in int64
_INT64_BOUND = 2.0**63
#: the largest magnitude a float32 rating holds
_FLOAT32_MAX = float(np.finfo(np.float32).max)


def _clip(text: str, limit: int = 40) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _align_id_types(raw: pd.Series, table_ids: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Compare ids as strings when one side is numeric and the other text (e.g. '7' vs 7)."""
    numeric = pd.api.types.is_numeric_dtype
    if numeric(raw.dtype) != numeric(table_ids.dtype):
        return raw.astype(str), table_ids.astype(str)
    return raw, table_ids


def _sorted_unique(values: np.ndarray) -> np.ndarray:
    uniques = pd.unique(values)
    try:
        return np.sort(uniques)
    except TypeError:  # ids of mixed, incomparable types: keep first appearance
        return np.asarray(uniques)


def _factorize_sorted(raw: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """(sorted unique ids, ``(n,)`` int32 code of each value)."""
    try:
        codes, uniques = pd.factorize(raw, sort=True)
    except TypeError:  # incomparable mixed types: first appearance order
        codes, uniques = pd.factorize(raw, sort=False)
    return np.asarray(uniques), codes.astype(np.int32)


# --- value parsing -----------------------------------------------------------------------------


def parse_timestamps(col: pd.Series, src: _Source, name: str) -> np.ndarray:
    """``(n,)`` int64 seconds since the epoch from ints, floats, datetimes or date strings.

    Refused, naming the first bad row: missing, nested, non-finite and unparseable values,
    values before 1970 (negative) and values beyond int64."""
    _refuse_non_scalars(col, src, name, "timestamp")
    missing = col.isna().to_numpy()
    if missing.any():
        raise src.error("missing timestamp", row=int(np.flatnonzero(missing)[0]) + 1, column=name)
    dtype = col.dtype
    if pd.api.types.is_bool_dtype(dtype):
        raise src.error("timestamps are true/false values", row=1, column=name)
    if pd.api.types.is_unsigned_integer_dtype(dtype):
        too_big = col.to_numpy(dtype=np.uint64) > np.iinfo(np.int64).max
        _refuse_timestamp(too_big, _TOO_BIG, col, src, name)
        return col.to_numpy(dtype=np.int64)
    if pd.api.types.is_integer_dtype(dtype):
        values = col.to_numpy(dtype=np.int64)
        _refuse_timestamp(values < 0, _NEGATIVE, col, src, name)
        return values
    if pd.api.types.is_float_dtype(dtype):
        floats = col.to_numpy(dtype=np.float64)
        _check_float_timestamps(floats, np.ones(len(floats), dtype=bool), col, src, name)
        return np.floor(floats).astype(np.int64)
    if isinstance(dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(dtype):
        seconds = _datetime_seconds(pd.to_datetime(col, utc=True))
        _refuse_timestamp(seconds < 0, _NEGATIVE, col, src, name)
        return seconds
    return _parse_text_timestamps(col, src, name)


_NOT_FINITE = "is not a finite number"
_NEGATIVE = "is before 1970-01-01 (negative epoch seconds); timestamps must be 0 or later"
_TOO_BIG = "is out of range: beyond 9.2e18, the largest timestamp int64 holds"


def _check_float_timestamps(
    values: np.ndarray, where: np.ndarray, col: pd.Series, src: _Source, name: str
) -> None:
    """Refuse the first of ``values[where]`` that is non-finite, negative or beyond int64."""
    with np.errstate(invalid="ignore"):
        not_finite = where & ~np.isfinite(values)
        negative = where & (values < 0)
        too_big = where & (values >= _INT64_BOUND)
    bad = not_finite | negative | too_big
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        kinds = ((not_finite, _NOT_FINITE), (negative, _NEGATIVE), (too_big, _TOO_BIG))
        why = next(text for mask, text in kinds if mask[first])
        _refuse_timestamp(bad, why, col, src, name)


def _refuse_timestamp(bad: np.ndarray, why: str, col: pd.Series, src: _Source, name: str) -> None:
    """Raise naming the first row where ``bad`` holds, its value and ``why`` it is refused."""
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise src.error(f"timestamp {_show(col.iloc[first])} {why}", row=first + 1, column=name)


def _parse_text_timestamps(col: pd.Series, src: _Source, name: str) -> np.ndarray:
    """Numbers are epoch seconds; other text is parsed as dates (naive ones as UTC)."""
    numbers = pd.to_numeric(col, errors="coerce").to_numpy(dtype=np.float64)
    is_date = np.isnan(numbers)
    _check_float_timestamps(numbers, ~is_date, col, src, name)
    out = np.zeros(len(col), dtype=np.int64)
    out[~is_date] = np.floor(numbers[~is_date]).astype(np.int64)
    if not is_date.any():
        return out
    text = col[is_date].astype(str)
    # Fast path: pandas infers one format from the first value and applies it to all.
    parsed = pd.to_datetime(text, utc=True, errors="coerce")
    bad = parsed.isna().to_numpy()
    if bad.any():  # values in other formats: parse just those one by one
        retry = pd.to_datetime(text[bad], utc=True, errors="coerce", format="mixed")
        parsed = parsed.copy()
        parsed[bad] = retry
        bad = parsed.isna().to_numpy()
    if bad.any():
        first = int(np.flatnonzero(is_date)[np.flatnonzero(bad)[0]])
        raise src.error(
            f"cannot parse timestamp {_show(col.iloc[first])} (expected epoch seconds or a date "
            f"such as 2024-01-31 12:00:00)",
            row=first + 1,
            column=name,
        )
    dates = _datetime_seconds(parsed)
    before_1970 = np.zeros(len(col), dtype=bool)
    before_1970[is_date] = dates < 0
    _refuse_timestamp(before_1970, _NEGATIVE, col, src, name)
    out[is_date] = dates
    return out


def _datetime_seconds(parsed: pd.Series) -> np.ndarray:
    naive = parsed.dt.tz_convert(None)
    return naive.to_numpy().astype("datetime64[s]").astype(np.int64)


def parse_ratings(col: pd.Series, src: _Source, name: str) -> np.ndarray:
    """``(n,)`` float32 ratings; missing, non-numeric, non-finite values and values beyond
    float32 (which would become infinite) are refused."""
    _refuse_non_scalars(col, src, name, "rating")
    if pd.api.types.is_bool_dtype(col.dtype):
        return col.to_numpy(dtype=np.float32)
    numbers = pd.to_numeric(col, errors="coerce")
    bad = numbers.isna().to_numpy()
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        value = col.iloc[first]
        what = "missing rating" if pd.isna(value) else f"rating {_show(value)} is not a number"
        raise src.error(what, row=first + 1, column=name)
    values = numbers.to_numpy(dtype=np.float64)
    with np.errstate(invalid="ignore"):
        bad = ~np.isfinite(values) | (np.abs(values) > _FLOAT32_MAX)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        why = (
            "is not a finite number"
            if not np.isfinite(values[first])
            else "is out of range: beyond 3.4e38, the largest rating float32 holds"
        )
        raise src.error(f"rating {_show(col.iloc[first])} {why}", row=first + 1, column=name)
    return values.astype(np.float32)


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


def _os_reason(exc: OSError) -> str:
    return exc.strerror or _first_line(exc)
