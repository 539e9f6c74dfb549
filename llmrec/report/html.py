"""The self-contained HTML page of a comparison: inline CSS and SVG, no script, no network."""

from __future__ import annotations

import math
from html import escape
from typing import Any

from llmrec.report import svg
from llmrec.report.choose import bias_of
from llmrec.report.stats_html import ci_text, render_statistics
from llmrec.report.validity import render_validity

__all__ = ["render_html"]

_PALETTE = ["#d62728", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22"]

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;
max-width:1180px;color:#222;padding:0 16px}
h1{margin-bottom:4px}h2{margin-top:32px;border-bottom:1px solid #ddd;padding-bottom:4px}
.meta{color:#555;font-size:14px}
table{border-collapse:collapse;font-size:13px;margin:8px 0 4px}
th,td{border:1px solid #ddd;padding:4px 8px;text-align:right}
th{background:#f4f4f4}td.l,th.l{text-align:left}
.choice{background:#f3f8f3;border:1px solid #bcd9bc;padding:12px 16px;border-radius:6px}
.choice.none{background:#fbf3f3;border-color:#e0bcbc}
.plots{display:flex;flex-wrap:wrap;gap:16px}
figure{margin:0;border:1px solid #eee;padding:6px;flex:1 1 520px;max-width:660px}
svg.chart{width:100%;height:auto}
figcaption{font-size:12px;color:#555;max-width:640px}
.status-unavailable,.status-failed{color:#a33}.status-disabled{color:#888}
.run{font-family:ui-monospace,monospace;font-size:11px;color:#666}
.note{font-size:13px;color:#555}
.ci{display:block;font-size:10px;color:#666;white-space:nowrap}
"""


def render_html(data: dict[str, Any]) -> str:
    """The page for a report's data (what :func:`~llmrec.report.collect.build_report_data`
    returns)."""
    ds = data.get("dataset", {})
    split = data.get("split", {})
    title = f"llmrec compare — {ds.get('name', '?')}"
    meta = (
        f"{ds.get('n_users', '?')} users, {ds.get('n_items', '?')} items, "
        f"{ds.get('n_interactions', '?')} interactions; split {split.get('kind', '?')} "
        f"({split.get('test_users', '?')} test users); seed "
        f"{data.get('config', {}).get('seed', '?')}; report generated {data.get('generated', '')}"
    )
    body = [
        f"<h1>{escape(title)}</h1>",
        f'<p class="meta">{escape(meta)}</p>',
        _choice(data["choice"]),
        "<h2>Trade-offs at a glance</h2>",
        _plots(data),
        "<h2>Accuracy</h2>",
        _table(data["tables"]["accuracy"]),
        '<p class="note">Full and two-stage entries rank the whole catalogue; candidate entries '
        "rank 1 held-out item among sampled negatives (a different scale). Cold items: the held-"
        "out item had few training interactions; cold users: few known interactions.</p>",
        render_statistics(data),
        "<h2>Efficiency</h2>",
        _table(data["tables"]["efficiency"]),
        '<p class="note">Latency: single-user calls on a seeded user sample, one warm-up call '
        "excluded. Throughput: users per second in the batched evaluation. Memory: the peak "
        "resident memory the stage added. LM calls and tokens: per 1,000 recommendation lists "
        "at serving time; tokens in fit are the offline cost; – where no LM backend was reachable "
        "from the fitted model (none, or released after fitting).</p>",
        "<h2>Bias</h2>",
        _table(data["tables"]["bias"]),
        '<p class="note">Position spread: max - min NDCG@10 with the held-out item moved across '
        "candidate slots (0 = order-blind). Popularity lift: mean training popularity of the "
        "recommendations over the catalogue mean. Fairness SNSR: max - min Jaccard@K of the "
        "lists under each attribute value against a neutral profile (LM rankers only).</p>",
        render_validity(data),
        "<h2>Pipeline compatibility</h2>",
        _pipeline(data),
        "<h2>Stages and provenance</h2>",
        _stages(data),
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title>"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<style>{_CSS}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n"
    )


def _choice(choice: dict[str, Any]) -> str:
    cls = "choice" if choice.get("recommended") else "choice none"
    head = (
        f"Which to choose: <b>{escape(choice['recommended'])}</b> ({escape(choice['paradigm'])})"
        if choice.get("recommended")
        else "Which to choose: no entry fits"
    )
    constraints = {k: v for k, v in choice.get("constraints", {}).items() if v is not None}
    items = "".join(f"<li>{escape(s)}</li>" for s in choice.get("explanation", []))
    given = ", ".join(f"{k}={v}" for k, v in constraints.items()) or "none"
    return (
        f'<h2>Which to choose</h2><div class="{cls}"><p><b>{head}</b></p>'
        f'<p class="note">Constraints: {escape(given)}. Re-render with others: '
        "<code>llmrec report DIR --latency-budget-ms 50 --max-bias 0.1</code>.</p>"
        f"<ul>{items}</ul></div>"
    )


def _plots(data: dict[str, Any]) -> str:
    p = data["plots"]
    figures = [
        (
            _accuracy_latency(p["accuracy_latency"]),
            "Accuracy against per-user latency (p50, log scale), with 95% intervals as error "
            "bars. Up and to the left is better.",
        ),
        (
            _position(p["position_bias"]),
            "NDCG@10 with the held-out item at each candidate slot; "
            "a flat line means the ranking ignores order.",
        ),
        (
            _popularity(p["popularity"]),
            "Where the top-10 recommendations fall among the catalogue's"
            " popularity deciles; the catalogue line is 10% each, the interactions line is where "
            "users' training interactions fall.",
        ),
        (
            _fairness(p["fairness"]),
            "FaiRLLM: similarity (Jaccard@K) of the lists under each "
            "attribute value to the neutral-profile lists; 1 = the attribute changes nothing.",
        ),
    ]
    return (
        '<div class="plots">'
        + "".join(
            f"<figure>{chart}<figcaption>{escape(caption)}</figcaption></figure>"
            for chart, caption in figures
        )
        + "</div>"
    )


def _accuracy_latency(plot: dict[str, Any]) -> str:
    pts = [
        (p["entry"], p["latency_p50_ms"], p["y"], svg.colour_of(p["paradigm"]))
        for p in plot["points"]
    ]
    errors = [(p.get("y_low"), p.get("y_high")) for p in plot["points"]]
    label = "NDCG@10 (user sample)" if plot["y_key"].startswith("sample_") else "NDCG@10"
    present = sorted({p["paradigm"] for p in plot["points"]})
    return svg.scatter(
        pts,
        title="Accuracy vs latency",
        x_label="per-user latency p50 (ms, log scale)",
        y_label=label,
        legend=[(name, svg.colour_of(name)) for name in present],
        empty_reason="no full-ranking entry finished",
        errors=errors,
    )


def _position(plot: dict[str, Any]) -> str:
    series = plot["series"]
    slots = series[0]["slots"] if series else []
    lines = [
        svg.Series(
            s["entry"],
            [v if s["slots"] == slots else None for v in s["ndcg"]],
            svg.colour_of(s["paradigm"]),
            svg.dash_for(i),
        )
        for i, s in enumerate(series)
    ]
    return svg.lines(
        [str(x + 1) for x in slots],
        lines,
        title="Position bias: NDCG@10 by candidate slot",
        x_label="slot of the held-out item (1 = first)",
        y_label="NDCG@10",
        empty_reason="no position probe was run",
    )


def _popularity(plot: dict[str, Any]) -> str:
    series = [
        svg.Series(s["entry"], s["decile_share"], svg.colour_of(s["paradigm"]), svg.dash_for(i))
        for i, s in enumerate(plot["series"])
    ]
    if plot.get("catalogue_share"):
        series.append(svg.Series("catalogue", plot["catalogue_share"], "#000000", "3 3"))
        series.append(svg.Series("interactions", plot["interaction_share"], "#999999", "1 3"))
    return svg.lines(
        [str(d) for d in range(1, 11)],
        series,
        title="Popularity of recommendations vs catalogue",
        x_label="item popularity decile (1 = least popular tenth, 10 = most)",
        y_label="share of top-10 items",
        empty_reason="no recommendations recorded",
    )


def _fairness(plot: dict[str, Any]) -> str:
    series_in = plot["series"]
    groups: list[str] = []
    for s in series_in:
        groups += [
            f"{s['attribute']}={v}" for v in s["jaccard"] if f"{s['attribute']}={v}" not in groups
        ]
    bars = []
    for i, s in enumerate(series_in):
        lookup = {f"{s['attribute']}={v}": x for v, x in s["jaccard"].items()}
        bars.append(
            svg.Series(
                f"{s['entry']} ({s['attribute']})",
                [lookup.get(g) for g in groups],
                _PALETTE[i % len(_PALETTE)],
            )
        )
    return svg.bars(
        groups,
        bars,
        title="Fairness: similarity to neutral-profile lists",
        x_label="sensitive attribute value",
        y_label="Jaccard@K vs neutral",
        empty_reason="no LM ranker was probed for fairness",
    )


def _fmt(value: Any, key: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if key == "vs_floor":
        return f"{value:+.4f}"
    if key == "vs_floor_p":
        return "p<0.001" if value < 0.001 else f"p={value:.2g}"
    if key in ("size_bytes", "tune_bytes"):
        return _bytes(float(value)) if value else "–"
    if key in (
        "n_users",
        "cold_items_n_users",
        "lm_calls_per_1k",
        "lm_tokens_per_1k",
        "fit_lm_tokens",
        "tune_tokens",
        "peak_delta_mb",
        "throughput_users_s",
    ):
        return f"{value:,.0f}"
    if key.endswith("_ms") or key.endswith("_s"):
        return f"{value:.1f}" if value < 1000 else f"{value:,.0f}"
    return f"{value:.4f}"


def _bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def _table(table: dict[str, Any]) -> str:
    cols = table["columns"]
    if not table["rows"]:
        return '<p class="note">No finished entries.</p>'
    head = '<tr><th class="l">entry</th><th class="l">paradigm</th><th class="l">protocol</th>'
    head += "".join(f"<th>{escape(c['title'])}</th>" for c in cols) + '<th class="l">run</th></tr>'
    rows = []
    for r in table["rows"]:
        cells = "".join(
            f"<td>{_fmt(r.get(c['key']), c['key'])}{_ci(r, c['key'])}</td>" for c in cols
        )
        users = " (sample)" if r.get("evaluated_users") == "sample" else ""
        rows.append(
            f'<tr><td class="l">{escape(r["entry"])}</td><td class="l">{escape(r["paradigm"])}'
            f'</td><td class="l">{escape(r["protocol"])}{users}</td>{cells}'
            f'<td class="l run">{escape(r["run_id"])}</td></tr>'
        )
    return f"<table>{head}{''.join(rows)}</table>"


def _ci(row: dict[str, Any], key: str) -> str:
    text = ci_text(row, key)
    return f'<span class="ci">{escape(text)}</span>' if text else ""


def _pipeline(data: dict[str, Any]) -> str:
    rows_by_entry = {r["entry"]: r for r in data["tables"]["bias"]["rows"]}
    bias_rows = data["tables"]["bias"]["rows"]
    meaning = {
        "nothing new (no LM)": "a conventional model; no language model anywhere",
        "offline job only": "an LM runs in a batch job; its output (vectors, codes) joins the "
        "existing tables and serving model",
        "new index": "an LM batch job plus a vector index to build, ship and query",
        "new serving model": "an LM (or a new decoder) in the request path, with its latency "
        "and cost per request",
    }
    head = (
        '<tr><th class="l">entry</th><th class="l">paradigm</th><th class="l">needs</th>'
        '<th class="l">what that means</th><th>bias</th></tr>'
    )
    rows = []
    for stage in data["stages"]:
        row = rows_by_entry.get(stage["name"])
        full = next((r for r in bias_rows if r["entry"] == stage["name"]), None)
        bias = bias_of(full) if full else None
        rows.append(
            f'<tr><td class="l">{escape(stage["name"])}</td><td class="l">'
            f'{escape(stage["paradigm"])}</td><td class="l">{escape(stage["pipeline"])}</td>'
            f'<td class="l">{escape(meaning.get(stage["pipeline"], ""))}</td>'
            f"<td>{_fmt(bias, 'bias') if row else '–'}</td></tr>"
        )
    return f"<table>{head}{''.join(rows)}</table>"


def _stages(data: dict[str, Any]) -> str:
    head = (
        '<tr><th class="l">entry</th><th class="l">model</th><th class="l">status</th>'
        '<th>seconds</th><th class="l">run id / reason</th><th class="l">record</th></tr>'
    )
    rows = []
    for s in data["stages"]:
        detail = s.get("run_id") or s.get("reason") or ""
        rows.append(
            f'<tr><td class="l">{escape(s["name"])}</td><td class="l">{escape(s["model"])}</td>'
            f'<td class="l status-{escape(s["status"])}">{escape(s["status"])}</td>'
            f"<td>{float(s.get('seconds') or 0):.1f}</td>"
            f'<td class="l">{escape(str(detail))}</td>'
            f'<td class="l run">{escape(s.get("record") or "")}</td></tr>'
        )
    note = (
        '<p class="note">Every number above is copied from the record.json named here (its '
        "run id is in each row); report.json lists them too. Unavailable entries could not be "
        "built in this installation; the reason says why.</p>"
    )
    return f"<table>{head}{''.join(rows)}</table>{note}"
