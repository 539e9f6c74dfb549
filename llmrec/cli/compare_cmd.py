"""``llmrec compare`` (run the paradigms side by side, resumable) and ``llmrec report``
(re-render a compare folder's report from its stored records, without recomputing)."""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

from llmrec import paths
from llmrec.cli._format import add_runtime, add_verbosity, print_json, runtime_flags, status, table
from llmrec.config import validated
from llmrec.errors import ConfigError


def register(sub: argparse._SubParsersAction) -> None:
    cmp_ = sub.add_parser(
        "compare",
        help="run the classic baselines and the three LM paradigms side by side, with a report",
        description="Each entry is a cached stage: run the same command again to resume.",
    )
    cmp_.add_argument("--dataset", help="ml-100k, synthetic:UxIxN or a CSV/Parquet path")
    cmp_.add_argument(
        "--config", type=Path, help="YAML compare config (start from llmrec/compare/presets/)"
    )
    cmp_.add_argument(
        "--quick", action="store_true", help="the quick preset (user samples, fewer epochs)"
    )
    cmp_.add_argument(
        "--preset",
        metavar="NAME",
        help="a shipped preset: quick (= --quick), full (the default) or ml-1m (MovieLens-1M)",
    )
    cmp_.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="ENTRY",
        help="run only these entries (repeatable)",
    )
    cmp_.add_argument("--seed", type=int)
    cmp_.add_argument(
        "--out", type=Path, help="compare folder (default runs/compare-DATASET-PRESET)"
    )
    cmp_.add_argument("--data-dir", type=Path)
    cmp_.add_argument("--store", type=Path, help="results store (SQLite) to add records to")
    _constraint_args(cmp_)
    cmp_.add_argument("--json", action="store_true", help="print the summary as JSON")
    add_runtime(cmp_)
    add_verbosity(cmp_)
    cmp_.set_defaults(
        func=cmd_compare,
        interrupted=(
            "finished stages are kept in the compare folder and the stage under way is "
            "dropped; run the same command again to resume from the next stage"
        ),
    )

    rep = sub.add_parser("report", help="re-render report.html/report.json of a compare folder")
    rep.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    _constraint_args(rep)
    rep.add_argument("--json", action="store_true", help="print the choice as JSON")
    rep.set_defaults(func=cmd_report)


def _constraint_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("constraints for 'which to choose'")
    g.add_argument("--latency-budget-ms", type=float, help="p95 per-user latency budget (ms)")
    g.add_argument(
        "--max-bias", type=float, help="largest position spread / fairness SNSR allowed (0..1)"
    )
    g.add_argument("--min-ndcg", type=float, help="NDCG@10 at least")
    g.add_argument("--max-memory-mb", type=float, help="peak memory a model may add (MiB)")
    g.add_argument(
        "--max-popularity-lift",
        type=float,
        help="recommendations at most this many times as popular as the catalogue",
    )
    g.add_argument(
        "--pipeline",
        choices=["none", "offline", "index", "serving"],
        help="the largest change your system can take",
    )
    g.add_argument("--prefer", choices=["accuracy", "cold-start"])


def _constraints(args: argparse.Namespace, stored: dict[str, Any] | None = None) -> Any:
    from llmrec.report import Constraints

    raw = dict(stored or {})
    for field in Constraints.model_fields:
        value = getattr(args, field, None)
        if value is not None:
            raw[field] = value
    return validated(Constraints, raw, "invalid constraint")


def build_compare_config(args: argparse.Namespace) -> tuple[Any, str]:
    """The compare config and a short label of its source (for the default folder name)."""
    from llmrec.compare import load_compare_config, preset_config

    chosen = [
        flag
        for flag, given in (
            ("--config", args.config is not None),
            ("--quick", args.quick),
            ("--preset", args.preset is not None),
        )
        if given
    ]
    if len(chosen) > 1:
        raise ConfigError(f"give one of --config, --quick and --preset, not {' and '.join(chosen)}")
    overrides: dict[str, Any] = {}
    if args.dataset:
        overrides["dataset"] = args.dataset
    if args.seed is not None:
        overrides["seed"] = args.seed
    if args.config is not None:
        label = args.config.stem
        config = load_compare_config(args.config, overrides)
    else:
        label = "quick" if args.quick else args.preset or "full"
        config = preset_config(label, overrides)
    flags = runtime_flags(args)
    if flags:
        config = config.model_copy(update={"runtime": config.runtime.replace(**flags)})
    if args.only:
        names = {e.name for e in config.entries}
        unknown = sorted(set(args.only) - names)
        if unknown:
            raise ConfigError(f"unknown entries {unknown}; the config has {sorted(names)}")
        for entry in config.entries:
            entry.enabled = entry.enabled and entry.name in args.only
    return config, label


def cmd_compare(args: argparse.Namespace) -> int:
    from llmrec.compare import run_compare
    from llmrec.report import render_report
    from llmrec.results import ResultsStore

    config, label = build_compare_config(args)
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", config.dataset).strip("-")
    out = args.out or paths.runs_dir() / f"compare-{slug}-{label}"
    constraints = _constraints(args)
    store = ResultsStore(args.store or paths.results_db())
    statuses = run_compare(
        config,
        out,
        data_dir=args.data_dir,
        store=store,
        log=status(args),
        constraints=constraints.model_dump(mode="json"),
    )
    html_path, json_path = render_report(out, constraints)
    return _print_summary(out, html_path, json_path, [s.model_dump() for s in statuses], args)


def cmd_report(args: argparse.Namespace) -> int:
    from llmrec.compare import read_manifest
    from llmrec.report import render_report

    manifest = read_manifest(args.run_dir)
    constraints = _constraints(args, manifest.constraints)
    html_path, json_path = render_report(args.run_dir, constraints)
    stages = [s.model_dump(mode="json") for s in manifest.stages]
    return _print_summary(args.run_dir, html_path, json_path, stages, args)


def _print_summary(
    out: Path,
    html_path: Path,
    json_path: Path,
    stages: list[dict[str, Any]],
    args: argparse.Namespace,
) -> int:
    import json

    data = json.loads(json_path.read_text())
    if args.json:
        print_json(
            {
                "compare_dir": str(out),
                "report_html": str(html_path),
                "report_json": str(json_path),
                "stages": stages,
                "choice": data["choice"],
            }
        )
        return 0
    acc = {r["entry"]: r for r in data["tables"]["accuracy"]["rows"]}
    eff = {r["entry"]: r for r in data["tables"]["efficiency"]["rows"]}
    rows = []
    for s in stages:
        a, e = acc.get(s["name"], {}), eff.get(s["name"], {})
        rows.append(
            {
                "entry": s["name"],
                "paradigm": s["paradigm"],
                "protocol": s["protocol"],
                "status": s["status"],
                "ndcg@10": _nan(a.get("ndcg@10")),
                "cold ndcg@10": _nan(a.get("cold_items_ndcg@10")),
                "p95 ms": _nan(e.get("latency_p95_ms")),
                "needs": s["pipeline"],
            }
        )
    print(table(rows))
    for s in stages:
        if s["status"] in ("unavailable", "failed"):
            print(f"{s['name']}: {s['status']}: {s['reason']}")
    print()
    for sentence in data["choice"]["explanation"]:
        print(f"- {sentence}")
    print(f"\nreport: {html_path}\ndata:   {json_path}")
    return 0


def _nan(value: Any) -> float:
    return float("nan") if value is None else float(value)
