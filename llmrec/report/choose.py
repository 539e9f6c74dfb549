"""Which paradigm to choose: the user's constraints applied to the measured numbers.

:func:`choose` takes the per-entry summary rows of a comparison (see
:func:`llmrec.report.collect.summary_rows`) and :class:`Constraints`, drops every entry that
breaks a constraint (saying which number broke it), and recommends the most accurate of the
rest — or the best on cold items with ``prefer="cold-start"``. Every sentence it writes quotes
the measured figures it rests on.

Only full-ranking entries (protocols ``full`` and ``two-stage``) compete: candidate-protocol
NDCG (1 held-out item among 20) is on another scale. When some entries were evaluated on the
compare-wide user sample, every entry is judged on that sample (``sample_ndcg@10``).

With per-user arrays (``values``) the rule is statistical (:func:`llmrec.eval.choice.choose`):
it never prefers an entry on a difference that is not significant, picks the cheapest of the
entries tied with the best, and every comparative sentence carries its p-value. Without them
(a compare folder from before they were kept) it ranks by the point estimates and says so.
"""

from __future__ import annotations

import math
from typing import Any, Literal, TypeGuard

import numpy as np
from pydantic import Field

from llmrec.config import StrictConfig
from llmrec.models.catalogue import PipelineLevel

__all__ = ["PIPELINE_CHOICES", "Constraints", "bias_of", "choose"]

#: CLI spelling of the pipeline constraint -> the compatibility label it allows at most
PIPELINE_CHOICES = {level.short: level.label for level in PipelineLevel}


class Constraints(StrictConfig):
    """What the user's deployment allows. ``None`` means no limit.

    Attributes:
        latency_budget_ms: p95 per-user latency (ms) at most.
        max_bias: bias at most: the larger of the position-bias spread (max - min NDCG@10 over
            candidate slots) and the fairness SNSR (max - min Jaccard@K over attribute values).
        min_ndcg: NDCG@10 at least.
        max_memory_mb: peak memory the stage added (MiB) at most.
        max_popularity_lift: mean popularity of recommendations / catalogue mean at most.
        pipeline: the largest change the system may take (none / offline / index / serving).
        prefer: rank the feasible entries by ``accuracy`` (NDCG@10) or ``cold-start``
            (NDCG@10 on users whose held-out item is cold).
    """

    latency_budget_ms: float | None = Field(default=None, gt=0)
    max_bias: float | None = Field(default=None, ge=0)
    min_ndcg: float | None = Field(default=None, ge=0)
    max_memory_mb: float | None = Field(default=None, gt=0)
    max_popularity_lift: float | None = Field(default=None, gt=0)
    pipeline: Literal["none", "offline", "index", "serving"] | None = None
    prefer: Literal["accuracy", "cold-start"] = "accuracy"


def bias_of(row: dict[str, Any]) -> float | None:
    """The larger of an entry's position spread and fairness SNSR (``None`` if neither)."""
    values = [row.get("position_spread"), row.get("fairness_snsr")]
    present = [float(v) for v in values if _num(v)]
    return max(present) if present else None


def choose(
    rows: list[dict[str, Any]],
    constraints: Constraints,
    values: dict[str, np.ndarray] | None = None,
    sample_values: dict[str, np.ndarray] | None = None,
) -> dict[str, Any]:
    """The recommendation and its reasoning.

    Args:
        rows: one dict per finished entry with ``entry``, ``paradigm``, ``protocol``,
            ``pipeline``, ``run_id`` and the metric keys named in :class:`Constraints`.
        values: per-user NDCG@10 ``(n_users,)`` of the full-ranking entries scored on every
            test user, aligned on those users
            (:func:`llmrec.report.evidence.comparison_values`).
        sample_values: the same for every full-ranking entry on the LM user sample, when some
            entries (``evaluated_users == "sample"``) ran only on it. The statistical rule runs
            when every feasible entry has its values: it chooses among the entries scored on
            every user on all of them, then tests the sampled entries against that choice on
            the sample (:mod:`llmrec.report.choose_stats`).

    Returns a dict: ``recommended`` (entry name or ``None``), ``paradigm``, ``metric`` (the
    key ranked on), ``feasible`` (names, best first), ``excluded`` (``{entry, reasons}``),
    ``not_compared`` (candidate-protocol entries), ``explanation`` (sentences) and
    ``run_ids`` (the records the sentences quote).
    """
    ranked = [r for r in rows if r.get("protocol") in ("full", "two-stage")]
    not_compared = [r["entry"] for r in rows if r not in ranked]
    sampled = any(r.get("evaluated_users") == "sample" for r in ranked)
    acc_key = "sample_ndcg@10" if sampled else "ndcg@10"
    key = "cold_items_ndcg@10" if constraints.prefer == "cold-start" else acc_key
    feasible, excluded = [], []
    for row in ranked:
        reasons = _violations(row, constraints, acc_key)
        if reasons:
            excluded.append({"entry": row["entry"], "reasons": reasons})
        else:
            feasible.append(row)
    feasible.sort(key=lambda r: (-_val(r, key), -_val(r, acc_key), r["entry"]))
    text = _scope_sentence(ranked, not_compared, acc_key, key)
    out: dict[str, Any] = {
        "constraints": constraints.model_dump(mode="json"),
        "metric": key,
        "feasible": [r["entry"] for r in feasible],
        "excluded": excluded,
        "not_compared": not_compared,
        "recommended": None,
        "paradigm": None,
        "run_ids": sorted({r["run_id"] for r in ranked}),
    }
    if not ranked:
        out["explanation"] = ["No full-ranking entry finished, so there is nothing to choose from."]
        return out
    if not feasible:
        out["explanation"] = text + _none_feasible(excluded, constraints)
        return out
    if _statistical_ok(feasible, values, sample_values, key, acc_key):
        from llmrec.report.choose_stats import statistical_choice

        text = _scope_sentence(ranked, not_compared, "ndcg@10", key, tiered=sampled)
        text += statistical_choice(
            out, ranked, feasible, values or {}, sample_values or {}, constraints
        )
        text.extend(_excluded_sentences(excluded))
        out["explanation"] = text
        return out
    best = feasible[0]
    out["recommended"], out["paradigm"] = best["entry"], best["paradigm"]
    text.append(_best_sentence(best, feasible, key, acc_key, constraints))
    if len(feasible) > 1:
        text.append(_runner_up_sentence(best, feasible[1], key, acc_key))
    text.extend(_excluded_sentences(excluded))
    text.extend(_paradigm_sentences(ranked, acc_key))
    text.append(
        "Intervals and significance tests: not available (the stages kept no per-user arrays; "
        "run llmrec compare again to measure them), so this choice rests on point estimates."
    )
    out["explanation"] = text
    return out


