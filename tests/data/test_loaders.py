"""Loaders: frames, CSV and Parquet with a column mapping; each bad-data case is one clear error."""

from __future__ import annotations

import os
import sys

import numpy as np
import pandas as pd
import pytest

from llmrec.data import ColumnMap, from_frame, load_dataset, read_csv, read_parquet, read_table
from llmrec.data.loaders import to_frames, write_parquet
from llmrec.errors import ConfigError, DataError, MissingExtraError

EVENTS = "user_id,item_id,timestamp,rating\nb,20,300,4\na,10,100,5\nb,10,200,3\nc,30,50,1\n"


def test_csv_indices_follow_sorted_ids_and_keep_values(write):
    data = read_csv(write("events.csv", EVENTS))
    assert data.name == "events"
    assert data.user_ids.tolist() == ["a", "b", "c"]
    assert data.item_ids.tolist() == [10, 20, 30]
    assert data.users.tolist() == [1, 0, 1, 2]
    assert data.items.tolist() == [1, 0, 0, 2]
    assert data.timestamps.tolist() == [300, 100, 200, 50]
    assert data.ratings is not None and data.ratings.tolist() == [4.0, 5.0, 3.0, 1.0]


def test_column_mapping_and_tsv(write):
    path = write("log.tsv", "who\twhat\twhen\tstars\nu1\ti1\t5\t2\nu2\ti1\t6\t4\n")
    data = read_csv(
        path, columns={"user": "who", "item": "what", "timestamp": "when", "rating": "stars"}
    )
    assert data.user_ids.tolist() == ["u1", "u2"] and data.timestamps.tolist() == [5, 6]
    assert data.ratings is not None and data.ratings.tolist() == [2.0, 4.0]


def test_common_column_names_are_found_without_mapping(write):
    data = read_csv(write("ml.csv", "userId,movieId,rating,timestamp\n1,7,4.5,10\n"))
    assert data.item_ids.tolist() == [7] and data.ratings is not None


def test_without_timestamps_row_order_is_time(write):
    data = read_csv(write("noclock.csv", "user_id,item_id\nx,1\nx,2\ny,1\n"))
    assert data.timestamps.tolist() == [0, 1, 2]
    assert data.ratings is None


def test_timestamp_forms_are_parsed_to_epoch_seconds(write):
    text = "user_id,item_id,timestamp\na,1,2024-01-01\na,2,2024-01-01 00:00:10\na,3,1700000000\n"
    data = read_csv(write("dates.csv", text))
    assert data.timestamps.tolist() == [1704067200, 1704067210, 1700000000]
    frame = pd.DataFrame(
        {
            "user_id": [1, 1],
            "item_id": [1, 2],
            "timestamp": pd.to_datetime(
                ["2024-01-01T01:00:00+01:00", "2024-01-01T00:00:05Z"], utc=True
            ),
        }
    )
    assert from_frame(frame).timestamps.tolist() == [1704067200, 1704067205]
    floats = pd.DataFrame({"user_id": [1], "item_id": [1], "timestamp": [12.9]})
    assert from_frame(floats).timestamps.tolist() == [12]


def test_item_and_user_tables_define_the_spaces(write):
    items = write(
        "items.csv",
        "item_id,title,genres\n30,Gamma,Drama\n10,Alpha,Comedy\n20,Beta,\n40,Delta,War\n10,Alpha,Comedy\n",
    )
    users = write("users.csv", "user_id,age\nc,30\nb,20\na,10\n")
    data = read_csv(write("events.csv", EVENTS), items=items, users=users)
    assert data.item_ids.tolist() == [10, 20, 30, 40]  # 40 has no interactions but is an item
    assert data.item_text["title"].tolist() == ["Alpha", "Beta", "Gamma", "Delta"]
    assert data.item_texts(fields=["title", "genres"])[1] == "Beta"
    assert data.user_attrs["age"].tolist() == [10, 20, 30]
    assert data.items.tolist() == [1, 0, 0, 2]


def test_item_text_fields_can_be_chosen(write):
    items = write("items.csv", "item_id,title,secret\n10,A,x\n20,B,y\n30,C,z\n")
    data = read_csv(
        write("events.csv", EVENTS), items=items, columns=ColumnMap(item_text=["title"])
    )
    assert list(data.item_text.columns) == ["title"]


