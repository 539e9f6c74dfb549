"""Reading data files for the loaders: checked before they are opened (a directory, a FIFO, an
unreadable or non-UTF-8 file is a one-line :class:`~llmrec.errors.DataError`), CSV/TSV through
pandas, Parquet through pyarrow."""

from __future__ import annotations

import codecs
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from llmrec.data._values import _Source
from llmrec.errors import DataError, MissingExtraError


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


def _os_reason(exc: OSError) -> str:
    return exc.strerror or _first_line(exc)
