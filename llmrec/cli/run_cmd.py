"""``llmrec run`` (fit and evaluate one model) and ``llmrec results`` (query past runs)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import yaml

from llmrec import paths
from llmrec._io import read_yaml_mapping
from llmrec.cli._format import (
    add_runtime,
    add_verbosity,
    print_json,
    runtime_flags,
    status,
    table,
)
from llmrec.config import validated
from llmrec.errors import ConfigError

SUMMARY_METRICS = ("ndcg@10", "recall@10", "mrr@10", "coverage")


def register(sub: argparse._SubParsersAction) -> None:
    run = sub.add_parser("run", help="fit a model on a dataset and evaluate it")
    run.add_argument("--model", help="registered model name or module:Class")
    run.add_argument("--dataset", help="ml-100k, synthetic:UxIxN or a CSV/Parquet path")
    run.add_argument("--config", type=Path, help="YAML or JSON file with a run config")
    run.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set params.epochs=5 --set eval.protocol=candidates",
    )
    run.add_argument("--seed", type=int)
    run.add_argument("--out", type=Path, default=None, help="parent folder of run folders")
    run.add_argument("--data-dir", type=Path, default=None)
    run.add_argument("--store", type=Path, default=None, help="results store (SQLite file)")
    run.add_argument("--json", action="store_true", help="print the run record as JSON")
    add_runtime(run)
    add_verbosity(run)
    run.set_defaults(
        func=cmd_run,
        interrupted=(
            "nothing was kept (a run folder is written only when the run ends); LM answers "
            "already computed are in the LM cache and will be reused: run the same command again"
        ),
    )

    res = sub.add_parser("results", help="list past runs from the results store")
    res.add_argument("--dataset")
    res.add_argument("--model")
    res.add_argument("--protocol")
    res.add_argument("--last", type=int, default=20)
    res.add_argument("--store", type=Path, default=None)
    res.add_argument("--json", action="store_true")
    res.set_defaults(func=cmd_results)


def build_config(args: argparse.Namespace) -> Any:
    from llmrec.experiment import RunConfig

    raw: dict[str, Any] = {}
    if args.config is not None:
        raw = load_config_file(args.config)
    if args.model:
        raw["model"] = args.model
    if args.dataset:
        raw["dataset"] = args.dataset
    if args.seed is not None:
        raw["seed"] = args.seed
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep or not all(key.split(".")):
            raise ConfigError(f"--set needs KEY=VALUE with a dotted KEY, got {item!r}")
        _assign(raw, key.split("."), _parse_value(value))
    flags = runtime_flags(args)
    if flags:
        raw["runtime"] = {**(raw.get("runtime") or {}), **flags}
    return validated(RunConfig, raw, "invalid run config")


def _parse_value(text: str) -> Any:
    """A ``--set`` value as YAML (numbers, lists, booleans), else the raw string: templates
    such as ``{title} ({year})`` are not valid YAML but are what the user meant."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def load_config_file(path: Path) -> dict[str, Any]:
    return read_yaml_mapping(path, "config file")


def _assign(target: dict[str, Any], keys: list[str], value: Any) -> None:
    for key in keys[:-1]:
        target = target.setdefault(key, {})
        if not isinstance(target, dict):
            raise ConfigError(f"cannot set {'.'.join(keys)}: {key} is not a mapping")
    target[keys[-1]] = value


def cmd_run(args: argparse.Namespace) -> int:
    from llmrec.experiment import default_run_dir, run_experiment
    from llmrec.results import ResultsStore

    config = build_config(args)
    run_dir = default_run_dir(args.out or paths.runs_dir(), config.model)
    store = ResultsStore(args.store or paths.results_db())
    record = run_experiment(
        config,
        run_dir=run_dir,
        store=store,
        data_dir=args.data_dir,
        log=status(args),
        verbose=args.verbose,
    )
    if args.json:
        print_json(record.__dict__)
        return 0
    rows = [
        {"metric": k, "value": v} for k, v in record.metrics.items() if not k.startswith("valid")
    ]
    print(table(rows))
    print(table([{"stage": k, "seconds": v} for k, v in record.timings.items()]))
    print(f"peak memory {record.peak_rss_mb:.0f} MiB; run folder {run_dir}")
    return 0


def _ci_cell(intervals: object, metric: str) -> str:
    """``[low, high]`` of a record's interval (``llmrec compare`` stores them), else ``-``."""
    cell = intervals.get(metric) if isinstance(intervals, dict) else None
    if not isinstance(cell, dict) or "low" not in cell or "high" not in cell:
        return "-"
    return f"[{float(cell['low']):.4f}, {float(cell['high']):.4f}]"


def cmd_results(args: argparse.Namespace) -> int:
    from llmrec.results import ResultsStore

    store = ResultsStore(args.store or paths.results_db())
    records = store.query(
        dataset=args.dataset, model=args.model, protocol=args.protocol, last=args.last
    )
    if args.json:
        print_json([r.__dict__ for r in records])
        return 0
    rows = []
    for r in records:
        row: dict[str, Any] = {
            "run": r.run_id,
            "dataset": r.dataset,
            "model": r.model,
            "protocol": r.protocol,
        }
        row.update({m: r.metrics.get(m, float("nan")) for m in SUMMARY_METRICS})
        if any(isinstance(x.extra.get("intervals"), dict) for x in records):
            row["ndcg@10 95% CI"] = _ci_cell(r.extra.get("intervals"), "ndcg@10")
        row["fit_s"] = r.timings.get("fit_s", float("nan"))
        rows.append(row)
    print(table(rows))
    return 0
