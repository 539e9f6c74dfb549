"""Tiny files for the data tests: interaction tables and fake MovieLens in both layouts."""

from __future__ import annotations

from pathlib import Path

import pytest

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


@pytest.fixture
def tiny_counts(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Make the fetcher's count check expect the fake MovieLens files above."""
    counts = {"interactions": len(ML_RATINGS), "items": len(ML_ITEMS), "users": len(ML_USERS)}
    monkeypatch.setattr("llmrec.data.movielens.EXPECTED_COUNTS", counts)
    return counts


@pytest.fixture
def write(tmp_path: Path):
    """write("name.csv", "text") -> path of a file in tmp_path."""

    def _write(name: str, text: str) -> Path:
        path = tmp_path / name
        path.write_text(text)
        return path

    return _write