def test_text_ids_in_the_item_table_match_numeric_interaction_ids(write):
    frame = pd.DataFrame({"user_id": [1, 2], "item_id": [7, 8]})
    items = pd.DataFrame({"item_id": ["7", "8"], "title": ["seven", "eight"]})
    data = from_frame(frame, items=items)
    assert data.item_text["title"].tolist() == ["seven", "eight"]


def test_polars_frames_are_accepted():
    pl = pytest.importorskip("polars")
    frame = pl.DataFrame({"user_id": [3, 1, 3], "item_id": ["b", "a", "a"], "timestamp": [1, 2, 3]})
    data = from_frame(frame, items=pl.DataFrame({"item_id": ["a", "b"], "title": ["A", "B"]}))
    assert data.user_ids.tolist() == [1, 3] and data.users.tolist() == [1, 0, 1]
    assert data.item_text["title"].tolist() == ["A", "B"]


def test_parquet_round_trip_with_side_tables(tmp_path):
    pytest.importorskip("pyarrow")
    items = pd.DataFrame({"item_id": [10, 20, 30], "title": ["A", "B", "C"]})
    original = from_frame(pd.read_csv(pd.io.common.StringIO(EVENTS)), items=items, name="ev")
    written = write_parquet(original, tmp_path / "ev.parquet")
    assert [p.name for p in written] == ["ev.parquet", "ev.items.parquet"]
    again = load_dataset(tmp_path / "ev.parquet")  # finds ev.items.parquet beside it
    for attr in ("user_ids", "item_ids", "users", "items", "timestamps", "ratings"):
        np.testing.assert_array_equal(getattr(again, attr), getattr(original, attr))
    pd.testing.assert_frame_equal(again.item_text, original.item_text)
    inter, _, _ = to_frames(again)
    assert inter.columns.tolist() == ["user_id", "item_id", "timestamp", "rating"]


def test_parquet_reads_only_the_needed_columns(tmp_path):
    pytest.importorskip("pyarrow")
    frame = pd.DataFrame({"user_id": [1, 2], "item_id": [1, 1], "blob": ["x" * 10, "y"]})
    frame.to_parquet(tmp_path / "wide.parquet")
    data = read_parquet(tmp_path / "wide.parquet")
    assert data.n_interactions == 2


def test_missing_pyarrow_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)  # import now fails
    with pytest.raises(MissingExtraError, match=r"llmrec\[parquet\]"):
        read_parquet(tmp_path / "x.parquet")


# --- bad data: each error is a DataError naming file, row and column ----------------------------


