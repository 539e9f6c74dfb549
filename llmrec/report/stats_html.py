"""The report's statistics in HTML: the accuracy bar chart with 95% error bars, the paired
tests (against the best classic baseline, chosen against runner-up, against the shortcut floor)
and what the seeds and the sample size allow."""

from __future__ import annotations

from html import escape
from typing import Any

from llmrec.report import svg
from llmrec.report.choose_stats import fmt_p

__all__ = ["accuracy_bars", "ci_text", "render_statistics"]


def ci_text(row: dict[str, Any], key: str) -> str:
    """`` [low, high]`` of a row's interval for ``key`` (with the seeds when several), or ``""``."""
    cell = (row.get("ci") or {}).get(key)
    if not cell:
        return ""
    text = f"[{cell['low']:.4f}, {cell['high']:.4f}]"
    if cell.get("n_seeds", 1) > 1:
        text += f" {cell['n_seeds']} seeds, sd {cell.get('seed_std', 0.0):.4f}"
    return text


def accuracy_bars(data: dict[str, Any]) -> str:
    """NDCG@10 of each full-ranking entry with its 95% interval as an error bar."""
    plot = data["plots"]["accuracy_latency"]
    key = plot["y_key"]
    rows = [
        r
        for r in data["tables"]["accuracy"]["rows"]
        if r["protocol"] in ("full", "two-stage") and r.get(key) is not None
    ]
    groups = [r["entry"] for r in rows]
    errors = [[((r.get("ci") or {}).get(key) or {}).get(b) for b in ("low", "high")] for r in rows]
    label = "NDCG@10 (user sample)" if key.startswith("sample_") else "NDCG@10"
    return svg.bars(
        groups,
        [svg.Series(label, [r[key] for r in rows], "#4a7bb7")],
        title=f"{label} with 95% intervals",
        x_label="entry",
        y_label=label,
        empty_reason="no full-ranking entry finished",
        errors=[[(e[0], e[1]) for e in errors]],
    )


def _tests_table(pairs: list[dict[str, Any]], caption: str) -> str:
    if not pairs:
        return ""
    head = (
        '<tr><th class="l">entry</th><th class="l">versus</th><th>difference (NDCG@10)</th>'
        "<th>95% CI (unadjusted)</th><th>effect size d_z</th><th>p</th><th>p (Holm)</th>"
        '<th>users</th><th class="l">verdict</th></tr>'
    )
    body = "".join(
        f'<tr><td class="l">{escape(t["entry"])}</td><td class="l">{escape(t["versus"])}</td>'
        f"<td>{t['diff']:+.4f}</td><td>[{t['low']:+.4f}, {t['high']:+.4f}]</td>"
        f"<td>{t['effect_size']:+.2f}</td><td>{fmt_p(t['p'])}</td><td>{fmt_p(t['p_holm'])}</td>"
        f"<td>{t.get('n_users', '')}</td>"
        f'<td class="l">{"significant" if t["significant"] else "not significant"}</td></tr>'
        for t in pairs
    )
    return f'<p class="note">{escape(caption)}</p><table class="tests">{head}{body}</table>'


def _users_note(st: dict[str, Any]) -> str:
    note = (
        f" Entries scored on every test user are tested on all {st.get('compared_users', 0)} "
        "of them"
    )
    if st.get("sample_users"):
        note += (
            f"; entries that ran only on the LM user sample are tested on its "
            f"{st['sample_users']} users"
        )
    return note + (
        " (sign-flip randomisation test; the interval is unadjusted and matches p, Holm "
        "corrects p within each table and decides significance)."
    )


def render_statistics(data: dict[str, Any]) -> str:
    """The "Statistics" section."""
    st = data.get("statistics") or {}
    if not st.get("available"):
        return (
            '<h2>Statistics</h2><p class="note">Intervals and tests: not available — the '
            "stages of this folder kept no per-user arrays (written before they were kept). "
            "Run llmrec compare again to measure them.</p>"
        )
    seeds = st.get("seeds", 1)
    tests = st.get("tests") or {}
    floor = st.get("vs_floor") or {}
    mde = data["choice"].get("mde")
    sample_mde = data["choice"].get("sample_mde")
    parts = [
        "<h2>Statistics</h2>",
        f"<figure>{accuracy_bars(data)}<figcaption>Error bars: 95% bootstrap intervals over "
        "users (BCa), over users and seeds for entries run on several seeds.</figcaption>"
        "</figure>",
        f'<p class="note">Trainable entries ran on {seeds} seed(s)'
        + (
            " — one seed: the intervals cover user sampling only, not the spread from seed to "
            "seed (the quick preset; the full preset runs 3)."
            if seeds < 2
            else "; their intervals include the spread from seed to seed."
        )
        + _users_note(st)
        + (
            f" On every test user, differences below about {mde:.3f} NDCG@10 are hard to "
            "detect (power 0.8)."
            if isinstance(mde, int | float)
            else ""
        )
        + (
            f" On the LM user sample, differences below about {sample_mde:.3f} are."
            if isinstance(sample_mde, int | float)
            else ""
        )
        + "</p>",
        _tests_table(
            tests.get("pairs") or [],
            f"Every entry against the best classic baseline ({tests.get('baseline')}), the "
            "chosen entry against the runner-up, the most accurate entries pairwise, and each "
            "sampled LM entry against the choice.",
        ),
        _tests_table(
            floor.get("pairs") or [],
            f"Every entry against the shortcut floor ({floor.get('floor')}: recommend what most "
            "often followed the user's last item, no training).",
        ),
    ]
    return "\n".join(parts)
