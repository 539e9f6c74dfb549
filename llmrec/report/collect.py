"""Gather a compare folder's stored records into the report's data (``report.json``).

Nothing is recomputed: every number is copied from a stage's ``record.json`` and carries the
record's ``run_id`` (each table row, plot series and the choice lists the run ids they use).
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

from llmrec.compare import iter_records, read_manifest
from llmrec.report.choose import Constraints, choose

__all__ = [
    "ACCURACY_COLUMNS",
    "BIAS_COLUMNS",
    "EFFICIENCY_COLUMNS",
    "build_report_data",
    "summary_rows",
]

#: (record metric key, column title) of each table
ACCURACY_COLUMNS = [
    ("n_users", "users"),
    ("ndcg@10", "NDCG@10"),
    ("recall@10", "Recall@10"),
    ("mrr@10", "MRR@10"),
    ("sample_ndcg@10", "NDCG@10 (sample)"),
    ("cold_items_ndcg@10", "NDCG@10 cold items"),
    ("cold_items_n_users", "cold-item users"),
    ("cold_users_ndcg@10", "NDCG@10 cold users"),
    ("coverage", "coverage"),
]
EFFICIENCY_COLUMNS = [
    ("fit_s", "fit (s)"),
    ("latency_p50_ms", "latency p50 (ms)"),
    ("latency_p95_ms", "latency p95 (ms)"),
    ("throughput_users_s", "throughput (users/s)"),
    ("peak_delta_mb", "peak memory added (MiB)"),
    ("size_bytes", "model size (bytes)"),
    ("lm_calls_per_1k", "LM calls / 1k recs"),
    ("lm_tokens_per_1k", "LM tokens / 1k recs"),
    ("fit_lm_tokens", "LM tokens in fit"),
]
BIAS_COLUMNS = [
    ("position_spread", "position spread (NDCG@10)"),
    ("popularity_lift", "popularity lift (top-10 vs catalogue)"),
    ("candidate_popularity_lift", "popularity lift (top-5 vs candidates)"),
    ("fairness_snsr", "fairness SNSR (Jaccard)"),
]
_ROW_KEYS = [k for k, _ in ACCURACY_COLUMNS + EFFICIENCY_COLUMNS + BIAS_COLUMNS]


def summary_rows(compare_dir: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(finished entries' summary rows, every stage's status line) of a compare folder.

    A row holds ``entry``, ``paradigm``, ``model``, ``protocol``, ``pipeline``, ``run_id``,
    ``record`` (path relative to the folder), ``evaluated_users`` and the metric keys of the
    three tables, each copied from the record (``None`` where the record lacks it).
    """
    rows, stages = [], []
    for stage, record in iter_records(compare_dir):
        stages.append(stage)
        if record is None:
            continue
        row: dict[str, Any] = {
            "entry": stage["name"],
            "paradigm": stage["paradigm"],
            "model": stage["model"],
            "protocol": stage["protocol"],
            "pipeline": stage["pipeline"],
            "run_id": record.run_id,
            "record": stage["record"],
            "evaluated_users": record.extra.get("evaluated_users", "all"),
        }
        for key in _ROW_KEYS:
            row[key] = _clean(record.metrics.get(key))
        row["_extra"] = record.extra
        rows.append(row)
    return rows, stages


def build_report_data(compare_dir: Path, constraints: Constraints | None = None) -> dict[str, Any]:
    """The content of ``report.json``: tables, plot series, stages and the choice.

    ``constraints`` default to those stored in ``compare.json`` by ``llmrec compare``.
    """
    manifest = read_manifest(compare_dir)
    if constraints is None:
        constraints = Constraints.model_validate(manifest.constraints)
    rows, stages = summary_rows(compare_dir)
    public = [{k: v for k, v in r.items() if k != "_extra"} for r in rows]
    return {
        "generated": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "compare_dir": str(compare_dir),
        "dataset": manifest.dataset,
        "split": manifest.split,
        "config": manifest.config,
        "stages": stages,
        "tables": {
            "accuracy": _table(public, ACCURACY_COLUMNS),
            "efficiency": _table(public, EFFICIENCY_COLUMNS),
            "bias": _table(public, BIAS_COLUMNS),
        },
        "plots": {
            "accuracy_latency": _accuracy_latency(public),
            "position_bias": _position(rows),
            "popularity": _popularity(rows),
            "fairness": _fairness(rows),
        },
        "choice": choose(public, constraints),
    }


def _table(rows: list[dict[str, Any]], columns: list[tuple[str, str]]) -> dict[str, Any]:
    head = ["entry", "paradigm", "model", "protocol", "pipeline", "run_id", "evaluated_users"]
    return {
        "columns": [{"key": k, "title": t} for k, t in columns],
        "rows": [{**{h: r[h] for h in head}, **{k: r[k] for k, _ in columns}} for r in rows],
    }


def _accuracy_latency(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Points (p50 latency ms, NDCG@10) of full-ranking entries; the sample NDCG where any
    entry was evaluated on the sample, so the points share one scale."""
    ranked = [r for r in rows if r["protocol"] in ("full", "two-stage")]
    sampled = any(r["evaluated_users"] == "sample" for r in ranked)
    y_key = "sample_ndcg@10" if sampled else "ndcg@10"
    points = [
        {
            "entry": r["entry"],
            "paradigm": r["paradigm"],
            "run_id": r["run_id"],
            "latency_p50_ms": r["latency_p50_ms"],
            "latency_p95_ms": r["latency_p95_ms"],
            "y": r[y_key],
        }
        for r in ranked
        if r["latency_p50_ms"] is not None and r[y_key] is not None
    ]
    return {"y_key": y_key, "points": points}


def _position(rows: list[dict[str, Any]]) -> dict[str, Any]:
    series = []
    for r in rows:
        pos = r["_extra"].get("position")
        if pos:
            series.append(
                {
                    "entry": r["entry"],
                    "paradigm": r["paradigm"],
                    "run_id": r["run_id"],
                    "slots": pos["slots"],
                    "ndcg": pos["ndcg"],
                    "spread": pos["spread"],
                }
            )
    return {"series": series}


def _popularity(rows: list[dict[str, Any]]) -> dict[str, Any]:
    series, catalogue, interactions, source = [], None, None, None
    for r in rows:
        pop = r["_extra"].get("popularity")
        if not pop:
            continue
        series.append(
            {
                "entry": r["entry"],
                "paradigm": r["paradigm"],
                "run_id": r["run_id"],
                "decile_share": pop["decile_share"],
                "lift": _clean(pop.get("lift")),
            }
        )
        if catalogue is None:
            catalogue, interactions = pop["catalogue_share"], pop["interaction_share"]
            source = r["run_id"]
    return {
        "series": series,
        "catalogue_share": catalogue,
        "interaction_share": interactions,
        "catalogue_run_id": source,
    }


def _fairness(rows: list[dict[str, Any]]) -> dict[str, Any]:
    series = []
    for r in rows:
        for attribute, rep in (r["_extra"].get("fairness") or {}).items():
            series.append(
                {
                    "entry": r["entry"],
                    "paradigm": r["paradigm"],
                    "run_id": r["run_id"],
                    "attribute": attribute,
                    "jaccard": rep["jaccard"],
                    "rbo": rep["rbo"],
                    "snsr": rep["snsr_jaccard"],
                    "k": rep["k"],
                }
            )
    return {"series": series}


def _clean(value: Any) -> float | None:
    """A float for JSON, ``None`` for missing or NaN (report.json stays strict JSON)."""
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) or math.isinf(value) else value
