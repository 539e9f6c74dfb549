"""The report's validity section: invalid output, history-length sensitivity, the memorisation
probe, and the LM rankers' prompt and candidate-count sensitivity, gathered from the records
(``report.json`` → ``validity``) and drawn.

Nothing is recomputed: the stage measured each figure (:mod:`llmrec.compare.validity`).
"""

from __future__ import annotations

from html import escape
from typing import Any

from llmrec.report import svg

__all__ = ["render_validity", "validity_data"]

_RATES = [
    ("invalid_rate", "ids outside the catalogue (per slot)"),
    ("duplicate_rate", "duplicates (per slot)"),
    ("unparsable_rate", "unparsable answers (per user)"),
    ("hallucination_rate", "hallucinated titles (per candidate)"),
    ("short_list_rate", "short lists (per user)"),
]


def validity_data(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """``invalid_output`` rows (entries that can emit invalid output, or did), the
    ``history_length`` series, ``memorisation``, ``prompt_sensitivity`` and
    ``candidate_count`` rows, each with its entry's run id."""
    invalid, series, memo, prompt, counts = [], [], [], [], []
    for r in rows:
        extra = r["_extra"]
        base = {"entry": r["entry"], "paradigm": r["paradigm"], "run_id": r["run_id"]}
        inv = extra.get("invalid_output")
        if inv and (inv.get("can_emit") or any(inv.get(k) for k, _ in _RATES)):
            invalid.append({**base, **{k: inv.get(k) for k, _ in _RATES}})
        hist = extra.get("history_length")
        if hist:
            series.append({**base, "lengths": hist["lengths"], "ndcg": hist["ndcg"]})
        if extra.get("memorisation"):
            memo.append({**base, **extra["memorisation"]})
        if extra.get("prompt_sensitivity"):
            prompt.append({**base, **extra["prompt_sensitivity"]})
        if extra.get("candidate_count"):
            counts.append({**base, **extra["candidate_count"]})
    return {
        "invalid_output": invalid,
        "history_length": {"series": series},
        "memorisation": memo,
        "prompt_sensitivity": prompt,
        "candidate_count": counts,
    }


def render_validity(data: dict[str, Any]) -> str:
    """The HTML of the validity section (tables and the history-length curve)."""
    v = data.get("validity") or {}
    parts = ["<h2>Validity probes</h2>", '<h3 id="invalid-output">Invalid output</h3>']
    parts.append(_invalid_table(v.get("invalid_output") or []))
    parts.append('<h3 id="history-length">History-length sensitivity</h3>')
    chart = _history_chart(v.get("history_length") or {"series": []})
    parts.append(
        f"<figure>{chart}<figcaption>NDCG@10 on the probe users when each one's history is "
        "cut to its last L items (all = the whole history); a model that reads history should "
        "rise with L. Small probe samples: read the shape, not the third decimal."
        "</figcaption></figure>"
    )
    parts.append('<h3 id="memorisation">Memorisation (LM rankers)</h3>')
    parts.append(_memo_table(v.get("memorisation") or []))
    parts.append('<h3 id="prompt-sensitivity">Prompt sensitivity (LM rankers)</h3>')
    parts.append(_prompt_table(v.get("prompt_sensitivity") or []))
    parts.append('<h3 id="candidate-count">Candidate-count sensitivity (LM rankers)</h3>')
    parts.append(_count_table(v.get("candidate_count") or []))
    return "\n".join(parts)


def _fmt(value: Any) -> str:
    return "–" if value is None else f"{float(value):.4f}"


def _invalid_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return '<p class="note">No entry here can emit ids outside the catalogue, and none did.</p>'
    head = '<tr><th class="l">entry</th>' + "".join(f"<th>{escape(t)}</th>" for _, t in _RATES)
    body = "".join(
        f'<tr><td class="l">{escape(r["entry"])}</td>'
        + "".join(f"<td>{_fmt(r.get(k))}</td>" for k, _ in _RATES)
        + "</tr>"
        for r in rows
    )
    return (
        f"<table>{head}</tr>{body}</table>"
        '<p class="note">The evaluation drops invalid and repeated ids before scoring; these '
        "rates show how much of a list the model wasted.</p>"
    )


def _history_chart(plot: dict[str, Any]) -> str:
    series = plot["series"]
    lengths = series[0]["lengths"] if series else []
    ticks = [("all" if x == 0 else f"{x:g}") for x in lengths]
    lines = [
        svg.Series(
            s["entry"],
            [y if s["lengths"] == lengths else None for y in s["ndcg"]],
            svg.colour_of(s["paradigm"]),
            svg.dash_for(i),
        )
        for i, s in enumerate(series)
    ]
    return svg.lines(
        ticks,
        lines,
        title="History-length sensitivity",
        x_label="history items the model is given (last L)",
        y_label="NDCG@10",
        empty_reason="no history-length probe was run",
    )


def _memo_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return '<p class="note">No memorisation probe was run.</p>'
    head = (
        '<tr><th class="l">entry</th><th>users</th><th>candidates</th><th>mean rank, own '
        "history</th><th>no history</th><th>another user's</th><th>top-1 own</th>"
        "<th>top-1 none</th><th>top-1 other</th></tr>"
    )
    body = "".join(
        f'<tr><td class="l">{escape(r["entry"])}</td><td>{r["n_users"]:.0f}</td>'
        f"<td>{r['candidates']:.0f}</td><td>{r['own_mean_rank']:.2f}</td>"
        f"<td>{r['none_mean_rank']:.2f}</td><td>{r['other_mean_rank']:.2f}</td>"
        f"<td>{r['own_top1']:.2f}</td><td>{r['none_top1']:.2f}</td>"
        f"<td>{r['other_top1']:.2f}</td></tr>"
        for r in rows
    )
    return (
        f"<table>{head}{body}</table>"
        '<p class="note">The held-out item\'s rank among the probe candidates (1 = first; '
        "chance is the middle). If it ranks as well with no history or another user's as with "
        "the user's own, the LM is answering from what it knows of the items (memorised "
        "popularity or the data set itself), not from the user.</p>"
    )


def _prompt_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return '<p class="note">No prompt-sensitivity probe was run.</p>'
    names = list(dict.fromkeys(n for r in rows for n in r["variants"]))
    head = (
        '<tr><th class="l">entry</th><th>users</th><th>candidates</th>'
        + "".join(f"<th>{escape(n)}</th>" for n in names)
        + "<th>mean</th><th>spread (max − min)</th><th>SD</th></tr>"
    )
    body = ""
    for r in rows:
        by_name = dict(zip(r["variants"], r["ndcg"], strict=True))
        body += (
            f'<tr><td class="l">{escape(r["entry"])}</td><td>{r["n_users"]:.0f}</td>'
            f"<td>{r['candidates']:.0f}</td>"
            + "".join(f"<td>{_fmt(by_name.get(n))}</td>" for n in names)
            + f"<td>{_fmt(r['mean'])}</td><td>{_fmt(r['spread'])}</td><td>{_fmt(r['sd'])}</td></tr>"
        )
    return (
        f"<table>{head}{body}</table>"
        '<p class="note">NDCG@10 of each LM ranker on the probe users under paraphrases of its '
        "prompt (the same task, history and candidates; <em>default</em> is the entry's own "
        "prompt). A spread as large as the gaps between entries says the ranking follows the "
        "wording, not the user.</p>"
    )


def _count_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return '<p class="note">No candidate-count probe was run.</p>'
    head = (
        '<tr><th class="l">entry</th><th>candidates</th><th>NDCG@10</th><th>random order</th>'
        "<th>HR@10</th><th>random order</th><th>held-out item among them</th></tr>"
    )
    body = ""
    for r in rows:
        for i, n in enumerate(r["counts"]):
            body += (
                f'<tr><td class="l">{escape(r["entry"])}</td><td>{n:.0f}</td>'
                f"<td>{_fmt(r['ndcg'][i])}</td><td>{_fmt(r['random_ndcg'][i])}</td>"
                f"<td>{_fmt(r['hit'][i])}</td><td>{_fmt(r['random_hit'][i])}</td>"
                f"<td>{_fmt(r['recall'][i])}</td></tr>"
            )
        for n in r.get("skipped") or []:
            body += (
                f'<tr><td class="l">{escape(r["entry"])}</td><td>{n:.0f}</td>'
                f'<td colspan="5" class="l">not run: the prompt lists at most '
                f"{r['limit']:.0f} candidates</td></tr>"
            )
    return (
        f"<table>{head}{body}</table>"
        '<p class="note">NDCG@10 on the probe users when the LM orders n candidates (candidate '
        "protocol: the held-out item and n − 1 sampled items; two-stage: the retriever's top "
        "n). NDCG over n candidates falls as n grows for any ranker, so read each figure against "
        "a random order of the same candidates; the last column is the share of users whose "
        "held-out item was among them (the retriever's recall).</p>"
    )
