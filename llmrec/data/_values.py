"""Column values checked as they enter a :class:`~llmrec.data.dataset.Dataset`: ids, timestamps
and ratings are parsed vectorised and refused, never coerced, when impossible (the first bad row
is named by file, row and column)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from llmrec.errors import DataError

#: floats at or beyond this magnitude do not fit in int64
_INT64_BOUND = 2.0**63
#: the largest magnitude a float32 rating holds
_FLOAT32_MAX = float(np.finfo(np.float32).max)


@dataclass(frozen=True)
class _Source:
    """Where a table came from, for error messages: a file path or a frame label."""

    label: str

    def error(self, message: str, row: int | None = None, column: str | None = None) -> DataError:
        return DataError(message, file=self.label, row=row, column=column)


def _show(value: Any) -> str:
    """``repr`` of a cell value without numpy's ``np.int64(...)`` wrapping."""
    return repr(value.item() if isinstance(value, np.generic) else value)


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
