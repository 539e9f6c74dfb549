"""The statistical half of "Which to choose", in two tiers.

1. The full-ranking entries scored on every test user are compared on all of them:
   :func:`llmrec.eval.choice.choose` (the cheapest of the entries tied with the best).
2. Entries that ran only on the LM user sample (LM rankers, too slow for every user) are then
   compared with that choice on the sample, by the same rule; one of them is chosen only where
   the sample shows it ahead (or tied and cheaper).

So a 100-user LM sample never drags the whole comparison down to its power. Paired tests are
reported against the best classic baseline, between the chosen entry and the runner-up, and
among the most accurate entries, Holm-corrected together; each test is run on the users both
of its entries were scored on. Every comparative sentence carries its p-value: the unadjusted
one, which matches the printed 95% interval, and the Holm-adjusted one, which decides.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from llmrec.report.choose import Constraints, bias_of
from llmrec.report.evidence import pair_row

__all__ = ["fmt_p", "fmt_p_pair", "statistical_choice"]

ALPHA = 0.05
#: the most accurate full-ranking entries tested pairwise (e.g. SASRec against its LM variants)
TOP_PAIRWISE = 4

Values = dict[str, np.ndarray]


def fmt_p(p: float) -> str:
    """``p=0.041``; below 0.001 (the resolution of a sampled test) ``p<0.001``."""
    return "p<0.001" if p < 0.001 else f"p={p:.2g}"


def fmt_p_pair(test: dict[str, Any]) -> str:
    """``p=0.012, p=0.048 after Holm``: the unadjusted p (it matches the interval printed
    beside it) and the Holm-adjusted one (it decides significance)."""
    return f"{fmt_p(test['p'])}, {fmt_p(test['p_holm'])} after Holm"


def statistical_choice(
    out: dict[str, Any],
    ranked: list[dict[str, Any]],
    feasible: list[dict[str, Any]],
    values: Values,
    sample_values: Values,
    constraints: Constraints,
) -> list[str]:
    """Choose among ``feasible``: the entries scored on every user on ``values``, then the
    sampled ones against that choice on ``sample_values``. Fills ``out`` (``recommended``,
    ``paradigm``, ``tied``, ``mde``, ``sample_mde``, ``tests``) and returns the sentences."""
    from llmrec.eval.choice import choose

    full = [r for r in feasible if r.get("evaluated_users") != "sample"]
    sampled = [r for r in feasible if r.get("evaluated_users") == "sample"]
    by_name = {r["entry"]: r for r in ranked}
    baseline = _best_classic(ranked, values) or _best_classic(ranked, sample_values)
    first = second = None
    if full:
        names = [r["entry"] for r in ranked if r["entry"] in values]
        refs = [n for n in names if n not in {r["entry"] for r in full}]
        first = choose(
            [_entry(r, values) for r in full],
            alpha=ALPHA,
            also=_full_pairs(names, values, baseline),
            references=[_entry(by_name[n], values) for n in refs],
        )
    if sampled:
        pool = sampled + ([by_name[first.chosen]] if first else [])
        ref = [baseline] if baseline and baseline not in {r["entry"] for r in pool} else []
        second = choose(
            [_entry(r, sample_values) for r in pool],
            alpha=ALPHA,
            also=[(r["entry"], str(baseline)) for r in sampled if baseline],
            references=[_entry(by_name[n], sample_values) for n in ref],
        )
    # the choice among the entries scored on every user stands, said on all of them, unless
    # the sample shows a sampled entry ahead of it (or tied and cheaper)
    final = first if second is None or (first and second.chosen == first.chosen) else second
    assert final is not None
    chosen = by_name[final.chosen]
    out.update(recommended=final.chosen, paradigm=chosen["paradigm"], tied=list(final.tied))
    out["mde"] = first.mde if first else None
    out["sample_mde"] = second.mde if second else None
    tests = (_family(first) if first else []) + (_family(second) if second else [])
    out["tests"] = {
        "baseline": baseline,
        "n_users": first.n_users if first else 0,
        "sample_users": second.n_users if second else 0,
        "alpha": ALPHA,
        "pairs": tests,
    }
    text = [_chosen_sentence(final.sentence, chosen, constraints)]
    if first is not None:
        text += _tied_sentence(first, by_name)
    if first is not None and second is not None:
        text.append(_sample_sentence(sampled, first.chosen, _family(second), second.n_users))
    text += _baseline_sentences(ranked, tests, baseline)
    for c, who in ((first, "every test user"), (second, "the LM user sample")):
        if c is not None and c.mde is not None and math.isfinite(c.mde):
            text.append(
                f"Compared on {who} ({c.n_users} users), differences of about {c.mde:.3f} "
                f"NDCG@10 can be detected (paired test, alpha {ALPHA}, power 0.8); smaller "
                "true gaps will usually read as ties."
            )
    return text


def _entry(row: dict[str, Any], values: Values) -> Any:
    from llmrec.eval.choice import Entry

    return Entry(
        row["entry"],
        values[row["entry"]],
        latency_ms=_num(row.get("latency_p50_ms")),
        memory_mb=_num(row.get("peak_delta_mb")),
        lm_cost=_lm_cost(row),
    )


def _full_pairs(names: list[str], values: Values, baseline: str | None) -> list[tuple[str, str]]:
    """Tested with the choice on every test user: each entry against the best classic
    baseline, and the most accurate entries pairwise."""
    pairs = [(n, baseline) for n in names if baseline and n != baseline]
    top = sorted(names, key=lambda n: (-float(values[n].mean()), n))[:TOP_PAIRWISE]
    return pairs + [(a, b) for i, a in enumerate(top) for b in top[i + 1 :]]


def _family(choice: Any) -> list[dict[str, Any]]:
    """Every test of a choice's correction family as report rows (``entry`` minus
    ``versus``; ``p_holm`` is the corrected p-value)."""
    rows = [(v.name, choice.best, v.test, v.p_adjusted) for v in choice.versus]
    rows += [(p.entry, p.versus, p.test, p.p_adjusted) for p in choice.also]
    return [pair_row(a, b, t, p) for a, b, t, p in rows]


def _tied_sentence(choice: Any, by_name: dict[str, dict[str, Any]]) -> list[str]:
    """Which entries the data cannot tell apart from the best, each with its p-values."""
    tied = [v for v in choice.versus if v.tied]
    if not tied:
        return []
    parts = [
        f"{v.name} ({by_name[v.name]['paradigm']}, {v.test.mean_diff:+.4f}, "
        f"{fmt_p(v.test.p_value)}, {fmt_p(v.p_adjusted)} after Holm)"
        for v in sorted(tied, key=lambda v: -choice.means[v.name])
    ]
    return [
        f"Statistically tied with the best, {choice.best}, on all {choice.n_users} users: "
        + ", ".join(parts)
        + "."
    ]


def _find(tests: list[dict[str, Any]], a: str, b: str) -> dict[str, Any] | None:
    """The test of ``a`` minus ``b``; a test run the other way round is turned over."""
    for t in tests:
        if (t["entry"], t["versus"]) == (a, b):
            return t
        if (t["entry"], t["versus"]) == (b, a):
            flipped = {"entry": a, "versus": b, "diff": -t["diff"], "low": -t["high"]}
            flipped.update(high=-t["low"], effect_size=-t["effect_size"])
            return {**t, **flipped}
    return None


def _sample_sentence(
    sampled: list[dict[str, Any]], chosen: str, tests: list[dict[str, Any]], n: int
) -> str:
    parts = []
    for row in sampled:
        t = _find(tests, row["entry"], chosen)
        if t is None:
            continue
        verdict = "significantly" if t["significant"] else "not significantly"
        parts.append(
            f"{row['entry']} minus {chosen}: {t['diff']:+.4f} NDCG@10 (95% CI "
            f"[{t['low']:+.4f}, {t['high']:+.4f}], {fmt_p_pair(t)}), {verdict} different"
        )
    return f"On the {n}-user LM sample: " + "; ".join(parts) + "."


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
    reason = reason.removeprefix(f"{row['entry']} is chosen: ")
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


def _baseline_sentences(
    ranked: list[dict[str, Any]], tests: list[dict[str, Any]], baseline: str | None
) -> list[str]:
    """Per non-classic paradigm, its best entry against the best classic baseline."""
    if baseline is None:
        return []
    best: dict[str, dict[str, Any]] = {}
    for row in ranked:
        t = _find(tests, row["entry"], baseline)
        held = best.get(row["paradigm"])
        if t is None or row["paradigm"] == "classic":
            continue
        if held is None or t["diff"] > held["diff"]:
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
            f"d_z {t['effect_size']:+.2f}, {fmt_p_pair(t)}, on {t['n_users']} users)."
        )
    return out