def _error(excinfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message
    return message


def test_missing_column_lists_the_available_ones(write):
    path = write("ev.csv", "u,item_id\n1,2\n")
    with pytest.raises(DataError) as exc:
        read_csv(path, columns={"user": "user_id"})
    message = _error(exc)
    assert str(path) in message and "'user_id'" in message and "['u', 'item_id']" in message


def test_explicit_timestamp_column_must_exist(write):
    with pytest.raises(DataError, match=r"column 'when': column not found"):
        read_csv(write("ev.csv", "user_id,item_id\n1,2\n"), columns={"timestamp": "when"})


def test_unparseable_timestamp_names_first_bad_row_and_value(write):
    text = "user_id,item_id,timestamp\na,1,2024-01-01\nb,2,2024-01-02\nc,3,soon\nd,4,never\n"
    path = write("ev.csv", text)
    with pytest.raises(DataError) as exc:
        read_csv(path)
    message = _error(exc)
    assert message.startswith(f"{path}, row 3, column 'timestamp':") and "'soon'" in message


def test_missing_timestamp_names_the_row(write):
    with pytest.raises(DataError, match=r"row 2, column 'timestamp': missing timestamp"):
        read_csv(write("ev.csv", "user_id,item_id,timestamp\na,1,5\nb,2,\n"))


def test_empty_file_and_header_only(write):
    empty = write("empty.csv", "")
    with pytest.raises(DataError, match=r"empty\.csv: file is empty"):
        read_csv(empty)
    header = write("header.csv", "user_id,item_id\n")
    with pytest.raises(DataError, match=r"header\.csv: no interaction rows"):
        read_csv(header)


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        read_csv(tmp_path / "nope.csv")


def test_duplicate_item_ids_with_conflicting_text(write):
    items = write("items.csv", "item_id,title,genres\n10,A,x\n20,B,y\n10,A,x\n30,C,z\n20,B,other\n")
    with pytest.raises(DataError) as exc:
        read_csv(write("ev.csv", EVENTS), items=items)
    message = _error(exc)
    assert message.startswith(f"{items}, row 5, column 'genres':")
    assert "duplicate id 20" in message and "row 2" in message


def test_interaction_naming_an_unknown_item(write):
    items = write("items.csv", "item_id,title\n10,A\n20,B\n")
    events = write("ev.csv", EVENTS)
    with pytest.raises(DataError) as exc:
        read_csv(events, items=items)
    message = _error(exc)
    assert message.startswith(f"{events}, row 4, column 'item_id': item id 30 is not in")
    assert str(items) in message


def test_non_numeric_rating(write):
    path = write("ev.csv", "user_id,item_id,rating\na,1,4\nb,1,five\n")
    with pytest.raises(DataError) as exc:
        read_csv(path)
    assert _error(exc) == f"{path}, row 2, column 'rating': rating 'five' is not a number"


def test_missing_id(write):
    with pytest.raises(DataError, match=r"row 2, column 'user_id': missing id"):
        read_csv(write("ev.csv", "user_id,item_id\na,1\n,2\n"))


def test_malformed_csv_row(write):
    with pytest.raises(DataError, match=r"ev\.csv: malformed CSV"):
        read_csv(write("ev.csv", "user_id,item_id\na,1\nb,2,3,4\n"))


def test_frame_errors_name_the_frame_and_row():
    frame = pd.DataFrame({"user_id": [1, 2], "item_id": [1, 2], "timestamp": ["2024-01-01", "x"]})
    with pytest.raises(DataError, match=r"^interactions frame, row 2, column 'timestamp'"):
        from_frame(frame)


def test_bad_column_map_is_a_config_error():
    with pytest.raises(ConfigError, match="invalid column mapping"):
        from_frame(pd.DataFrame({"user_id": [1], "item_id": [1]}), columns={"usr": "x"})


def test_load_dataset_dispatch(tmp_path):
    data = load_dataset("synthetic:30x20x200", seed=3)
    assert (data.n_users, data.n_items, data.n_interactions) == (30, 20, 200)
    with pytest.raises(ConfigError, match="unknown dataset"):
        load_dataset(tmp_path / "missing.csv")
    with pytest.raises(ConfigError, match="USERSxITEMSxINTERACTIONS"):
        load_dataset("synthetic:10x20")


def test_synthetic_spec_accepts_k_and_m_suffixes():
    from llmrec.data import parse_synthetic_spec

    assert parse_synthetic_spec("synthetic:200kx1Mx10M") == (200_000, 1_000_000, 10_000_000)
    assert parse_synthetic_spec("synthetic:1.5kx10x20") == (1500, 10, 20)


def test_read_table_picks_format_by_extension(write):
    data = read_table(write("ev.csv", EVENTS))
    assert data.n_interactions == 4


# --- impossible values: refused in every format, naming file, row and column --------------------

GOOD_ROWS = {
    "user_id": [1, 1, 2],
    "item_id": [10, 20, 10],
    "timestamp": [5, 6, 7],
    "rating": [1, 2, 3],
}


def _with_bad_value(column: str, value: object) -> pd.DataFrame:
    """Three good rows, then ``value`` in ``column`` at data row 4."""
    frame = pd.DataFrame(GOOD_ROWS)
    extra = pd.DataFrame({"user_id": [2], "item_id": [20], "timestamp": [8], "rating": [4]})
    extra[column] = extra[column].astype(object)
    extra.at[0, column] = value
    return pd.concat([frame.astype(object), extra], ignore_index=True)


def _load(frame: pd.DataFrame, fmt: str, tmp_path) -> tuple[str, object]:
    """Write ``frame`` as ``fmt`` (csv, tsv, parquet) or pass it as a polars frame; load it."""
    if fmt == "polars":
        pl = pytest.importorskip("polars")
        return "interactions frame", lambda: from_frame(pl.from_pandas(frame.infer_objects()))
    path = tmp_path / f"events.{fmt}"
    if fmt == "parquet":
        pytest.importorskip("pyarrow")
        frame.infer_objects().to_parquet(path)
    else:
        frame.to_csv(path, sep="\t" if fmt == "tsv" else ",", index=False)
    return str(path), lambda: load_dataset(path)


FORMATS = ["csv", "tsv", "parquet", "polars"]


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize(
    ("value", "why"),
    [
        (1e20, "out of range"),  # once became int64-min with only a numpy warning
        (2**64 - 1, "out of range"),  # uint64: wrapped around to -1
        (-5, "before 1970"),
        (float("inf"), "not a finite number"),
        (-float("inf"), "not a finite number"),
    ],
)
def test_impossible_timestamps_are_refused_in_every_format(fmt, value, why, tmp_path):
    label, load = _load(_with_bad_value("timestamp", value), fmt, tmp_path)
    with pytest.raises(DataError) as exc:
        load()
    message = _error(exc)
    assert message.startswith(f"{label}, row 4, column 'timestamp': timestamp ") and why in message


def test_dates_before_1970_are_refused_like_negative_seconds(write):
    path = write("ev.csv", "user_id,item_id,timestamp\na,1,2024-01-01\nb,1,1969-12-31\n")
    with pytest.raises(DataError, match=r"row 2, column 'timestamp': timestamp '1969-12-31' is be"):
        read_csv(path)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize(
    ("value", "why"),
    [
        (float("inf"), "not a finite number"),
        (-float("inf"), "not a finite number"),
        (1e300, "out of range"),  # became inf in float32
        ("1e39", "out of range"),
    ],
)
def test_impossible_ratings_are_refused_in_every_format(fmt, value, why, tmp_path):
    if fmt in ("parquet", "polars") and isinstance(value, str):
        value = float(value)
    label, load = _load(_with_bad_value("rating", value), fmt, tmp_path)
    with pytest.raises(DataError) as exc:
        load()
    message = _error(exc)
    assert message.startswith(f"{label}, row 4, column 'rating': rating ") and why in message


def test_large_but_representable_values_still_load(write):
    text = "user_id,item_id,timestamp,rating\na,1,0,-1e30\na,2,9000000000000000000,3e38\n"
    data = read_csv(write("ev.csv", text))
    assert data.timestamps.tolist() == [0, 9_000_000_000_000_000_000]
    assert data.ratings is not None and np.isfinite(data.ratings).all()


def test_non_finite_float_ids_are_refused(tmp_path):
    frame = pd.DataFrame({"user_id": [1.0, 2.0, float("inf")], "item_id": [1, 2, 3]})
    with pytest.raises(DataError, match=r"row 3, column 'user_id': id inf is not a finite number"):
        from_frame(frame)


def test_huge_integral_float_ids_stay_distinct():
    frame = pd.DataFrame({"user_id": [1e20, 2e20], "item_id": [1, 2]})
    assert from_frame(frame).n_users == 2  # int64 conversion once made both int64-min


@pytest.mark.parametrize(
    ("column", "values", "kind"),
    [
        ("user_id", [[1, 2], [3]], "a list"),
        ("item_id", [{"a": 1}, {"a": 2}], "a mapping"),
        ("timestamp", [[1], [2]], "a list"),
        ("rating", [[4.0], [5.0]], "a list"),
    ],
)
def test_nested_parquet_columns_are_refused(column, values, kind, tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    table = {"user_id": [1, 2], "item_id": [1, 2], "timestamp": [1, 2], "rating": [4.0, 5.0]}
    table[column] = values
    path = tmp_path / "nested.parquet"
    pq.write_table(pa.table(table), path)
    with pytest.raises(DataError) as exc:
        read_parquet(path)
    message = _error(exc)
    assert message.startswith(f"{path}, row 1, column '{column}': holds {kind}")


def test_list_ids_in_a_polars_frame_are_refused():
    pl = pytest.importorskip("polars")
    frame = pl.DataFrame({"user_id": [[1], [2, 3]], "item_id": [1, 2]})
    with pytest.raises(DataError, match=r"^interactions frame, row 1, column 'user_id': holds a"):
        from_frame(frame)


# --- one role per column, one column per role ----------------------------------------------------


@pytest.mark.parametrize(
    ("columns", "message"),
    [
        ({"timestamp": "rating"}, "column 'rating': mapped to both timestamp and rating"),
        ({"item": "user_id"}, "column 'user_id': mapped to both user and item"),
        ({"rating": "timestamp"}, "column 'timestamp': mapped to both timestamp and rating"),
    ],
)
def test_a_column_mapped_to_two_roles_is_refused(columns, message, write):
    path = write("ev.csv", EVENTS)
    with pytest.raises(DataError) as exc:
        read_csv(path, columns=columns)
    assert _error(exc).startswith(f"{path}, {message}")


def test_a_header_naming_a_role_column_twice_is_refused(write):
    path = write("ev.csv", "user_id,item_id,user_id\na,1,b\n")
    with pytest.raises(DataError, match=r"column 'user_id': the header names this user column"):
        read_csv(path)
    # a repeated column no role reads is harmless
    assert read_csv(write("ok.csv", "user_id,item_id,note,note\na,1,x,y\n")).n_interactions == 1


def test_a_frame_with_two_columns_of_one_name_is_refused():
    frame = pd.DataFrame([[1, 2, 3]], columns=["user_id", "item_id", "item_id"])
    with pytest.raises(DataError, match=r"column 'item_id': the header names this item column"):
        from_frame(frame)


# --- files that cannot be read -------------------------------------------------------------------


def test_a_directory_or_fifo_instead_of_a_file_is_one_error(write, tmp_path):
    events = write("ev.csv", EVENTS)
    folder = tmp_path / "items.csv"
    folder.mkdir()
    with pytest.raises(DataError, match=r"items\.csv: is a directory, not a data file"):
        read_csv(events, items=folder)
    fifo = tmp_path / "users.csv"
    os.mkfifo(fifo)  # opening it would block until a writer came
    with pytest.raises(DataError, match=r"users\.csv: is not a regular file"):
        read_csv(events, users=fifo)
    with pytest.raises(DataError, match=r"items\.csv: is a directory"):
        load_dataset(folder)


def test_a_file_that_is_not_utf8_names_its_first_bad_line(tmp_path):
    path = tmp_path / "ev.csv"
    path.write_bytes(b"user_id,item_id\na,1\n\xe9t\xe9,2\n")
    with pytest.raises(DataError) as exc:
        read_csv(path)
    assert _error(exc).startswith(f"{path}: line 3 is not utf-8 text (byte 0xe9)")
    assert read_csv(path, encoding="latin-1").user_ids.tolist() == ["a", "été"]


def test_a_utf8_byte_order_mark_is_not_part_of_the_first_column_name(tmp_path):
    path = tmp_path / "ev.csv"
    path.write_bytes(("\ufeff" + EVENTS).encode("utf-8"))
    assert read_csv(path).n_users == 3


def test_write_parquet_refuses_a_directory_and_leaves_nothing(tmp_path):
    pytest.importorskip("pyarrow")
    data = from_frame(pd.read_csv(pd.io.common.StringIO(EVENTS)))
    target = tmp_path / "out.parquet"
    target.mkdir()
    with pytest.raises(DataError, match=r"out\.parquet: is a directory"):
        write_parquet(data, target)
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(DataError, match="cannot create the folder"):
        write_parquet(data, blocker / "x.parquet")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "out.parquet"]
    assert list(target.iterdir()) == []


def test_a_file_the_system_refuses_to_read_is_one_error(write, monkeypatch):
    """Tests run as root, where chmod 000 still reads: the refusal is simulated."""
    path = write("ev.csv", EVENTS)

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(pd, "read_csv", refuse)
    with pytest.raises(DataError) as exc:
        read_csv(path)
    assert _error(exc) == f"{path}: cannot read file: Permission denied"
