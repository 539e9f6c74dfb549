"""Hostile data files, column mappings, splits and output paths, through the command line.

Each test is one distinct fault. It checks the one ``llmrec: error: …`` line (naming file, row
and column where there is one) or the documented behaviour, and that a failed ``llmrec run``
left nothing behind: no run folder under ``--out``, no row in the ``--store``.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from .conftest import CliResult, assert_one_line_error, run_cli_subprocess, strict_json

Cli = Callable[..., CliResult]

HEADER = "user_id,item_id,timestamp,rating\n"
#: six users with six interactions each: every split and protocol has something to evaluate
GOOD = "".join(
    f"u{u},{(u + i) % 9},{1_700_000_000 + 100 * u + i},{1 + (u + i) % 5}\n"
    for u in range(6)
    for i in range(6)
)
#: the data row a line appended to GOOD is (1-based, after the header)
BAD_ROW = 37


# --- helpers -------------------------------------------------------------------------------------
def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    return path


def run(cli: Cli, tmp_path: Path, dataset: Path | str, *extra: str) -> CliResult:
    """``llmrec run`` of the popularity baseline on ``dataset``, writing under ``tmp_path``."""
    return cli(
        "run", "--model", "popularity", "--dataset", str(dataset),
        "--out", str(tmp_path / "runs"), "--store", str(tmp_path / "store.sqlite"), *extra,
    )  # fmt: skip


def store_rows(store: Path) -> int:
    if not store.is_file():
        return 0
    with sqlite3.connect(store) as con:
        tables = con.execute("SELECT name FROM sqlite_master WHERE name = 'runs'").fetchall()
        return con.execute("SELECT COUNT(*) FROM runs").fetchone()[0] if tables else 0


def assert_nothing_kept(tmp_path: Path) -> None:
    """A failed run left no run folder (whole or partial) and no store row."""
    runs = tmp_path / "runs"
    left = sorted(p.name for p in runs.iterdir()) if runs.is_dir() else []
    assert left == [], f"run folders left behind: {left}"
    assert store_rows(tmp_path / "store.sqlite") == 0


def refused(cli: Cli, tmp_path: Path, dataset: Path | str, *fragments: str, extra=()) -> str:
    """The run of ``dataset`` fails with one line naming every fragment, keeping nothing."""
    line = assert_one_line_error(run(cli, tmp_path, dataset, *extra), *fragments)
    assert_nothing_kept(tmp_path)
    return line


def parquet(tmp_path: Path, name: str, columns: dict[str, object]) -> Path:
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    path = tmp_path / name
    pq.write_table(pa.table(columns), path)
    return path


# --- files that are not tables -------------------------------------------------------------------
def test_empty_file(cli: Cli, tmp_path: Path) -> None:
    path = write(tmp_path, "empty.csv", "")
    refused(cli, tmp_path, path, f"{path}: file is empty")


def test_header_only(cli: Cli, tmp_path: Path) -> None:
    path = write(tmp_path, "header.csv", HEADER)
    refused(cli, tmp_path, path, f"{path}: no interaction rows")


def test_binary_garbage(cli: Cli, tmp_path: Path) -> None:
    noise = bytes((i * 167 + 13) % 256 for i in range(4096))  # fixed, not valid UTF-8
    path = write(tmp_path, "noise.csv", noise)
    refused(cli, tmp_path, path, f"{path}: line ", "is not utf-8 text")


def test_latin1_file_names_its_first_non_utf8_line(cli: Cli, tmp_path: Path) -> None:
    path = write(tmp_path, "latin.csv", (HEADER + GOOD + "Zoë,1,1700009999,3\n").encode("latin-1"))
    refused(cli, tmp_path, path, f"{path}: line {BAD_ROW + 1} is not utf-8 text (byte 0xeb)")


def test_a_directory_instead_of_a_file(cli: Cli, tmp_path: Path) -> None:
    folder = tmp_path / "events.csv"
    folder.mkdir()
    refused(cli, tmp_path, folder, f"{folder}: is a directory")


def test_a_fifo_instead_of_a_file_does_not_hang(tmp_path: Path) -> None:
    fifo = tmp_path / "events.csv"
    os.mkfifo(fifo)  # reading it would block until a writer came
    args = ["run", "--model", "popularity", "--dataset", str(fifo), "--out", str(tmp_path / "runs"),
            "--store", str(tmp_path / "store.sqlite")]  # fmt: skip
    assert_one_line_error(run_cli_subprocess(args, timeout=120), f"{fifo}: is not a regular file")
    assert_nothing_kept(tmp_path)


def test_parquet_suffix_on_a_csv_file(cli: Cli, tmp_path: Path) -> None:
    pytest.importorskip("pyarrow")
    path = write(tmp_path, "events.parquet", HEADER + GOOD)
    refused(cli, tmp_path, path, f"{path}: not a readable Parquet file")


def test_truncated_parquet(cli: Cli, tmp_path: Path) -> None:
    path = parquet(tmp_path, "cut.parquet", {"user_id": list(range(50)), "item_id": [1] * 50})
    path.write_bytes(path.read_bytes()[:-40])
    refused(cli, tmp_path, path, f"{path}: not a readable Parquet file")


# --- malformed tables ----------------------------------------------------------------------------
def test_ragged_row(cli: Cli, tmp_path: Path) -> None:
    path = write(tmp_path, "ragged.csv", HEADER + GOOD + "u1,2,1700000050,3,extra,fields\n")
    refused(cli, tmp_path, path, f"{path}: malformed CSV", f"line {BAD_ROW + 1}")


def test_missing_user_column(cli: Cli, tmp_path: Path) -> None:
    path = write(tmp_path, "nouser.csv", "who,item_id\na,1\n")
    refused(cli, tmp_path, path, f"{path}, column 'user_id': no user column")


def test_header_naming_the_user_column_twice(cli: Cli, tmp_path: Path) -> None:
    path = write(tmp_path, "twice.csv", "user_id,item_id,user_id\na,1,b\nb,2,a\n")
    refused(cli, tmp_path, path, f"{path}, column 'user_id': the header names this user column")


def test_missing_user_id(cli: Cli, tmp_path: Path) -> None:
    path = write(tmp_path, "noid.csv", HEADER + GOOD + ",3,1700000050,4\n")
    refused(cli, tmp_path, path, f"{path}, row {BAD_ROW}, column 'user_id': missing id")


def test_byte_order_mark_is_read_as_utf8(cli: Cli, tmp_path: Path) -> None:
    """Not a fault: a UTF-8 BOM (as Excel writes) must not rename the first column."""
    path = write(tmp_path, "bom.csv", ("\ufeff" + HEADER + GOOD).encode("utf-8"))
    result = run(cli, tmp_path, path, "--json")
    assert result.code == 0, result.err
    record = strict_json(result.out)
    assert isinstance(record, dict) and record["metrics"]["n_users"] == 6.0


# --- impossible values ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("cell", "why"),
    [
        ("", "missing timestamp"),
        ("nan", "missing timestamp"),
        ("inf", "timestamp inf is not a finite number"),
        ("1e20", "timestamp 1e+20 is out of range"),  # was int64-min with a numpy warning
        ("18446744073709551615", "timestamp 18446744073709551615 is out of range"),  # was -1
        ("-1", "timestamp -1 is before 1970-01-01"),
        ("1969-07-20", "timestamp '1969-07-20' is before 1970-01-01"),
    ],
    ids=["empty", "nan", "inf", "1e20", "uint64-max", "negative", "date-before-1970"],
)
def test_impossible_timestamp(cli: Cli, tmp_path: Path, cell: str, why: str) -> None:
    path = write(tmp_path, "ts.csv", HEADER + GOOD + f"u1,2,{cell},3\n")
    refused(cli, tmp_path, path, f"{path}, row {BAD_ROW}, column 'timestamp': {why}")


@pytest.mark.parametrize(
    ("cell", "why"),
    [
        ("inf", "rating inf is not a finite number"),
        ("-inf", "rating -inf is not a finite number"),
        ("1e300", "rating 1e+300 is out of range"),  # became inf in float32
        ("five", "rating 'five' is not a number"),
    ],
    ids=["inf", "-inf", "1e300", "text"],
)
def test_impossible_rating(cli: Cli, tmp_path: Path, cell: str, why: str) -> None:
    path = write(
        tmp_path, "ratings.tsv", (HEADER + GOOD + f"u1,2,1700000050,{cell}\n").replace(",", "\t")
    )
    refused(cli, tmp_path, path, f"{path}, row {BAD_ROW}, column 'rating': {why}")


def test_parquet_timestamp_beyond_int64(cli: Cli, tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    stamps = pa.array([1, 2, 2**64 - 1], pa.uint64())
    path = parquet(
        tmp_path, "u64.parquet", {"user_id": [1, 1, 1], "item_id": [1, 2, 3], "timestamp": stamps}
    )
    refused(
        cli, tmp_path, path, f"{path}, row 3, column 'timestamp': timestamp 18446744073709551615"
    )


def test_parquet_list_ids(cli: Cli, tmp_path: Path) -> None:
    path = parquet(tmp_path, "lists.parquet", {"user_id": [[1, 2], [3]], "item_id": [1, 2]})
    refused(cli, tmp_path, path, f"{path}, row 1, column 'user_id': holds a list ([1, 2])")


def test_parquet_struct_ids(cli: Cli, tmp_path: Path) -> None:
    path = parquet(
        tmp_path, "structs.parquet", {"user_id": [1, 2], "item_id": [{"sku": 1}, {"sku": 2}]}
    )
    refused(cli, tmp_path, path, f"{path}, row 1, column 'item_id': holds a mapping")


def test_parquet_infinite_float_id(cli: Cli, tmp_path: Path) -> None:
    path = parquet(tmp_path, "inf.parquet", {"user_id": [1, 2], "item_id": [1.0, float("inf")]})
    refused(cli, tmp_path, path, f"{path}, row 2, column 'item_id': id inf is not a finite number")


# --- nothing to evaluate -------------------------------------------------------------------------
@pytest.mark.parametrize("protocol", ["full", "candidates"])
def test_one_interaction_per_user(cli: Cli, tmp_path: Path, protocol: str) -> None:
    """Was ``ValueError: need at least one array to concatenate``."""
    path = write(tmp_path, "one.csv", HEADER + "".join(f"u{u},{u},{u},3\n" for u in range(30)))
    refused(
        cli, tmp_path, path, "leave-one-out split: no user has the 3 interactions it needs",
        "min_history=3", "has is 1", extra=("--set", f"eval.protocol={protocol}"),
    )  # fmt: skip


def test_synthetic_spec_with_no_evaluable_user(cli: Cli, tmp_path: Path) -> None:
    refused(cli, tmp_path, "synthetic:10x5x100000", "leave-one-out split: no user has the 3")


@pytest.mark.parametrize("kind", ["temporal", "random"])
def test_split_fractions_too_small_for_the_data(cli: Cli, tmp_path: Path, kind: str) -> None:
    path = write(tmp_path, "few.csv", HEADER + GOOD)
    refused(
        cli, tmp_path, path, f"{kind} split: no interaction falls into test (36 interactions",
        extra=("--set", f"split.kind={kind}", "--set", "split.test_frac=0.001"),
    )  # fmt: skip


@pytest.mark.parametrize("protocol", ["full", "candidates"])
def test_no_validation_part_still_evaluates_the_test_part(
    cli: Cli, tmp_path: Path, protocol: str
) -> None:
    """Not a fault: ``valid_frac=0`` leaves validation empty, which once crashed the full
    ranking's evaluation (``need at least one array to concatenate``)."""
    path = write(tmp_path, "events.csv", HEADER + GOOD)
    result = run(cli, tmp_path, path, "--json", "--set", "split.kind=temporal",
                 "--set", "split.valid_frac=0", "--set", f"eval.protocol={protocol}",
                 "--set", "eval.n_negatives=2")  # fmt: skip
    assert result.code == 0, result.err
    record = strict_json(result.out)
    assert isinstance(record, dict) and record["metrics"]["n_users"] > 0
    assert store_rows(tmp_path / "store.sqlite") == 1