def _none_feasible(excluded: list[dict[str, Any]], constraints: Constraints) -> list[str]:
    text = [f"No entry meets every constraint ({_constraint_text(constraints)})."]
    text.extend(_excluded_sentences(excluded))
    closest = min(excluded, key=lambda e: (len(e["reasons"]), e["entry"]))
    text.append(f"Closest: {closest['entry']}, which misses only: {closest['reasons'][0]}.")
    return text


def _statistical_ok(
    feasible: list[dict[str, Any]],
    values: dict[str, np.ndarray] | None,
    sample_values: dict[str, np.ndarray] | None,
    key: str,
    acc_key: str,
) -> bool:
    """Whether the statistical rule applies: accuracy is ranked on, and every feasible entry
    has per-user values over at least two users (all test users for the entries scored on
    every user, the LM sample for the sampled ones)."""
    if key != acc_key or not feasible:
        return False
    for row in feasible:
        pool = sample_values if row.get("evaluated_users") == "sample" else values
        if not pool or row["entry"] not in pool or len(pool[row["entry"]]) < 2:
            return False
    return True


def _violations(row: dict[str, Any], c: Constraints, acc_key: str) -> list[str]:
    out = []
    p95 = _val(row, "latency_p95_ms", -math.inf)
    if c.latency_budget_ms is not None and p95 > c.latency_budget_ms:
        out.append(f"p95 latency {_ms(p95)} exceeds the {_ms(c.latency_budget_ms)} budget")
    bias = bias_of(row)
    if c.max_bias is not None and bias is not None and bias > c.max_bias:
        out.append(f"bias {bias:.3f} exceeds the {c.max_bias:.3f} limit")
    acc = row.get(acc_key)
    if c.min_ndcg is not None and _val(row, acc_key) < c.min_ndcg:
        out.append(f"NDCG@10 {_f(acc)} is below the required {c.min_ndcg:.4f}")
    mem = _val(row, "peak_delta_mb")
    if c.max_memory_mb is not None and mem > c.max_memory_mb:
        out.append(f"peak memory +{mem:.0f} MiB exceeds the {c.max_memory_mb:.0f} MiB limit")
    lift = _val(row, "popularity_lift")
    if c.max_popularity_lift is not None and lift > c.max_popularity_lift:
        out.append(
            f"recommendations are {lift:.2f}x as popular as the catalogue average "
            f"(limit {c.max_popularity_lift:.2f}x)"
        )
    if c.pipeline is not None:
        allowed = PIPELINE_CHOICES[c.pipeline]
        need = str(row.get("pipeline", ""))
        level, limit = PipelineLevel.parse(need), PipelineLevel.parse(c.pipeline)
        if level is None or (limit is not None and level > limit):
            out.append(f"it needs a {need}, more than the allowed '{allowed}'")
    return out


