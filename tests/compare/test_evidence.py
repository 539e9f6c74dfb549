"""Per-user arrays, seeds, intervals, paired tests and the statistical choice of a compare."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from llmrec.compare import read_manifest, run_compare
from llmrec.compare.evidence import PER_USER_FILE, read_per_user, seed_dir
from llmrec.report import Constraints, build_report_data, choose, render_report
from llmrec.report.evidence import INTERVAL_KEYS
from llmrec.testing import tiny_dataset
from tests.compare.conftest import tiny_config

_P = re.compile(r"p(=|<)\d")


def test_each_finished_stage_keeps_its_per_user_arrays(tiny_compare: Path) -> None:
    for stage in read_manifest(tiny_compare).stages:
        folder = tiny_compare / "stages" / stage.name
        if not stage.finished:
            assert not (folder / PER_USER_FILE).exists()
            continue
        with np.load(folder / PER_USER_FILE, allow_pickle=False) as npz:
            assert "users" in npz.files
        data = read_per_user(folder)
        assert data is not None
        record = json.loads((folder / "record.json").read_text())
        # the arrays reproduce the record's point estimate exactly
        assert data.metrics["ndcg@10"].mean() == pytest.approx(record["metrics"]["ndcg@10"])
        iv = record["extra"]["intervals"]["ndcg@10"]
        assert iv["low"] <= record["metrics"]["ndcg@10"] <= iv["high"]


def test_every_accuracy_metric_of_every_entry_has_an_interval(tiny_compare: Path) -> None:
    data = build_report_data(tiny_compare)
    rows = data["tables"]["accuracy"]["rows"]
    assert rows
    for row in rows:
        for key in ("ndcg@10", "recall@10", "mrr@10"):
            cell = row["ci"][key]
            assert cell["low"] <= row[key] + 1e-12 and row[key] - 1e-12 <= cell["high"]
        assert set(row["ci"]) <= set(INTERVAL_KEYS)
    assert data["statistics"]["available"]
    text = json.dumps(data, allow_nan=False)  # strict JSON
    assert "NaN" not in text


def test_tests_against_baseline_and_floor_are_holm_corrected(tiny_compare: Path) -> None:
    data = build_report_data(tiny_compare)
    stats = data["statistics"]
    assert stats["vs_floor"]["floor"] == "floor"
    for family in (stats["tests"]["pairs"], stats["vs_floor"]["pairs"]):
        assert family
        for t in family:
            assert t["p"] <= t["p_holm"] <= 1.0
            assert t["low"] <= t["diff"] <= t["high"]
            assert np.isfinite(t["effect_size"])
    ranked = [r for r in data["tables"]["accuracy"]["rows"] if r["protocol"] != "candidates"]
    assert all(r["vs_floor_p"] is not None for r in ranked if r["entry"] != "floor")


def test_every_comparative_sentence_carries_its_p_value(tiny_compare: Path) -> None:
    choice = build_report_data(tiny_compare)["choice"]
    comparative = [
        s
        for s in choice["explanation"]
        if re.search(r"\bties\b|Next:|baseline|ahead", s) and "can be detected" not in s
    ]
    assert comparative
    assert all(_P.search(s) for s in comparative), comparative
    detect = [s for s in choice["explanation"] if "can be detected" in s]
    assert any("differences of about" in s for s in detect)


def _row(name: str, latency: float, paradigm: str = "classic") -> dict:
    return {
        "entry": name,
        "paradigm": paradigm,
        "protocol": "full",
        "pipeline": "nothing new (no LM)",
        "run_id": f"r-{name}",
        "evaluated_users": "all",
        "ndcg@10": 0.1,
        "latency_p50_ms": latency,
        "latency_p95_ms": latency,
        "lm_calls_per_1k": None,
        "lm_tokens_per_1k": None,
    }


def test_a_non_significant_lead_does_not_win_over_a_cheaper_entry() -> None:
    rng = np.random.default_rng(0)
    base = rng.random(60) * (rng.random(60) < 0.3)
    slow = base + rng.normal(0, 0.02, 60)  # a little ahead on average, far from significant
    slow = slow + 0.002
    values = {"slow": slow, "fast": base}
    out = choose([_row("slow", 40.0), _row("fast", 2.0)], Constraints(), values)
    assert out["recommended"] == "fast"
    sentence = next(s for s in out["explanation"] if s.startswith("Choose"))
    assert "ties slow" in sentence and "faster" in sentence and _P.search(sentence)


def test_a_significant_lead_wins() -> None:
    rng = np.random.default_rng(1)
    base = rng.random(200) * 0.2
    values = {"good": base + 0.2, "cheap": base}
    out = choose([_row("good", 40.0), _row("cheap", 2.0)], Constraints(), values)
    assert out["recommended"] == "good"
    assert out["tied"] == ["good"]


def test_without_arrays_the_report_says_not_available(tiny_compare: Path, tmp_path: Path) -> None:
    folder = tmp_path / "old"
    shutil.copytree(tiny_compare, folder)
    for npz in folder.rglob(PER_USER_FILE):
        npz.unlink()
    html_path, json_path = render_report(folder)
    data = json.loads(json_path.read_text())
    assert not data["statistics"]["available"]
    assert all(r["ci"] == {} for r in data["tables"]["accuracy"]["rows"])
    assert "not available" in html_path.read_text()
    assert any("not available" in s for s in data["choice"]["explanation"])


def test_further_seeds_are_cached_stages_and_leave_seed_one_unchanged(tmp_path: Path) -> None:
    entries = [
        {"name": "pop", "model": "popularity"},
        {"name": "sas", "model": "sasrec", "params": {"epochs": 1, "max_len": 8, "dim": 8}},
    ]
    one, three = tmp_path / "one", tmp_path / "three"
    run_compare(tiny_config(entries=entries), one, data=tiny_dataset())
    logs: list[str] = []
    statuses = run_compare(
        tiny_config(entries=entries, seeds=3), three, data=tiny_dataset(), log=logs.append
    )
    by_name = {s.name: s for s in statuses}
    assert by_name["sas"].seeds == [3, 4, 5] and by_name["pop"].seeds == [3]
    for seed in (4, 5):
        assert (seed_dir(three, "sas", seed) / PER_USER_FILE).is_file()
    # the stage's own seed gives the same point estimate as a single-seed run
    rec_one = json.loads((one / "stages/sas/record.json").read_text())["metrics"]
    rec_three = json.loads((three / "stages/sas/record.json").read_text())["metrics"]
    assert rec_three["ndcg@10"] == rec_one["ndcg@10"]
    again: list[str] = []
    statuses = run_compare(
        tiny_config(entries=entries, seeds=3), three, data=tiny_dataset(), log=again.append
    )
    assert not any("seed 4" in line for line in again)  # cached
    cell = build_report_data(three)["tables"]["accuracy"]["rows"][1]["ci"]["ndcg@10"]
    assert cell["n_seeds"] == 3 and len(cell["seed_means"]) == 3


def _sampled(name: str, latency: float) -> dict:
    return {
        **_row(name, latency, paradigm="direct"),
        "protocol": "two-stage",
        "evaluated_users": "sample",
        "lm_calls_per_1k": 1000.0,
        "lm_tokens_per_1k": 5e5,
    }


def _two_tier_values(lm_lift: float) -> tuple[dict, dict]:
    """400 users for the entries scored on all; the first 40 are the LM sample."""
    rng = np.random.default_rng(3)
    knn = rng.random(400) * (rng.random(400) < 0.5)
    sasrec = knn + 0.02 + rng.normal(0, 0.08, 400)  # ahead: significant on 400, not on 40
    values = {"knn": knn, "sasrec": sasrec}
    sample = {k: v[:40] for k, v in values.items()}
    sample["llm"] = sasrec[:40] + lm_lift + rng.normal(0, 0.05, 40)
    return values, sample


def test_entries_scored_on_every_user_are_compared_on_every_user() -> None:
    values, sample = _two_tier_values(lm_lift=0.0)
    rows = [_row("knn", 2.0), _row("sasrec", 30.0, "classic"), _sampled("llm", 900.0)]
    out = choose(rows, Constraints(), values, sample)
    # on 400 users SASRec's lead is significant, so the cheaper item-kNN is not chosen; a
    # 40-user sample alone would have judged all three on 40 users
    assert out["recommended"] == "sasrec"
    pairs = out["tests"]["pairs"]
    assert {t["n_users"] for t in pairs if "llm" not in (t["entry"], t["versus"])} == {400}
    assert {t["n_users"] for t in pairs if "llm" in (t["entry"], t["versus"])} == {40}
    assert out["tests"]["n_users"] == 400 and out["tests"]["sample_users"] == 40
    sample_text = next(s for s in out["explanation"] if s.startswith("On the 40-user LM sample"))
    assert "llm minus sasrec" in sample_text and _P.search(sample_text)
    assert out["mde"] < out["sample_mde"]  # more users, smaller detectable effect


def test_a_sampled_entry_clearly_ahead_on_the_sample_is_chosen() -> None:
    values, sample = _two_tier_values(lm_lift=0.5)
    rows = [_row("knn", 2.0), _row("sasrec", 30.0, "classic"), _sampled("llm", 900.0)]
    out = choose(rows, Constraints(), values, sample)
    assert out["recommended"] == "llm" and out["paradigm"] == "direct"
    first = next(s for s in out["explanation"] if s.startswith("Choose llm"))
    assert "ahead of the runner-up sasrec" in first and _P.search(first)


def test_the_printed_interval_goes_with_the_unadjusted_p() -> None:
    values, sample = _two_tier_values(lm_lift=0.0)
    rows = [_row("knn", 2.0), _row("sasrec", 30.0, "classic"), _sampled("llm", 900.0)]
    out = choose(rows, Constraints(), values, sample)
    for t in out["tests"]["pairs"]:
        # an interval that excludes 0 goes with an unadjusted p below 0.05, and vice versa
        # (bootstrap interval and randomisation p can disagree only at the margin)
        if t["low"] > 0.01 or t["high"] < -0.01:
            assert t["p"] < 0.05
        if t["p"] > 0.2:
            assert t["low"] <= 0 <= t["high"]
    sentences = [s for s in out["explanation"] if "after Holm" in s]
    assert sentences and all(
        re.search(r"p(=|<)[\d.]+, p(=|<)[\d.]+ after Holm", s) for s in sentences
    )