def test_every_user_has_seen_every_item(cli: Cli, tmp_path: Path) -> None:
    rows = "".join(f"u{u},{i},{100 * u + i},3\n" for u in range(8) for i in range(5))
    path = write(tmp_path, "same.csv", HEADER + rows)
    refused(cli, tmp_path, path, "has only 0 unseen items left to sample 3 negatives", extra=(
        "--set", "eval.protocol=candidates", "--set", "eval.n_negatives=3",
        "--set", "split.kind=temporal"))  # fmt: skip


# --- column mappings (llmrec data info takes the column flags) -----------------------------------
@pytest.mark.parametrize(
    ("flags", "column", "roles"),
    [
        (("--time-col", "rating"), "rating", "timestamp and rating"),
        (("--user-col", "item_id"), "item_id", "user and item"),
        (("--rating-col", "timestamp"), "timestamp", "timestamp and rating"),
    ],
    ids=["time-is-rating", "user-is-item", "rating-is-time"],
)
def test_one_column_mapped_to_two_roles(cli: Cli, tmp_path: Path, flags, column, roles) -> None:
    path = write(tmp_path, "events.csv", HEADER + GOOD)
    result = cli("data", "info", str(path), *flags)
    assert_one_line_error(result, f"{path}, column '{column}': mapped to both {roles}")


