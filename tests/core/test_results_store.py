"""Run records land in the run folder and in the store; queries filter and order them."""

from llmrec.results import ResultsStore, RunRecord, read_record, write_record


def record(run_id, model, created, ndcg):
    return RunRecord(
        run_id=run_id,
        created=created,
        dataset="tiny",
        model=model,
        protocol="full",
        config={"model": model},
        metrics={"ndcg@10": ndcg},
    )


def test_store_filters_and_orders_newest_first(tmp_path):
    store = ResultsStore(tmp_path / "r.sqlite")
    store.add(record("a", "pop", "2026-01-01T00:00:00", 0.1))
    store.add(record("b", "sasrec", "2026-01-02T00:00:00", 0.2))
    store.add(record("c", "pop", "2026-01-03T00:00:00", 0.3))
    assert [r.run_id for r in store.query()] == ["c", "b", "a"]
    assert [r.run_id for r in store.query(model="pop")] == ["c", "a"]
    assert [r.run_id for r in store.query(last=1)] == ["c"]
    assert ResultsStore(tmp_path / "r.sqlite").query(model="sasrec")[0].metrics == {"ndcg@10": 0.2}


def test_record_round_trips_through_run_folder(tmp_path):
    rec = record("x", "pop", "2026-01-01T00:00:00", 0.5)
    write_record(rec, tmp_path / "x")
    assert read_record(tmp_path / "x") == rec


def test_undefined_metric_is_null_on_disk_and_nan_in_memory(tmp_path):
    import json
    import math

    rec = record("x", "pop", "2026-01-01T00:00:00", float("nan"))
    rec.extra["lift"] = float("inf")
    write_record(rec, tmp_path / "x")
    text = (tmp_path / "x" / "record.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text)["metrics"]["ndcg@10"] is None
    assert math.isnan(read_record(tmp_path / "x").metrics["ndcg@10"])
    store = ResultsStore(tmp_path / "r.sqlite")
    store.add(rec)
    assert math.isnan(store.query()[0].metrics["ndcg@10"])


def test_records_written_by_older_versions_with_nan_still_read(tmp_path):
    import math

    folder = tmp_path / "old"
    folder.mkdir()
    text = record("old", "pop", "2026-01-01T00:00:00", 0.1).to_json().replace("0.1", "NaN")
    (folder / "record.json").write_text(text)
    assert math.isnan(read_record(folder).metrics["ndcg@10"])


def test_damaged_record_is_a_one_line_config_error(tmp_path):
    import pytest

    from llmrec.errors import ConfigError

    folder = tmp_path / "bad"
    folder.mkdir()
    for text, fragment in [
        ("{", "not valid JSON"),
        ("[]", "JSON object"),
        ('{"run_id": "r"}', "created: missing"),
        (record("r", "pop", "t", 0.1).to_json().replace("0.1", '"high"'), "metrics.ndcg@10"),
    ]:
        (folder / "record.json").write_text(text)
        with pytest.raises(ConfigError, match=fragment) as info:
            read_record(folder)
        assert "\n" not in str(info.value)


def test_unusable_store_is_refused_when_opened(tmp_path):
    import pytest

    from llmrec.errors import ConfigError

    (tmp_path / "dir.sqlite").mkdir()
    (tmp_path / "text.sqlite").write_text("hello\n" * 100)
    for name in ("dir.sqlite", "text.sqlite"):
        with pytest.raises(ConfigError, match=name):
            ResultsStore(tmp_path / name)
