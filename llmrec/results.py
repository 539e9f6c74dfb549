"""Run records and the results store.

Every run writes ``record.json`` into its run folder and appends the same record to one SQLite
file, which ``llmrec results`` queries. A record holds the config, metrics, per-stage timings,
peak memory, the environment and the git commit, so every number traces back to its run.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from llmrec._io import atomic_write_text

RECORD_FILE = "record.json"


@dataclass
class RunRecord:
    """One run: what was asked, what was measured, where and when."""

    run_id: str
    created: str
    dataset: str
    model: str
    protocol: str
    config: dict[str, Any]
    metrics: dict[str, float]
    timings: dict[str, float] = field(default_factory=dict)
    peak_rss_mb: float = 0.0
    environment: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True, default=_jsonable)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunRecord:
        return cls(**data)


def new_run_id(model: str) -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return f"{stamp}-{model}-{uuid.uuid4().hex[:6]}"


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def environment() -> dict[str, str]:
    """Python, platform, CPU count, package versions and git commit of this run."""
    env = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": str(os.cpu_count()),
        "git_commit": git_commit(),
    }
    for pkg in ("llmrec", "numpy", "torch", "transformers"):
        module = sys.modules.get(pkg)
        if module is not None:
            env[pkg] = str(getattr(module, "__version__", "?"))
    return env


def git_commit(cwd: Path | None = None) -> str:
    """The commit of the llmrec checkout (or ``unknown`` outside a git tree)."""
    where = cwd or Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    commit = out.stdout.strip()
    if out.returncode != 0 or not commit:
        return "unknown"
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"],
        cwd=where,
        capture_output=True,
        text=True,
        timeout=5,
    ).stdout.strip()
    return commit + ("+dirty" if dirty else "")


class StageTimer:
    """Collects wall-clock seconds per named stage: ``with timer("fit"): ...``."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[f"{stage}_s"] = self.seconds.get(f"{stage}_s", 0.0) + (
                time.perf_counter() - start
            )


def write_record(record: RunRecord, run_dir: Path) -> Path:
    """Write ``record.json`` atomically into ``run_dir``."""
    target = run_dir / RECORD_FILE
    atomic_write_text(target, record.to_json())
    return target


def read_record(run_dir: Path) -> RunRecord:
    return RunRecord.from_dict(json.loads((run_dir / RECORD_FILE).read_text()))


class ResultsStore:
    """An SQLite file of run records, queryable by dataset, model and protocol."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as con:
            con.execute(
                "CREATE TABLE IF NOT EXISTS runs ("
                " run_id TEXT PRIMARY KEY, created TEXT, dataset TEXT, model TEXT,"
                " protocol TEXT, metrics TEXT, record TEXT)"
            )

    def _connect(self) -> sqlite3.Connection:
        con = sqlite3.connect(self.path, timeout=30)
        con.execute("PRAGMA journal_mode=WAL")
        return con

    def add(self, record: RunRecord) -> None:
        with self._connect() as con:
            con.execute(
                "INSERT OR REPLACE INTO runs VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    record.run_id,
                    record.created,
                    record.dataset,
                    record.model,
                    record.protocol,
                    json.dumps(record.metrics, default=_jsonable),
                    record.to_json(),
                ),
            )

    def query(
        self,
        *,
        dataset: str | None = None,
        model: str | None = None,
        protocol: str | None = None,
        last: int | None = None,
    ) -> list[RunRecord]:
        """Records matching every given filter, newest first."""
        clauses, params = [], []
        for column, value in (("dataset", dataset), ("model", model), ("protocol", protocol)):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        sql = "SELECT record FROM runs"
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        sql += " ORDER BY created DESC, run_id DESC"
        if last is not None:
            sql += " LIMIT ?"
            params.append(str(int(last)))
        with self._connect() as con:
            rows = con.execute(sql, params).fetchall()
        return [RunRecord.from_dict(json.loads(r[0])) for r in rows]


def _jsonable(value: object) -> object:
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
