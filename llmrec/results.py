"""Run records and the results store.

Every run writes ``record.json`` into its run folder and appends the same record to one SQLite
file, which ``llmrec results`` queries. A record holds the config, metrics, per-stage timings,
peak memory, the environment and the git commit, so every number traces back to its run.
"""

from __future__ import annotations

import json
import math
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
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from llmrec._io import atomic_write_text, dumps_json, read_json_object
from llmrec.errors import ConfigError

RECORD_FILE = "record.json"


@dataclass
class RunRecord:
    """One run: what was asked, what was measured, where and when.

    An undefined metric (``cold_users_ndcg@10`` when no test user is cold) is ``NaN`` here and
    ``null`` in every JSON file; :meth:`from_dict` reads ``null`` back as ``NaN``.
    """

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
        """The record as strict JSON (undefined numbers are ``null``)."""
        return dumps_json(asdict(self), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunRecord:
        """A record from its JSON object, checked field by field (a ``ValueError`` names the
        first missing or mistyped field); ``null`` metrics and timings become ``NaN``."""
        kept = _checked_fields(data)
        for name in ("metrics", "timings"):
            if name in kept:
                kept[name] = {str(k): _number(f"{name}.{k}", v) for k, v in kept[name].items()}
        if "peak_rss_mb" in kept:
            kept["peak_rss_mb"] = _number("peak_rss_mb", kept["peak_rss_mb"])
        return cls(**kept)


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
    """The ``record.json`` of ``run_dir``; a one-line :class:`ConfigError` naming the file when
    it is missing, not JSON or not a run record."""
    path = run_dir / RECORD_FILE
    return record_from_dict(read_json_object(path, "run record"), str(path))


def record_from_dict(data: dict[str, Any], where: str) -> RunRecord:
    """:meth:`RunRecord.from_dict`, its failure a one-line :class:`ConfigError` naming ``where``."""
    try:
        return RunRecord.from_dict(data)
    except ValueError as exc:
        raise ConfigError(f"{where} is not a run record: {exc}") from None


def _checked_fields(data: dict[str, Any]) -> dict[str, Any]:
    """The record fields of ``data`` (unknown keys dropped), each present when required and of
    its JSON type; a ``ValueError`` names the first that is not."""
    kept = {}
    for f in fields(RunRecord):
        if f.name not in data:
            if f.default is MISSING and f.default_factory is MISSING:
                raise ValueError(f"{f.name}: missing")
            continue
        value, expected = data[f.name], _FIELD_TYPES[f.name]
        if not isinstance(value, expected) or isinstance(value, bool):
            raise ValueError(f"{f.name}: expected {_type_names(expected)}")
        kept[f.name] = value
    return kept


_FIELD_TYPES: dict[str, type | tuple[type, ...]] = {
    "run_id": str,
    "created": str,
    "dataset": str,
    "model": str,
    "protocol": str,
    "config": dict,
    "metrics": dict,
    "timings": dict,
    "peak_rss_mb": (int, float, type(None)),
    "environment": dict,
    "extra": dict,
}


def _type_names(expected: type | tuple[type, ...]) -> str:
    if expected is dict:
        return "an object"
    return "a string" if expected is str else "a number"


def _number(where: str, value: Any) -> float:
    """A metric or timing value: a number, ``null`` (undefined, read as ``NaN``)."""
    if value is None:
        return math.nan
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{where}: expected a number or null, got {type(value).__name__}")
    return value


class ResultsStore:
    """An SQLite file of run records, queryable by dataset, model and protocol.

    A path that is a folder, a file that is not SQLite or a damaged database is a one-line
    :class:`ConfigError` naming the file, raised when the store is opened (before any work).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if self.path.is_dir():
            raise ConfigError(f"results store {self.path} is a folder; give an SQLite file path")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(
                f"cannot create the folder of results store {self.path}: {exc.strerror or exc}"
            ) from None
        with self._connect() as con:
            con.execute(
                "CREATE TABLE IF NOT EXISTS runs ("
                " run_id TEXT PRIMARY KEY, created TEXT, dataset TEXT, model TEXT,"
                " protocol TEXT, metrics TEXT, record TEXT)"
            )
            check = con.execute("PRAGMA quick_check").fetchone()
            if check is None or check[0] != "ok":
                raise sqlite3.DatabaseError(f"integrity check failed ({check and check[0]})")

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        """A connection committed on success; any SQLite failure becomes a one-line
        :class:`ConfigError` naming the file."""
        try:
            con = sqlite3.connect(self.path, timeout=30)
            try:
                with con:
                    con.execute("PRAGMA journal_mode=WAL")
                    yield con
            finally:
                con.close()
        except sqlite3.Error as exc:
            raise ConfigError(
                f"results store {self.path} is not a usable SQLite database ({exc}); "
                "pass --store with another file or move this one away"
            ) from None

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
                    dumps_json(record.metrics, indent=None),
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
        sql = "SELECT run_id, record FROM runs"
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        sql += " ORDER BY created DESC, run_id DESC"
        if last is not None:
            sql += " LIMIT ?"
            params.append(str(int(last)))
        with self._connect() as con:
            rows = con.execute(sql, params).fetchall()
        return [self._row_record(run_id, text) for run_id, text in rows]

    def _row_record(self, run_id: str, text: str) -> RunRecord:
        where = f"results store {self.path}, run {run_id}"
        try:
            data = json.loads(text)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{where}: the record is not valid JSON ({exc})") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{where}: the record is not a JSON object")
        return record_from_dict(data, where)
