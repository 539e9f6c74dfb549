"""``llmrec data``: info on files and names, synth to Parquet, fetch, one-line errors."""

from __future__ import annotations

import json

import pytest

from llmrec.cli import main

from .conftest import write_recbole


def test_info_on_a_csv_with_column_flags(write, capsys):
    path = write("log.csv", "who,what,when\na,1,1700000000\na,2,1700000100\nb,1,1700000200\n")
    code = main(["data", "info", str(path), "--user-col", "who", "--item-col", "what",
                 "--time-col", "when", "--json"])  # fmt: skip
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["users"], summary["items"], summary["interactions"]) == (2, 2, 3)
    assert summary["density"] == pytest.approx(0.75)
    assert summary["time_range"]["min_utc"] == "2023-11-14T22:13:20+00:00"
    assert summary["interactions_per_user"]["p50"] == pytest.approx(1.5)


def test_info_table_on_synthetic(capsys):
    assert main(["data", "info", "synthetic:50x40x400"]) == 0
    out = capsys.readouterr().out
    assert "interactions" in out and "400" in out and "title, genres, year" in out


def test_info_error_is_one_line(write, capsys):
    path = write("bad.csv", "user_id,item_id,timestamp\na,1,later\n")
    assert main(["data", "info", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "row 1, column 'timestamp'" in err


def test_synth_writes_parquet_that_info_reads(tmp_path, capsys):
    pytest.importorskip("pyarrow")
    out = tmp_path / "s.parquet"
    assert main(["data", "synth", "--users", "30", "--items", "20", "--interactions", "300",
                 "--out", str(out)]) == 0  # fmt: skip
    assert out.is_file() and (tmp_path / "s.items.parquet").is_file()
    capsys.readouterr()
    assert main(["data", "info", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["interactions"] == 300 and summary["item_text_fields"] == [
        "title",
        "genres",
        "year",
    ]


def test_fetch_reports_cache_and_counts(tmp_path, tiny_counts, capsys):
    write_recbole(tmp_path / "ml-100k")
    assert main(["data", "fetch", "ml-100k", "--data-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert str(tmp_path / "ml-100k") in out and "6 interactions, 4 items, 3 users" in out


@pytest.mark.parametrize(
    ("out", "message"),
    [
        ("folder.parquet", "folder.parquet: is a directory; --out names the .parquet file"),
        ("plain/s.parquet", "s.parquet: cannot write it: {tmp}/plain is a file, not a folder"),
        ("s.csv", "--out {tmp}/s.csv: name a .parquet file"),
    ],
)
def test_synth_refuses_an_out_it_cannot_write_before_generating(out, message, tmp_path, capsys):
    (tmp_path / "folder.parquet").mkdir()
    (tmp_path / "plain").write_text("")
    code = main(["data", "synth", "--users", "5", "--items", "5", "--interactions", "10",
                 "--out", str(tmp_path / out)])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0 and "generating" not in err
    assert err.startswith("llmrec: error: ") and message.format(tmp=tmp_path) in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder.parquet", "plain"]


def test_info_reports_ratings_near_the_float32_limit_as_finite_json(write, capsys):
    path = write("big.csv", "user_id,item_id,rating\na,1,3e38\nb,1,3e38\n")
    assert main(["data", "info", str(path), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out, parse_constant=lambda c: pytest.fail(c))
    assert summary["ratings"]["mean"] == pytest.approx(3e38, rel=1e-6)
