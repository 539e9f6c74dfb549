"""Throughput of ``llmrec batch encode`` on the local engine and on Ray Data actors.

Writes ``--rows`` synthetic item texts (3 to 11 words) to a Parquet file, encodes them into a
fresh folder with each engine, and reports, per engine:

* ``init_s`` — starting a private Ray instance (0 for the local engine);
* ``job_s`` — the whole job after that: reading and checking the input, the actors' start and
  model load, encoding, writing the parts and the manifest;
* ``rows_per_s`` — rows / ``job_s``;
* ``identical`` — whether the output table equals the local engine's, bit for bit.

A 2-core machine shows the engine's overhead, not a speed-up (see ``bench_ray.py`` for
parallelism on a latency-bound stage). Run (the default 100,000 rows cost over a CPU-minute)::

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/bench_batch.py
    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/bench_batch.py --encoder minilm-l6 \
        --rows 10000

Adds its rows to ``benchmarks/results/bench_batch.json`` (keyed by encoder and rows) and
prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from llmrec import engine
from llmrec.batch import EncodeJob, run_batch
from llmrec.runtime import RuntimeOptions

RESULTS = Path(__file__).parent / "results" / "bench_batch.json"


def _texts(n: int) -> list[str]:
    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(2000)]
    return [" ".join(rng.choice(words, size=int(rng.integers(3, 12)))) for _ in range(n)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--encoder", default="fake:32")
    parser.add_argument("--part-rows", type=int, default=1024)
    parser.add_argument("--actors", type=int, nargs="+", default=[2])
    parser.add_argument("--actor-cpus", type=float, default=0.5)
    args = parser.parse_args()
    job = EncodeJob(encoder=args.encoder, part_rows=args.part_rows)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="llmrec-bench-batch-") as tmp:
        src = Path(tmp) / "items.parquet"
        pq.write_table(pa.table({"id": np.arange(args.rows), "text": _texts(args.rows)}), src)
        engines: list[tuple[str, RuntimeOptions | None]] = [("local", None)]
        for n in args.actors:
            rt = RuntimeOptions(engine="ray", ray_actors=n, ray_actor_cpus=args.actor_cpus)
            engines.append((f"ray x{n}", rt))
        reference = None
        try:
            for name, rt in engines:
                tic = time.perf_counter()
                engine.engine_for(rt).connect()
                init_s = time.perf_counter() - tic
                out = Path(tmp) / name.replace(" ", "")
                tic = time.perf_counter()
                manifest = run_batch(job, src, out, runtime=rt)
                job_s = time.perf_counter() - tic
                table = pq.read_table(out)
                reference = table if reference is None else reference
                rows.append({"engine": name, "actors": rt.ray_actors if rt else 1,
                             "init_s": init_s, "job_s": job_s, "rows_per_s": args.rows / job_s,
                             "lm_calls": manifest["usage"]["calls"],
                             "identical": table.equals(reference)})  # fmt: skip
                engine.shutdown()
        finally:
            engine.shutdown()
    _report(rows, args)


def _report(rows: list[dict[str, Any]], args: argparse.Namespace) -> None:
    print(f"encode {args.rows:,} texts with {args.encoder}, {args.part_rows} rows per part")
    print(f"{'engine':<8} {'init s':>7} {'job s':>7} {'rows/s':>8} {'LM calls':>8} identical")
    for r in rows:
        print(f"{r['engine']:<8} {r['init_s']:>7.2f} {r['job_s']:>7.2f} {r['rows_per_s']:>8.0f} "
              f"{r['lm_calls']:>8.0f} {r['identical']}")  # fmt: skip
    saved = json.loads(RESULTS.read_text()) if RESULTS.exists() else {"runs": {}}
    saved["runs"][f"{args.encoder} x {args.rows}"] = {
        "rows": args.rows, "encoder": args.encoder, "part_rows": args.part_rows,
        "actor_cpus": args.actor_cpus, "results": rows,
    }  # fmt: skip
    saved["machine"] = {"cpus": os.cpu_count(), "python": platform.python_version()}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(saved, indent=2) + "\n")


if __name__ == "__main__":
    main()
