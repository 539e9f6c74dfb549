"""The compare runner: stage statuses, measurements, resume from cache, determinism."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from llmrec.compare import MANIFEST_FILE, iter_records, read_manifest, run_compare
from llmrec.models.popularity import Popularity
from llmrec.testing import tiny_dataset

from .conftest import tiny_config

#: metrics that depend on the clock or the process, not on the seed
_VOLATILE = ("_s", "_ms", "_mb", "throughput", "size_bytes")


def _stable(metrics: dict[str, float]) -> dict[str, float]:
    return {k: v for k, v in metrics.items() if not any(t in k for t in _VOLATILE)}


def _statuses(folder: Path) -> dict[str, dict]:
    return {s.name: s.model_dump() for s in read_manifest(folder).stages}


def test_every_entry_gets_a_status_and_none_stops_the_others(tiny_compare: Path) -> None:
    stages = _statuses(tiny_compare)
    assert {n: s["status"] for n, s in stages.items()} == {
        "pop": "done",
        "floor": "done",
        "knn": "done",
        "knn-cand": "done",
        "text-knn": "done",
        "lm-rerank": "done",
        "missing": "unavailable",
        "broken": "failed",
    }
    assert "not registered" in stages["missing"]["reason"]
    assert "no_such_param" in stages["broken"]["reason"]
    assert stages["missing"]["record"] is None


def test_records_hold_accuracy_efficiency_and_bias(tiny_compare: Path) -> None:
    records = {s["name"]: r for s, r in iter_records(tiny_compare) if r is not None}
    for name, record in records.items():
        m = record.metrics
        for key in ("ndcg@10", "recall@10", "mrr@10", "cold_items_n_users", "fit_s"):
            assert key in m, (name, key)
        assert 0.0 <= m["ndcg@10"] <= 1.0
        assert m["latency_p50_ms"] <= m["latency_p95_ms"]
        assert m["throughput_users_s"] > 0
        assert m["peak_rss_mb"] > 0
        assert len(record.extra["position"]["ndcg"]) == 3
        shares = record.extra["popularity"]["decile_share"]
        assert len(shares) == 10 and math.isclose(sum(shares), 1.0, abs_tol=1e-4)
    assert records["knn"].metrics["size_bytes"] > 0
    # only the LM ranker spends LM calls at serving time, and only it is probed for fairness
    assert records["lm-rerank"].metrics["lm_calls_per_1k"] > 0
    assert math.isnan(records["knn"].metrics["lm_calls_per_1k"])  # no LM: not measured
    assert "fairness" in records["lm-rerank"].extra
    assert "fairness" not in records["knn"].extra
    # an order-blind scorer has no position bias
    assert records["knn"].metrics["position_spread"] == pytest.approx(0.0)


def test_sampled_entries_are_scored_on_the_sample_only(tiny_compare: Path) -> None:
    records = {s["name"]: r for s, r in iter_records(tiny_compare) if r is not None}
    sample = records["lm-rerank"].metrics
    assert sample["n_users"] == 12
    assert sample["sample_n_users"] == 12
    full = records["knn"].metrics
    assert full["n_users"] == 40 and full["sample_n_users"] == 12


def test_resume_reuses_finished_stages(tiny_compare: Path, tmp_path: Path, monkeypatch) -> None:
    import shutil

    folder = tmp_path / "copy"
    shutil.copytree(tiny_compare, folder)
    before = _statuses(folder)

    def no_fit(self, *a, **k):  # a cached stage must not be fitted again
        raise AssertionError("fit called for a cached stage")

    monkeypatch.setattr(Popularity, "fit", no_fit)
    statuses = {s.name: s for s in run_compare(tiny_config(), folder, data=tiny_dataset())}
    assert statuses["pop"].status == "cached"
    assert statuses["pop"].run_id == before["pop"]["run_id"]
    assert statuses["knn"].status == "cached"
    # unavailable and failed stages are tried again rather than cached
    assert statuses["missing"].status == "unavailable"
    assert statuses["broken"].status == "failed"


def test_changed_entry_or_torn_record_reruns(tiny_compare: Path, tmp_path: Path) -> None:
    import shutil

    folder = tmp_path / "copy"
    shutil.copytree(tiny_compare, folder)
    (folder / "stages" / "pop" / "record.json").write_text('{"run_id": "torn')
    config = tiny_config()
    knn = next(e for e in config.entries if e.name == "knn")
    knn.params = {"neighbors": 5}
    statuses = {s.name: s.status for s in run_compare(config, folder, data=tiny_dataset())}
    assert statuses["pop"] == "done"
    assert statuses["knn"] == "done"
    assert statuses["knn-cand"] == "cached"
    json.loads((folder / MANIFEST_FILE).read_text())  # written whole


def test_same_seed_gives_same_metrics(tiny_compare: Path, tmp_path: Path) -> None:
    run_compare(tiny_config(), tmp_path / "again", data=tiny_dataset())
    first = {s["name"]: r for s, r in iter_records(tiny_compare) if r is not None}
    second = {s["name"]: r for s, r in iter_records(tmp_path / "again") if r is not None}
    assert first.keys() == second.keys()
    for name in first:
        assert _stable(first[name].metrics) == _stable(second[name].metrics), name
        assert first[name].extra["position"] == second[name].extra["position"]


def test_another_seed_changes_the_sample(tmp_path: Path) -> None:
    config = tiny_config(seed=11)
    config.entries = [e for e in config.entries if e.name == "lm-rerank"]
    run_compare(config, tmp_path / "s11", data=tiny_dataset())
    other = tiny_config(seed=12)
    other.entries = [e for e in other.entries if e.name == "lm-rerank"]
    run_compare(other, tmp_path / "s12", data=tiny_dataset())
    a = next(r for _, r in iter_records(tmp_path / "s11"))
    b = next(r for _, r in iter_records(tmp_path / "s12"))
    assert a is not None and b is not None
    assert a.extra["stage_key"] != b.extra["stage_key"]


def test_an_unexpected_error_fails_only_its_stage_and_keeps_a_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_fit(self, *a, **k):
        raise TypeError("a bug in a model")

    monkeypatch.setattr(Popularity, "fit", broken_fit)
    config = tiny_config()
    config.entries = [e for e in config.entries if e.name in ("pop", "knn")]
    statuses = {s.name: s for s in run_compare(config, tmp_path / "c", data=tiny_dataset())}
    assert statuses["pop"].status == "failed"
    assert "TypeError: a bug in a model" in statuses["pop"].reason
    assert "a bug in a model" in (tmp_path / "c" / "stages" / "pop" / "error.txt").read_text()
    assert statuses["knn"].status == "done"


def test_each_stage_keeps_its_fitted_model_for_serving(tiny_compare: Path) -> None:
    from llmrec.models.base import Recommender

    data = tiny_dataset()
    for name in ("pop", "knn", "text-knn", "lm-rerank"):
        folder = tiny_compare / "stages" / name / "model"
        assert (folder / "config.json").is_file(), name
        model = Recommender.load(folder)
        recs = model.recommend([0, 1], k=5)
        assert recs.items.shape == (2, 5) and (recs.items >= 0).all()
        assert recs.items.max() < data.n_items
    assert not list(tiny_compare.glob("stages/*/model.tmp"))
    # a stage that failed leaves no model behind
    assert not (tiny_compare / "stages" / "broken" / "model").exists()


def test_lm_cost_counts_the_encoders_a_fit_used(tiny_compare: Path) -> None:
    """Text-kNN encodes every item when it fits (fake encoder): its fit LM figures are real
    numbers, not "not measured"; models without an LM still read NaN."""
    records = {s["name"]: r for s, r in iter_records(tiny_compare) if r is not None}
    text = records["text-knn"].metrics
    assert text["fit_lm_calls"] >= 1
    assert text["fit_lm_tokens"] > 0
    assert text["lm_calls_per_1k"] == 0  # the index answers queries without the LM
    rerank = records["lm-rerank"].metrics
    assert rerank["lm_calls_per_1k"] > 0
    assert math.isnan(records["pop"].metrics["fit_lm_calls"])
