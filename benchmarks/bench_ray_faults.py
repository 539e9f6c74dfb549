"""What losing a worker node mid-job costs the Ray engine, with Ray's default node health
checks and with faster ones.

A 2-node cluster on this machine (head 127.0.0.2, worker 127.0.0.3, 3 logical CPUs each, as
``tests/engine/test_ray.py`` starts it) ranks ``--users`` users with the verbaliser on the
fake LM, two actors (one per node), 2 users per LM call. Each health-check setting gets a
fresh cluster and ranks twice: once undisturbed, once with the worker node SIGKILLed (its
``ray start``, raylet, agents and actor at once) after a quarter of the calls. Measured:

* ``job_s`` — the undisturbed ranking, and ``fault_job_s`` the one with the node removed;
* ``detect_s`` — from the kill until Ray marks the node dead (its health checks miss it);
* ``same`` — the faulted run's scores are the local engine's, bit for bit, and its LM calls
  (counted from the answers the driver received) are the local count: none lost or doubled.

Run (about a minute; it starts Ray, so under the Ray lock)::

    flock /tmp/llmrec-ray.lock env OMP_WAIT_POLICY=PASSIVE .venv/bin/python \\
        benchmarks/bench_ray_faults.py

Writes ``benchmarks/results/bench_ray_faults.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("RAY_AUTH_MODE", "token")  # before Ray is imported (docs/distributed.md)
os.environ.setdefault("RAY_AUTH_TOKEN", secrets.token_hex(16))

import numpy as np
import psutil
import ray

from llmrec import engine
from llmrec.data.splits import leave_one_out
from llmrec.data.synthetic import synthetic
from llmrec.lm._server import free_port
from llmrec.models.popularity import Popularity
from llmrec.paradigms.direct import TwoStage, make_ranker
from llmrec.runtime import RuntimeOptions

RESULTS = Path(__file__).parent / "results" / "bench_ray_faults.json"
REPO = Path(__file__).resolve().parents[1]
NODES = ("127.0.0.2", "127.0.0.3")
#: health-check settings compared: Ray's defaults, and a check every second with 5 misses
SETTINGS: dict[str, dict[str, str]] = {
    "Ray defaults": {},
    "1 s x 5": {"RAY_health_check_period_ms": "1000", "RAY_health_check_failure_threshold": "5"},
}


def _node(args: list[str], temp: Path, health: dict[str, str]) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(REPO), **health}
    cmd = [str(Path(sys.executable).parent / "ray"), "start", "--block", "--num-cpus=3",
           f"--temp-dir={temp}", "--disable-usage-stats", *args]  # fmt: skip
    with (temp / "node.log").open("ab") as log:
        return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)  # fmt: skip


def _kill(proc: subprocess.Popen[bytes], sig: int) -> None:
    """``sig`` to a node's every process: its workers sit in sessions of their own."""
    with contextlib.suppress(psutil.NoSuchProcess):
        root = psutil.Process(proc.pid)
        procs = [root, *root.children(recursive=True)]
        for p in procs:
            with contextlib.suppress(psutil.NoSuchProcess):
                p.send_signal(sig)
        _gone, alive = psutil.wait_procs(procs, timeout=5)
        for p in alive:
            with contextlib.suppress(psutil.NoSuchProcess):
                p.kill()


def _model(runtime: RuntimeOptions | None, split: Any) -> TwoStage:
    ranker = make_ranker({"kind": "verbaliser", "lm": "fake", "batch_size": 2})
    return TwoStage(Popularity(), ranker, n_candidates=10, runtime=runtime).fit(split.train)


def _rank(runtime: RuntimeOptions | None, split: Any, fault: Any = None) -> dict[str, Any]:
    """Rank every test user (``fault(lm)`` run in a thread once a quarter of the calls are
    answered); the scores, the LM calls counted and the time."""
    model = _model(runtime, split)
    users = split.test.active_users()
    calls = len(users) // 2
    out: dict[str, Any] = {}
    if fault is not None:
        lm = model.ranker.lm

        def when_busy() -> None:
            while lm.stats.calls < calls // 4:
                time.sleep(0.005)
            out.update(fault())

        threading.Thread(target=when_busy, daemon=True).start()
    tic = time.perf_counter()
    out["scores"] = model.score(users, split.train.history())
    out["job_s"] = time.perf_counter() - tic
    out["lm_calls"] = model.ranker.stats.lm_calls
    return out


def _remove_worker(worker: subprocess.Popen[bytes]) -> dict[str, Any]:
    """SIGKILL the worker node; the seconds until Ray marks it dead."""
    tic = time.perf_counter()
    _kill(worker, signal.SIGKILL)
    while sum(1 for n in ray.nodes() if n["Alive"]) > 1:
        time.sleep(0.1)
    return {"detect_s": time.perf_counter() - tic}


def _setting(name: str, health: dict[str, str], split: Any, local: dict[str, Any]) -> dict:
    temp = Path(tempfile.mkdtemp(prefix="llmrec-rf-", dir="/tmp"))
    address = f"{NODES[0]}:{free_port()}"
    head = _node(["--head", f"--node-ip-address={NODES[0]}", f"--port={address.split(':')[1]}",
                  "--include-dashboard=false"], temp, health)  # fmt: skip
    time.sleep(3.0)
    worker_temp = Path(tempfile.mkdtemp(dir=temp))
    worker = _node([f"--address={address}", f"--node-ip-address={NODES[1]}"], worker_temp, health)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with contextlib.suppress(ConnectionError):
                if not ray.is_initialized():
                    ray.init(address=address, logging_level="WARNING")
                if sum(1 for n in ray.nodes() if n["Alive"]) == 2:
                    break
            time.sleep(1.0)
        runtime = RuntimeOptions(engine="ray", ray_address=address, ray_actors=2)
        calm = _rank(runtime, split)
        engine.shutdown()  # a fresh pool, one actor per node again
        hit = _rank(runtime, split, fault=lambda: _remove_worker(worker))
        same = (
            np.array_equal(hit["scores"], local["scores"]) and hit["lm_calls"] == local["lm_calls"]
        )
        return {"health_checks": name, "env": health, "job_s": calm["job_s"],
                "fault_job_s": hit["job_s"], "detect_s": hit.get("detect_s"),
                "lm_calls": hit["lm_calls"], "same": bool(same)}  # fmt: skip
    finally:
        engine.shutdown()
        ray.shutdown()
        _kill(worker, signal.SIGKILL)
        _kill(head, signal.SIGTERM)
        shutil.rmtree(temp, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=1500)
    args = parser.parse_args()
    data = synthetic(n_users=args.users, n_items=120, n_interactions=args.users * 13)
    split = leave_one_out(data)
    local = _rank(None, split)
    rows = [_setting(name, health, split, local) for name, health in SETTINGS.items()]
    print(f"{'health checks':<14} {'job s':>6} {'with node lost s':>16} {'detect s':>8} "
          f"{'LM calls':>8} {'same':>5}")  # fmt: skip
    for r in rows:
        print(f"{r['health_checks']:<14} {r['job_s']:>6.2f} {r['fault_job_s']:>16.2f} "
              f"{r['detect_s']:>8.2f} {r['lm_calls']:>8} {r['same']!s:>5}")  # fmt: skip
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "users": args.users, "local_job_s": local["job_s"], "rows": rows,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
    }, indent=2) + "\n")  # fmt: skip


if __name__ == "__main__":
    main()
