"""The report: built from stored records only, every number traceable to a run id."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from llmrec.compare import iter_records
from llmrec.report import Constraints, render_report


@pytest.fixture()
def rendered(tiny_compare: Path, tmp_path: Path) -> tuple[Path, dict]:
    folder = tmp_path / "cmp"
    shutil.copytree(tiny_compare, folder)
    html_path, json_path = render_report(folder)
    return html_path, json.loads(json_path.read_text())


def test_report_json_is_strict_json_with_every_section(rendered: tuple[Path, dict]) -> None:
    html_path, data = rendered
    json.loads(
        (html_path.parent / "report.json").read_text(),
        parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"),
    )
    assert set(data["tables"]) == {"accuracy", "efficiency", "bias"}
    assert set(data["plots"]) == {"accuracy_latency", "position_bias", "popularity", "fairness"}
    assert data["choice"]["recommended"] is not None


def test_every_table_number_matches_its_record(rendered: tuple[Path, dict], tiny_compare: Path):
    _, data = rendered
    records = {r.run_id: r for _, r in iter_records(tiny_compare) if r is not None}
    checked = 0
    for table in data["tables"].values():
        for row in table["rows"]:
            record = records[row["run_id"]]
            assert record.model == row["model"]
            for col in table["columns"]:
                value = row[col["key"]]
                if col["key"] in ("vs_floor", "vs_floor_p"):
                    continue  # computed by the report from per-user arrays (test_evidence)
                if value is not None:
                    assert value == pytest.approx(record.metrics[col["key"]]), col["key"]
                    checked += 1
    assert checked > 50


def test_every_plot_series_names_a_stored_run(rendered: tuple[Path, dict], tiny_compare: Path):
    _, data = rendered
    run_ids = {r.run_id for _, r in iter_records(tiny_compare) if r is not None}
    plots = data["plots"]
    series = (
        plots["accuracy_latency"]["points"]
        + plots["position_bias"]["series"]
        + plots["popularity"]["series"]
        + plots["fairness"]["series"]
    )
    assert series
    assert {s["run_id"] for s in series} <= run_ids
    assert set(data["choice"]["run_ids"]) <= run_ids
    records = {r.run_id: r for _, r in iter_records(tiny_compare) if r is not None}
    for s in plots["position_bias"]["series"]:
        assert s["ndcg"] == records[s["run_id"]].extra["position"]["ndcg"]


def test_html_is_self_contained_with_six_plots(rendered: tuple[Path, dict]) -> None:
    html_path, data = rendered
    html = html_path.read_text()
    # four trade-off plots, the accuracy bars with intervals, the history-length curve
    assert html.count("<svg") == 6
    assert "<script" not in html
    assert not re.search(r"(src|href)=\"(https?:)?//", html)
    for row in data["tables"]["accuracy"]["rows"]:
        assert row["run_id"] in html
    assert "unavailable" in html and "not registered" in html
    assert "Which to choose" in html


def test_report_rerenders_with_new_constraints_without_models(
    rendered: tuple[Path, dict], monkeypatch: pytest.MonkeyPatch
) -> None:
    import llmrec.models.catalogue as catalogue

    html_path, before = rendered
    monkeypatch.setattr(catalogue, "_CATALOGUE", {})  # nothing can be rebuilt or refitted
    _, json_path = render_report(html_path.parent, Constraints(latency_budget_ms=1e-6))
    after = json.loads(json_path.read_text())
    assert after["choice"]["recommended"] is None
    assert after["tables"] == before["tables"]


def test_lm_probes_in_the_report_are_the_records_own(
    rendered: tuple[Path, dict], tiny_compare: Path
) -> None:
    html_path, data = rendered
    records = {r.run_id: r for _, r in iter_records(tiny_compare) if r is not None}
    validity = data["validity"]
    assert [r["entry"] for r in validity["prompt_sensitivity"]] == ["lm-rerank"]
    assert [r["entry"] for r in validity["candidate_count"]] == ["lm-rerank"]
    html = html_path.read_text()
    for key in ("prompt_sensitivity", "candidate_count"):
        for row in validity[key]:
            stored = records[row["run_id"]].extra[key]
            assert {k: row[k] for k in stored} == stored
    prompt = validity["prompt_sensitivity"][0]
    assert f"<td>{prompt['spread']:.4f}</td>" in html
    counts = validity["candidate_count"][0]
    assert counts["counts"] == [10.0, 20.0] and counts["skipped"] == [50.0]
    for value in (*counts["ndcg"], *counts["random_ndcg"]):
        assert f"<td>{value:.4f}</td>" in html
    assert "not run: the prompt lists at most 26 candidates" in html
