"""Data-layer scale benchmark: load ten million interactions and split them leave-one-out.

Generates a synthetic data set once (default 200k users x 1M items x 10M interactions), writes
it to Parquet, then measures, each in a fresh subprocess so that peak RSS is that of one run:

* ``parquet``: ``read_parquet`` of the interactions file, then ``leave_one_out``;
* ``parquet+tables``: the same with the 1M-row item table (title, genres, year) and user table;
* ``frame``: ``from_frame`` on a pandas frame already in memory, then ``leave_one_out``;
* ``ml-100k``, ``ml-1m``: ``load_movielens_100k`` / ``load_movielens_1m`` from the cache;
* ``ml-1m+wikidata``: ``load_dataset("ml-1m+wikidata")``: ML-1M plus the film-table join
  (the MovieLens cases are skipped when the data is not cached; nothing is fetched).

Wall times are medians of ``--repeats`` runs; peak RSS is ``ru_maxrss`` of the child. The bars:
load + split < 60 s and peak RSS < 4 GB (ML-1M: < 10 s). Prints a table and writes
``benchmarks/results/bench_data.json``; a run of some ``--cases`` replaces only their rows.

Run:  .venv/bin/python benchmarks/bench_data.py [--repeats 3] [--workdir /tmp/llmrec-bench-data]
      .venv/bin/python benchmarks/bench_data.py --cases ml-1m ml-1m+wikidata --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results" / "bench_data.json"
BAR_SECONDS = 60.0
BAR_RSS_MB = 4096.0
#: ML-1M's own bar: load + leave-one-out split well under 10 s
BAR_ML1M_SECONDS = 10.0
SYNTHETIC_CASES = ("parquet", "parquet+tables", "frame")
CACHED_CASES = ("ml-100k", "ml-1m", "ml-1m+wikidata")


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def child(case: str, workdir: Path, data_dir: Path | None) -> dict[str, Any]:
    """One measured run (in its own process)."""
    from llmrec.data import (
        from_frame,
        leave_one_out,
        load_dataset,
        load_movielens_1m,
        load_movielens_100k,
        read_parquet,
    )
    from llmrec.data.loaders import side_paths

    inter = workdir / "synthetic.parquet"
    items, users = side_paths(inter)
    frame = None
    if case == "frame":
        import pandas as pd

        frame = pd.read_parquet(inter)
    t0 = time.perf_counter()
    if case == "parquet":
        data = read_parquet(inter)
    elif case == "parquet+tables":
        data = read_parquet(inter, items=items, users=users)
    elif case == "frame":
        data = from_frame(frame)
    elif case == "ml-100k":
        data = load_movielens_100k(data_dir, fetch=False)
    elif case == "ml-1m":
        data = load_movielens_1m(data_dir, fetch=False)
    elif case == "ml-1m+wikidata":
        data = load_dataset(case, data_dir=data_dir, fetch=False)
    else:
        raise SystemExit(f"unknown case {case}")
    t1 = time.perf_counter()
    split = leave_one_out(data)
    t2 = time.perf_counter()
    return {
        "interactions": data.n_interactions,
        "users": data.n_users,
        "items": data.n_items,
        "test_users": len(split.test),
        "load_s": t1 - t0,
        "split_s": t2 - t1,
        "total_s": t2 - t0,
        "peak_rss_mb": _peak_rss_mb(),
    }


def generate(workdir: Path, users: int, items: int, interactions: int) -> dict[str, Any]:
    """Write the synthetic Parquet files once (reused when the spec matches)."""
    from llmrec.data import synthetic, write_parquet

    spec = {"users": users, "items": items, "interactions": interactions, "seed": 0}
    spec_file = workdir / "spec.json"
    if spec_file.is_file() and json.loads(spec_file.read_text()).get("spec") == spec:
        return dict(json.loads(spec_file.read_text()))
    workdir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    data = synthetic(users, items, interactions, seed=0)
    t1 = time.perf_counter()
    write_parquet(data, workdir / "synthetic.parquet")
    t2 = time.perf_counter()
    info = {
        "spec": spec,
        "generate_s": t1 - t0,
        "write_parquet_s": t2 - t1,
        "generate_peak_rss_mb": _peak_rss_mb(),
        "parquet_mb": sum(p.stat().st_size for p in workdir.glob("*.parquet")) / 2**20,
    }
    spec_file.write_text(json.dumps(info, indent=2))
    return info


def run_child(args: list[str]) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, __file__, *args], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"child {args} failed:\n{done.stderr}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def measure(case: str, size: list[str], args: argparse.Namespace) -> dict[str, Any] | None:
    """Median of ``args.repeats`` fresh-process runs of one case (None: data not cached)."""
    extra = ["--data-dir", str(args.data_dir)] if args.data_dir else []
    runs = []
    for _ in range(args.repeats):
        try:
            runs.append(run_child([*size, *extra, "--child", case]))
        except SystemExit as exc:
            if case in CACHED_CASES:  # not cached here: skip rather than fetch
                print(f"skipping {case}: {str(exc).splitlines()[-1]}", file=sys.stderr)
                return None
            raise
        print(f"{case}: {runs[-1]['total_s']:.1f}s", file=sys.stderr)
    row: dict[str, Any] = {"case": case, "interactions": runs[0]["interactions"]}
    row["repeats"] = len(runs)
    for key in ("load_s", "split_s", "total_s", "peak_rss_mb"):
        row[key] = statistics.median(r[key] for r in runs)
        row[f"{key}_all"] = [round(r[key], 3) for r in runs]
    bar_s = BAR_ML1M_SECONDS if case.startswith("ml-1m") else BAR_SECONDS
    row["meets_bars"] = row["total_s"] < bar_s and row["peak_rss_mb"] < BAR_RSS_MB
    return row


def merged(previous: Path, rows: list[dict[str, Any]], gen: Any) -> tuple[list[Any], Any]:
    """The rows of this run in place of the same cases in ``previous``'s results, the others
    kept; the previous generation figures when this run generated nothing."""
    if not previous.is_file():
        return rows, gen
    old = json.loads(previous.read_text())
    fresh = {r["case"]: r for r in rows}
    kept = [fresh.pop(r["case"], r) for r in old.get("results", [])]
    return kept + list(fresh.values()), gen if gen is not None else old.get("generation")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=200_000)
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--interactions", type=int, default=10_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/llmrec-bench-data"))
    parser.add_argument("--data-dir", type=Path, default=None, help="cache root for MovieLens")
    parser.add_argument(
        "--cases",
        nargs="+",
        choices=[*SYNTHETIC_CASES, *CACHED_CASES],
        default=[*SYNTHETIC_CASES, *CACHED_CASES],
        help="which cases to run (default: all)",
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--generate", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        print(json.dumps(child(args.child, args.workdir, args.data_dir)))
        return
    if args.generate:
        print(json.dumps(generate(args.workdir, args.users, args.items, args.interactions)))
        return

    size = ["--users", str(args.users), "--items", str(args.items)]
    size += ["--interactions", str(args.interactions), "--workdir", str(args.workdir)]
    gen = None
    if any(case in SYNTHETIC_CASES for case in args.cases):
        print(f"generating synthetic data in {args.workdir} (once) ...", file=sys.stderr)
        gen = run_child([*size, "--generate"])

    rows = [row for case in args.cases if (row := measure(case, size, args)) is not None]
    print(f"\nload + leave-one-out split, median of {args.repeats} (fresh process each)")
    header = f"{'case':<16}{'interactions':>14}{'load s':>9}{'split s':>9}{'total s':>9}"
    print(header + f"{'peak RSS MB':>13}  bars")
    for r in rows:
        print(
            f"{r['case']:<16}{r['interactions']:>14,}{r['load_s']:>9.2f}{r['split_s']:>9.2f}"
            f"{r['total_s']:>9.2f}{r['peak_rss_mb']:>13,.0f}  "
            f"{'met' if r['meets_bars'] else 'MISSED'}"
        )
    if gen is not None:
        print(
            f"generation: {gen['generate_s']:.1f}s, write Parquet {gen['write_parquet_s']:.1f}s, "
            f"peak RSS {gen['generate_peak_rss_mb']:,.0f} MB, files {gen['parquet_mb']:.0f} MB"
        )
    import numpy
    import pandas

    all_rows, generation = merged(args.out, rows, gen)
    result = {
        "benchmark": "bench_data",
        "bars": {
            "total_s": BAR_SECONDS,
            "ml-1m_total_s": BAR_ML1M_SECONDS,
            "peak_rss_mb": BAR_RSS_MB,
        },
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "numpy": numpy.__version__,
            "pandas": pandas.__version__,
        },
        "generation": generation,
        "results": all_rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
