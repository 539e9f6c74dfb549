"""The comparison report: ``report.html`` (self-contained, offline) and ``report.json``.

:func:`render_report` reads a compare folder written by :func:`llmrec.compare.run_compare` —
``compare.json`` and each stage's ``record.json`` — and renders without recomputing anything.
Every table row and plot series names the run id of the record its numbers come from.

Example::

    html_path, json_path = render_report(Path("runs/compare-ml-100k"))
"""

from __future__ import annotations

from pathlib import Path

from llmrec._io import atomic_write_text, dumps_json
from llmrec.report.choose import PIPELINE_CHOICES, Constraints, choose
from llmrec.report.collect import build_report_data, summary_rows

__all__ = [
    "PIPELINE_CHOICES",
    "REPORT_HTML",
    "REPORT_JSON",
    "Constraints",
    "build_report_data",
    "choose",
    "render_report",
    "summary_rows",
]

REPORT_HTML = "report.html"
REPORT_JSON = "report.json"


def render_report(
    compare_dir: str | Path, constraints: Constraints | None = None
) -> tuple[Path, Path]:
    """Write ``report.html`` and ``report.json`` into ``compare_dir``; return their paths.

    ``constraints`` replace those stored by ``llmrec compare`` for the "which to choose" part.
    """
    from llmrec.report.html import render_html

    folder = Path(compare_dir)
    data = build_report_data(folder, constraints)
    json_path = folder / REPORT_JSON
    html_path = folder / REPORT_HTML
    atomic_write_text(json_path, dumps_json(data, sort_keys=True))
    atomic_write_text(html_path, render_html(data))
    return html_path, json_path
