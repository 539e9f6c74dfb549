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
