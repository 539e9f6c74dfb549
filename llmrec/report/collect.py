"""Gather a compare folder's stored records into the report's data (``report.json``).

Nothing is recomputed: every number is copied from a stage's ``record.json`` and carries the
record's ``run_id`` (each table row, plot series and the choice lists the run ids they use).
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from llmrec.compare import iter_records, read_manifest
from llmrec.report.choose import Constraints, choose
from llmrec.report.evidence import (
    EntryArrays,
    comparison_values,
    intervals,
    load_arrays,
    paired_groups,
)
from llmrec.report.validity import validity_data

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
    ("vs_floor", "vs floor (NDCG@10)"),
    ("vs_floor_p", "p vs floor (Holm)"),
]
EFFICIENCY_COLUMNS = [
    ("fit_s", "fit (s)"),
    ("tune_cpu_s", "LM tuning CPU (s)"),
    ("tune_tokens", "tokens seen in LM tuning"),
    ("tune_bytes", "LM tuning weights"),
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
#: columns the report computes (the rest are copied from the records)
_COMPUTED = ("vs_floor", "vs_floor_p")
_ROW_KEYS = [
    k for k, _ in ACCURACY_COLUMNS + EFFICIENCY_COLUMNS + BIAS_COLUMNS if k not in _COMPUTED
]


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
        row["seeds"] = stage.get("seeds") or []
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
    seed = int(manifest.config.get("seed", 0) or 0)
    arrays = _attach_intervals(compare_dir, rows, seed)
    (values, users), (sample_values, sample_users) = _ranked_values(rows, arrays)
    floor_tests = _vs_floor(rows, values, sample_values, seed)
    public = [{k: v for k, v in r.items() if k != "_extra"} for r in rows]
    choice = choose(public, constraints, values or None, sample_values or None)
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
        "choice": choice,
        "statistics": {
            "confidence": 0.95,
            "resampled": "users (BCa); users and seeds for entries run on several seeds",
            "seeds": int(manifest.config.get("seeds", 1) or 1),
            "compared_users": len(users),
            "sample_users": len(sample_users),
            "tests": choice.get("tests"),
            "vs_floor": floor_tests,
            "available": bool(arrays),
        },
        "validity": validity_data(rows),
    }


def _attach_intervals(compare_dir: Path, rows: list[dict[str, Any]], seed: int) -> dict[str, Any]:
    """Load each row's per-user arrays; put its intervals in ``row["ci"]`` (``{}`` without
    arrays) and return the arrays by entry."""
    arrays: dict[str, EntryArrays] = {}
    for row in rows:
        found = load_arrays(compare_dir, {"name": row["entry"], "seeds": row["seeds"]})
        row["ci"] = intervals(found, seed=seed) if found is not None else {}
        if found is not None:
            arrays[row["entry"]] = found
            row["seeds"] = list(found.seeds)
    return arrays


def _ranked_values(
    rows: list[dict[str, Any]], arrays: dict[str, Any]
) -> tuple[tuple[dict[str, np.ndarray], np.ndarray], tuple[dict[str, np.ndarray], np.ndarray]]:
    """Per-user NDCG@10 for the tests: the full-ranking entries scored on every test user,
    aligned on all of them; and, when some entries ran on the LM user sample, every
    full-ranking entry aligned on that sample (empty otherwise)."""
    ranked = [r for r in rows if r["protocol"] in ("full", "two-stage")]
    full = [r["entry"] for r in ranked if r["evaluated_users"] != "sample"]
    every = comparison_values(arrays, full, False)
    if not any(r["evaluated_users"] == "sample" for r in ranked):
        return every, ({}, np.zeros(0, dtype=np.int64))
    return every, comparison_values(arrays, [r["entry"] for r in ranked], True)


def _vs_floor(
    rows: list[dict[str, Any]],
    values: dict[str, np.ndarray],
    sample_values: dict[str, np.ndarray],
    seed: int,
) -> dict[str, Any] | None:
    """Every full-ranking entry against the shortcut floor (the ``transition`` entry): on every
    test user for the entries scored on all, on the LM sample for the sampled ones, all
    Holm-corrected together; sets ``vs_floor`` and ``vs_floor_p`` on each row."""
    floors = [r["entry"] for r in rows if r["model"] == "transition" and r["entry"] in values]
    for row in rows:
        row["vs_floor"] = row["vs_floor_p"] = None
    if not floors:
        return None
    floor = floors[0]
    sampled = [n for n in sample_values if n not in values]
    tests = paired_groups(
        [
            (values, [(n, floor) for n in values if n != floor]),
            (sample_values, [(n, floor) for n in sampled]),
        ],
        seed=seed,
    )
    by_entry = {t["entry"]: t for t in tests}
    for row in rows:
        t = by_entry.get(row["entry"])
        if t is not None:
            row["vs_floor"], row["vs_floor_p"] = t["diff"], t["p_holm"]
    return {"floor": floor, "pairs": tests}


def _table(rows: list[dict[str, Any]], columns: list[tuple[str, str]]) -> dict[str, Any]:
    head = ["entry", "paradigm", "model", "protocol", "pipeline", "run_id", "evaluated_users"]
    head += ["ci", "seeds"]
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
            "y_low": (r["ci"].get(y_key) or {}).get("low"),
            "y_high": (r["ci"].get(y_key) or {}).get("high"),
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
