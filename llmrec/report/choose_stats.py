"""The statistical half of "Which to choose": :func:`llmrec.eval.choice.choose` over the
feasible entries, paired tests against the best classic baseline and between the chosen entry
and the runner-up (Holm-corrected together), and the minimal detectable effect of the sample.

Every comparative sentence written here carries its p-value.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from llmrec.report.choose import Constraints, bias_of
from llmrec.report.evidence import paired_family

__all__ = ["fmt_p", "statistical_choice"]

ALPHA = 0.05


def fmt_p(p: float) -> str:
    """``p=0.041``; below 0.001 (the resolution of a sampled test) ``p<0.001``."""
    return "p<0.001" if p < 0.001 else f"p={p:.2g}"


def statistical_choice(
    out: dict[str, Any],
    ranked: list[dict[str, Any]],
    feasible: list[dict[str, Any]],
    values: dict[str, np.ndarray],
    acc_key: str,
    constraints: Constraints,
) -> list[str]:
    """Choose among ``feasible`` on the per-user ``values``; fill ``out`` (``recommended``,
    ``paradigm``, ``tied``, ``mde``, ``tests``) and return the sentences."""
    from llmrec.eval.choice import Entry, choose

    entries = [
        Entry(
            r["entry"],
            values[r["entry"]],
            latency_ms=_num(r.get("latency_p50_ms")),
            memory_mb=_num(r.get("peak_delta_mb")),
            lm_cost=_lm_cost(r),
        )
        for r in feasible
    ]
    c = choose(entries, metric="NDCG@10", alpha=ALPHA)
    by_name = {r["entry"]: r for r in ranked}
    chosen = by_name[c.chosen]
    out.update(recommended=c.chosen, paradigm=chosen["paradigm"], tied=list(c.tied))
    out["mde"] = c.mde
    n = len(next(iter(values.values())))
    others = sorted((nm for nm in c.means if nm != c.chosen), key=lambda nm: -c.means[nm])
    runner = others[0] if others else None
    baseline = _best_classic(ranked, values)
    pairs = [(r["entry"], baseline) for r in ranked if baseline and r["entry"] != baseline]
    if runner is not None:
        pairs.append((c.chosen, runner))
    tests = paired_family({k: v for k, v in values.items() if k in by_name}, pairs)
    out["tests"] = {"baseline": baseline, "n_users": n, "alpha": ALPHA, "pairs": tests}
    text = [_chosen_sentence(c.sentence, chosen, constraints)]
    if runner is not None:
        test = next((t for t in tests if (t["entry"], t["versus"]) == (c.chosen, runner)), None)
        text.append(_runner_sentence(by_name[runner], c.chosen, test))
    text += _baseline_sentences(ranked, tests, baseline)
    if c.mde is not None and math.isfinite(c.mde):
        text.append(
            f"A {n}-user sample can detect differences of about {c.mde:.3f} NDCG@10 (paired "
            f"test, alpha {ALPHA}, power 0.8); smaller true gaps will usually read as ties."
        )
    return text


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None


def _lm_cost(row: dict[str, Any]) -> float | None:
    """LM tokens per 1,000 lists; 0 for an entry that holds no LM (its figure is absent)."""
    tokens = _num(row.get("lm_tokens_per_1k"))
    return 0.0 if tokens is None and row.get("lm_calls_per_1k") is None else tokens


def _best_classic(ranked: list[dict[str, Any]], values: dict[str, np.ndarray]) -> str | None:
    classic = [r["entry"] for r in ranked if r["paradigm"] == "classic" and r["entry"] in values]
    return max(classic, key=lambda n: (float(values[n].mean()), n)) if classic else None


def _chosen_sentence(reason: str, row: dict[str, Any], c: Constraints) -> str:
    p95 = _num(row.get("latency_p95_ms"))
    parts = [f"Choose {row['entry']} ({row['paradigm']}): {reason}"]
    latency = "n/a" if p95 is None else f"{p95:.1f} ms"
    if c.latency_budget_ms is not None:
        latency += f" (budget {c.latency_budget_ms:.1f} ms)"
    parts.append(f"p95 latency {latency}")
    bias = bias_of(row)
    if bias is not None:
        parts.append(f"bias {bias:.3f}")
    parts.append(f"it needs: {row.get('pipeline', 'unknown')}")
    return "; ".join(parts) + "."


def _runner_sentence(runner: dict[str, Any], chosen: str, test: dict[str, Any] | None) -> str:
    if test is None:
        return f"Next: {runner['entry']} ({runner['paradigm']})."
    verdict = "significantly" if test["significant"] else "not significantly"
    return (
        f"Next: {runner['entry']} ({runner['paradigm']}); {chosen} minus {runner['entry']}: "
        f"{test['diff']:+.4f} NDCG@10 (95% CI [{test['low']:+.4f}, {test['high']:+.4f}], "
        f"d_z {test['effect_size']:+.2f}, {fmt_p(test['p_holm'])} after Holm), "
        f"{verdict} different."
    )


def _baseline_sentences(
    ranked: list[dict[str, Any]], tests: list[dict[str, Any]], baseline: str | None
) -> list[str]:
    """Per non-classic paradigm, its best entry against the best classic baseline."""
    if baseline is None:
        return []
    vs = {t["entry"]: t for t in tests if t["versus"] == baseline}
    best: dict[str, dict[str, Any]] = {}
    for t in vs.values():
        row = next(r for r in ranked if r["entry"] == t["entry"])
        held = best.get(row["paradigm"])
        if row["paradigm"] != "classic" and (held is None or t["diff"] > held["diff"]):
            best[row["paradigm"]] = t
    out = []
    for paradigm, t in sorted(best.items()):
        if t["significant"] and t["diff"] > 0:
            verdict = "beat"
        elif t["significant"]:
            verdict = "fell below"
        else:
            verdict = "did not differ significantly from"
        out.append(
            f"Best {paradigm} entry {t['entry']} {verdict} the best classic baseline {baseline}: "
            f"{t['diff']:+.4f} NDCG@10 (95% CI [{t['low']:+.4f}, {t['high']:+.4f}], "
            f"d_z {t['effect_size']:+.2f}, {fmt_p(t['p_holm'])} after Holm)."
        )
    return out