def test_item_table_that_is_a_directory(cli: Cli, tmp_path: Path) -> None:
    path = write(tmp_path, "events.csv", HEADER + GOOD)
    (tmp_path / "items.csv").mkdir()
    result = cli("data", "info", str(path), "--items", str(tmp_path / "items.csv"))
    assert_one_line_error(result, f"{tmp_path / 'items.csv'}: is a directory")


# --- output paths of the data commands -----------------------------------------------------------
def synth(cli: Cli, out: Path) -> CliResult:
    return cli("data", "synth", "--users", "20", "--items", "10", "--interactions", "80",
               "--out", str(out))  # fmt: skip


def test_synth_out_names_a_directory(cli: Cli, tmp_path: Path) -> None:
    pytest.importorskip("pyarrow")
    folder = tmp_path / "data.parquet"
    folder.mkdir()
    assert_one_line_error(synth(cli, folder), f"{folder}: is a directory")
    assert list(tmp_path.iterdir()) == [folder] and list(folder.iterdir()) == []


def test_synth_out_below_a_file(cli: Cli, tmp_path: Path) -> None:
    pytest.importorskip("pyarrow")
    blocker = write(tmp_path, "notes.txt", "")
    assert_one_line_error(synth(cli, blocker / "s.parquet"), f"{blocker} is a file, not a folder")
    assert list(tmp_path.iterdir()) == [blocker]


def test_fetch_into_a_data_dir_below_a_file(cli: Cli, tmp_path: Path) -> None:
    blocker = write(tmp_path, "notes.txt", "")
    result = cli("data", "fetch", "ml-100k", "--data-dir", str(blocker / "cache"))
    assert_one_line_error(result, "cannot create the data folder")
    assert list(tmp_path.iterdir()) == [blocker]
