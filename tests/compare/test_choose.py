"""The 'which to choose' logic on hand-made summary rows."""

from __future__ import annotations

from typing import Any

import pytest

from llmrec.report.choose import Constraints, bias_of, choose


def _row(entry: str, paradigm: str, ndcg: float, p95: float, **kw: Any) -> dict[str, Any]:
    row = {
        "entry": entry,
        "paradigm": paradigm,
        "model": entry,
        "protocol": "full",
        "pipeline": {
            "classic": "nothing new (no LM)",
            "embeddings": "new index",
            "tokens": "offline job only",
            "direct": "new serving model",
        }[paradigm],
        "run_id": f"run-{entry}",
        "evaluated_users": "all",
        "ndcg@10": ndcg,
        "sample_ndcg@10": ndcg,
        "cold_items_ndcg@10": kw.pop("cold", 0.0),
        "latency_p95_ms": p95,
        "position_spread": kw.pop("spread", 0.0),
        "fairness_snsr": kw.pop("snsr", None),
        "popularity_lift": kw.pop("lift", 1.0),
        "peak_delta_mb": kw.pop("mem", 10.0),
    }
    row.update(kw)
    return row


ROWS = [
    _row("sasrec", "classic", 0.060, 3.0, cold=0.01),
    _row("textknn", "embeddings", 0.040, 1.0, cold=0.05),
    _row("llm", "direct", 0.070, 900.0, spread=0.2, snsr=0.3),
]


def test_no_constraints_picks_the_most_accurate() -> None:
    out = choose(ROWS, Constraints())
    assert out["recommended"] == "llm"
    assert out["feasible"] == ["llm", "sasrec", "textknn"]
    assert any("0.0700" in s for s in out["explanation"])


def test_latency_budget_rules_out_the_slow_ranker_and_says_why() -> None:
    out = choose(ROWS, Constraints(latency_budget_ms=50))
    assert out["recommended"] == "sasrec"
    (excluded,) = out["excluded"]
    assert excluded["entry"] == "llm"
    assert "900 ms" in excluded["reasons"][0] and "50.0 ms" in excluded["reasons"][0]


def test_bias_is_the_larger_of_position_spread_and_fairness() -> None:
    assert bias_of(ROWS[2]) == pytest.approx(0.3)
    assert bias_of({"position_spread": None}) is None
    out = choose(ROWS, Constraints(max_bias=0.25))
    assert out["recommended"] == "sasrec"


def test_pipeline_and_preference_for_cold_start() -> None:
    out = choose(ROWS, Constraints(pipeline="none"))
    assert out["feasible"] == ["sasrec"]
    out = choose(ROWS, Constraints(prefer="cold-start", latency_budget_ms=50))
    assert out["recommended"] == "textknn"
    assert out["metric"] == "cold_items_ndcg@10"


def test_nothing_feasible_names_the_closest() -> None:
    out = choose(ROWS, Constraints(min_ndcg=0.5))
    assert out["recommended"] is None
    assert any(s.startswith("No entry meets") for s in out["explanation"])
    assert any("Closest" in s for s in out["explanation"])


def test_candidate_protocol_entries_do_not_compete() -> None:
    cand = _row("llm-cand", "direct", 0.5, 800.0, protocol="candidates")
    out = choose([*ROWS, cand], Constraints())
    assert out["not_compared"] == ["llm-cand"]
    assert out["recommended"] == "llm"


def test_a_sampled_entry_switches_the_metric_to_the_sample() -> None:
    rows = [dict(r) for r in ROWS]
    rows[2]["evaluated_users"] = "sample"
    rows[0]["sample_ndcg@10"] = 0.09  # sasrec does better on the sample
    out = choose(rows, Constraints())
    assert out["metric"] == "sample_ndcg@10"
    assert out["recommended"] == "sasrec"


def test_says_plainly_when_no_lm_paradigm_beats_the_classic() -> None:
    rows = [_row("sasrec", "classic", 0.08, 3.0), *ROWS[1:]]
    out = choose(rows, Constraints())
    assert any(s.startswith("Plainly") and "sasrec" in s for s in out["explanation"])
