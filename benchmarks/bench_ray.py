"""Scaling of the Ray engine on a latency-bound stage: direct ranking through the
OpenAI-compatible backend against a local fake server whose every answer takes a fixed time.

A 2-core machine cannot show CPU speed-up, so the stage is made latency-bound on purpose: each
``/completions`` request sleeps ``--delay-ms`` in the server (threaded, so requests overlap),
and the backend sends one request at a time (``concurrency=1``), so one actor ranks one user
per ``delay``. With ``n`` actors, ``n`` users are in flight at once. Measured, for the local
engine and 1, 2 and 4 actors on a private Ray instance:

* ``init_s`` — starting a private Ray instance (once per run);
* ``start_s`` — placing the LM's actors and loading the backend in each (once per run and
  LM: the pool is kept and shared);
* ``rank_s`` — ranking ``--users`` users with the delay; throughput in users/s;
* ``per_call_ms`` — the engine's own cost per LM call: the same ranking with a 0 ms server,
  minus the local engine's time, per call.

and a cost model checked against the measured points::

    rank_s ≈ users × delay / actors + calls × per_call / actors

Run (about a minute)::

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/bench_ray.py

Writes ``benchmarks/results/bench_ray.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np

from llmrec import engine
from llmrec.data.synthetic import synthetic
from llmrec.paradigms.direct import make_ranker
from llmrec.runtime import RuntimeOptions

RESULTS = Path(__file__).parent / "results" / "bench_ray.json"
ANSWER = json.dumps(
    {
        "choices": [{"index": 0, "text": " A",
                     "logprobs": {"top_logprobs": [{" A": -0.4, " B": -1.2, " C": -2.0}]}}],
        "usage": {"prompt_tokens": 50, "completion_tokens": 1},
    }
).encode()  # fmt: skip


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        time.sleep(self.server.delay_s)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(ANSWER)))
        self.end_headers()
        self.wfile.write(ANSWER)

    def log_message(self, *args: Any) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    delay_s = 0.0


def _rank(runtime: RuntimeOptions | None, url: str, users: int) -> tuple[float, float, int]:
    """(seconds to build the ranker's LM, seconds to rank ``users`` users, LM calls)."""
    data = synthetic(n_users=users, n_items=60, n_interactions=users * 10)
    ranker = make_ranker(
        {
            "kind": "verbaliser",
            "lm": f"openai:{url}#fake",
            "batch_size": 1,
            "lm_options": {"concurrency": 1, "max_retries": 0},
        }
    )
    ranker.runtime = runtime
    tic = time.perf_counter()
    ranker.fit(data)  # binding loads the LM: on Ray, places the actors and loads it in each
    start_s = time.perf_counter() - tic
    rng = np.random.default_rng(0)
    cands = np.stack([rng.choice(data.n_items, 10, replace=False) for _ in range(users)])
    tic = time.perf_counter()
    ranker.rank(np.arange(users), data.history(), cands)
    return start_s, time.perf_counter() - tic, ranker.stats.lm_calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=48)
    parser.add_argument("--delay-ms", type=float, default=100.0)
    parser.add_argument("--actors", type=int, nargs="+", default=[1, 2, 4])
    args = parser.parse_args()
    server = _Server(("127.0.0.1", 0), _Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    engines: list[tuple[str, RuntimeOptions | None]] = [("local", None)]
    for n in args.actors:
        rt = RuntimeOptions(engine="ray", ray_actors=n, ray_actor_cpus=0.5)
        engines.append((f"ray x{n}", rt))
    rows = []
    try:
        for name, rt in engines:
            server.delay_s = 0.0
            tic = time.perf_counter()
            engine.engine_for(rt).connect()
            init_s = time.perf_counter() - tic
            start_s, bare_s, calls = _rank(rt, url, args.users)
            server.delay_s = args.delay_ms / 1000.0
            _, rank_s, _ = _rank(rt, url, args.users)  # on the pool already placed
            rows.append({"engine": name, "actors": rt.ray_actors if rt else 1, "init_s": init_s,
                         "start_s": start_s,
                         "rank_s": rank_s, "bare_s": bare_s, "calls": calls,
                         "users_per_s": args.users / rank_s})  # fmt: skip
            engine.shutdown()  # each pool starts afresh, as in a new run
    finally:
        engine.shutdown()
        server.shutdown()
    _model(rows, args.users, args.delay_ms / 1000.0)
    _report(rows, args)


def _model(rows: list[dict[str, Any]], users: int, delay_s: float) -> None:
    """The engine's cost per call, from the 0 ms runs of the local engine and of one actor,
    and the cost model's prediction of each row's ranking time from those two runs alone:
    ``(local 0 ms time + users x delay + calls x per_call) / actors``."""
    local = rows[0]
    one = next((r for r in rows if r["engine"] == "ray x1"), None)
    per_call = max(0.0, one["bare_s"] - local["bare_s"]) / one["calls"] if one else 0.0
    for row in rows:
        cost = per_call if row is not local else 0.0
        row["per_call_ms"] = 1000.0 * cost
        row["model_s"] = (local["bare_s"] + users * delay_s + row["calls"] * cost) / row["actors"]
        row["speedup"] = local["rank_s"] / row["rank_s"]


def _report(rows: list[dict[str, Any]], args: argparse.Namespace) -> None:
    head = (
        f"{'engine':<8} {'init s':>7} {'start s':>8} {'rank s':>7} {'model s':>8} {'users/s':>8} "
    )
    print(head + f"{'speed-up':>8} {'per call ms':>11}")
    for r in rows:
        cells = f"{r['engine']:<8} {r['init_s']:>7.2f} {r['start_s']:>8.2f} {r['rank_s']:>7.2f} "
        cells += f"{r['model_s']:>8.2f} {r['users_per_s']:>8.1f} {r['speedup']:>8.2f} "
        print(cells + f"{r['per_call_ms']:>11.1f}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "users": args.users, "delay_ms": args.delay_ms, "rows": rows,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
    }, indent=2) + "\n")  # fmt: skip


if __name__ == "__main__":
    main()