def _scope_sentence(
    ranked: list[dict[str, Any]],
    not_compared: list[str],
    acc_key: str,
    key: str,
    tiered: bool = False,
) -> list[str]:
    what = "NDCG@10 on cold items" if key.startswith("cold_") else "NDCG@10"
    if tiered:
        sampled = [r["entry"] for r in ranked if r.get("evaluated_users") == "sample"]
        text = [
            f"Ranked by {what} among {len(ranked)} full-ranking entries: those scored on every "
            "test user are compared on all of them; "
            + ", ".join(sampled)
            + " ran on the LM user sample only, so "
            + ("they are" if len(sampled) > 1 else "it is")
            + " compared with that choice on the sample."
        ]
    else:
        scope = (
            "the user sample every full-ranking entry was scored on"
            if acc_key.startswith("sample_")
            else "all test users"
        )
        text = [f"Ranked by {what} on {scope}, among {len(ranked)} full-ranking entries."]
    if not_compared:
        text.append(
            "Candidate-protocol entries (" + ", ".join(not_compared) + ") rank one held-out item "
            "among sampled negatives, a different scale: they inform but do not compete."
        )
    return text


def _best_sentence(
    best: dict[str, Any],
    feasible: list[dict[str, Any]],
    key: str,
    acc_key: str,
    c: Constraints,
) -> str:
    parts = [
        f"Choose {best['entry']} ({best['paradigm']}): {_label(key)} {_f(best.get(key))}, "
        f"the best of the {len(feasible)} entries that meet your constraints"
    ]
    if key != acc_key:
        parts.append(f"overall NDCG@10 {_f(best.get(acc_key))}")
    parts.append(f"p95 latency {_ms(best.get('latency_p95_ms'))}")
    if c.latency_budget_ms is not None:
        parts[-1] += f" (budget {_ms(c.latency_budget_ms)})"
    bias = bias_of(best)
    if bias is not None:
        parts.append(f"bias {bias:.3f}")
    parts.append(f"it needs: {best.get('pipeline', 'unknown')}")
    return "; ".join(parts) + "."


def _runner_up_sentence(
    best: dict[str, Any], second: dict[str, Any], key: str, acc_key: str
) -> str:
    gap = _val(best, key) - _val(second, key)
    text = (
        f"Next: {second['entry']} ({second['paradigm']}) at {_f(second.get(key))} "
        f"({gap:.4f} behind)"
    )
    faster = _val(second, "latency_p95_ms", math.inf) < _val(best, "latency_p95_ms", math.inf)
    if faster:
        text += (
            f", faster at p95 {_ms(second.get('latency_p95_ms'))} against "
            f"{_ms(best.get('latency_p95_ms'))}"
        )
    cold_b, cold_s = _val(best, "cold_items_ndcg@10"), _val(second, "cold_items_ndcg@10")
    if key == acc_key and math.isfinite(cold_b) and math.isfinite(cold_s) and cold_s > cold_b:
        text += f", and better on cold items ({_f(cold_s)} against {_f(cold_b)})"
    return text + "."


def _excluded_sentences(excluded: list[dict[str, Any]]) -> list[str]:
    return [f"Ruled out {e['entry']}: " + "; ".join(e["reasons"]) + "." for e in excluded]


def _paradigm_sentences(ranked: list[dict[str, Any]], acc_key: str) -> list[str]:
    best: dict[str, dict[str, Any]] = {}
    for row in ranked:
        held = best.get(row["paradigm"])
        if held is None or _val(row, acc_key) > _val(held, acc_key):
            best[row["paradigm"]] = row
    text = []
    if len(best) > 1:
        text.append(
            "Best per paradigm: "
            + ", ".join(
                f"{p} {r['entry']} {_f(r.get(acc_key))} at p95 {_ms(r.get('latency_p95_ms'))}"
                for p, r in sorted(best.items(), key=lambda kv: -_val(kv[1], acc_key))
            )
            + "."
        )
    classic = best.get("classic")
    if classic is not None:
        losers = [
            p
            for p, r in best.items()
            if p != "classic" and _val(r, acc_key) <= _val(classic, acc_key)
        ]
        if losers:
            text.append(
                "Plainly: on this data the best " + ", ".join(sorted(losers)) + " entry did not "
                f"beat the classic {classic['entry']} ({_f(classic.get(acc_key))}) on NDCG@10."
            )
    return text


def _constraint_text(c: Constraints) -> str:
    parts = [
        f"{k.replace('_', ' ')} {v}"
        for k, v in c.model_dump().items()
        if v is not None and k != "prefer"
    ]
    return ", ".join(parts) or "none given"


def _num(value: Any) -> TypeGuard[float]:
    return isinstance(value, int | float) and not math.isnan(value)


def _val(row: dict[str, Any], key: str, default: float = -math.inf) -> float:
    value = row.get(key)
    return float(value) if isinstance(value, int | float) and not math.isnan(value) else default


def _f(value: Any) -> str:
    return f"{value:.4f}" if _num(value) else "n/a"


def _ms(value: Any) -> str:
    if not _num(value):
        return "n/a"
    return f"{value:.1f} ms" if value < 100 else f"{value:,.0f} ms"


def _label(key: str) -> str:
    return {
        "ndcg@10": "NDCG@10",
        "sample_ndcg@10": "NDCG@10 (user sample)",
        "cold_items_ndcg@10": "cold-item NDCG@10",
    }.get(key, key)
