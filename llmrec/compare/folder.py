"""The compare folder's format: ``compare.json`` (a typed :class:`Manifest`), one folder per
stage under ``stages/`` with its ``record.json`` and saved ``model/``.

The one module that :mod:`llmrec.report` and :mod:`llmrec.serve` read a compare folder through.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from llmrec._io import atomic_write_text, dumps_json, read_json_object
from llmrec.config import StrictConfig, validated
from llmrec.data.dataset import Dataset
from llmrec.data.splits import Split
from llmrec.models.catalogue import Paradigm
from llmrec.results import RunRecord, record_from_dict

__all__ = [
    "ENTRY_NAME",
    "ERROR_FILE",
    "MANIFEST_FILE",
    "MODEL_DIR",
    "Manifest",
    "StageLine",
    "StageStatus",
    "iter_records",
    "read_manifest",
    "stage_dir",
    "write_manifest",
]

MANIFEST_FILE = "compare.json"
ERROR_FILE = "error.txt"
#: the fitted model inside a stage folder (what `llmrec serve COMPARE_DIR` loads)
MODEL_DIR = "model"
#: an entry's name: a stage's folder name (no separators or ``..``: it stays inside the folder)
ENTRY_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"


def stage_dir(out_dir: Path, name: str) -> Path:
    """The folder of stage ``name`` inside the compare folder ``out_dir``."""
    return out_dir / "stages" / name


class StageStatus(StrictConfig):
    """One line of ``compare.json``: what happened to an entry.

    ``status`` is ``done`` (run now), ``cached`` (an earlier record reused), ``unavailable``
    (the model cannot be built here: ``reason`` says why), ``failed`` or ``disabled``.
    """

    name: str
    paradigm: str
    model: str
    protocol: str
    pipeline: str
    status: Literal["done", "cached", "unavailable", "failed", "disabled"]
    reason: str = ""
    run_id: str | None = None
    record: str | None = None
    seconds: float = 0.0
    key: str = ""
    seeds: list[int] = Field(default_factory=list)


class StageLine(BaseModel):
    """A stage line as read back (lenient: fields a reader does not need may be missing)."""

    model_config = ConfigDict(extra="ignore")

    name: str = Field(pattern=ENTRY_NAME, max_length=64)
    paradigm: Paradigm
    protocol: str
    status: str
    model: str = ""
    pipeline: str = ""
    reason: str = ""
    run_id: str | None = None
    record: str | None = None
    seconds: float = 0.0
    key: str = ""
    #: seeds with stored per-user arrays, the stage's own first (empty in older folders)
    seeds: list[int] = Field(default_factory=list)

    @property
    def finished(self) -> bool:
        return self.status in ("done", "cached")


class Manifest(BaseModel):
    """``compare.json``: the config, dataset and split summaries, the user's constraints and
    one line per stage."""

    model_config = ConfigDict(extra="ignore")

    config: dict[str, Any] = Field(default_factory=dict)
    dataset: dict[str, Any] = Field(default_factory=dict)
    split: dict[str, Any] = Field(default_factory=dict)
    constraints: dict[str, Any] = Field(default_factory=dict)
    stages: list[StageLine] = Field(default_factory=list)
    updated: str = ""
    elapsed_s: float = 0.0

    @property
    def dataset_source(self) -> str:
        """The dataset name or path the comparison ran on (what serving loads)."""
        return str(self.config.get("dataset") or self.dataset.get("name") or "ml-100k")


def write_manifest(
    out_dir: Path,
    config: BaseModel,
    data: Dataset,
    split: Split,
    statuses: list[StageStatus],
    constraints: dict[str, Any] | None,
    started: float,
) -> None:
    """Write ``compare.json``; constraints not given are kept from the previous one."""
    previous = read_manifest(out_dir) if (out_dir / MANIFEST_FILE).is_file() else None
    kept = previous.constraints if previous is not None else {}
    manifest = {
        "config": config.model_dump(mode="json"),
        "dataset": {
            "name": data.name,
            "n_users": data.n_users,
            "n_items": data.n_items,
            "n_interactions": data.n_interactions,
        },
        "split": {"kind": split.kind, "test_users": len(split.test.active_users())},
        "constraints": constraints if constraints is not None else kept,
        "stages": [s.model_dump(mode="json") for s in statuses],
        "updated": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "elapsed_s": time.perf_counter() - started,
    }
    atomic_write_text(out_dir / MANIFEST_FILE, dumps_json(manifest, sort_keys=True))


def read_manifest(out_dir: Path) -> Manifest:
    """The :class:`Manifest` of a compare folder; a one-line :class:`ConfigError` naming the
    file when it is missing, not JSON, or malformed (the field in question named)."""
    from llmrec.errors import ConfigError

    path = out_dir / MANIFEST_FILE
    if not path.exists():
        raise ConfigError(f"{out_dir} is not a compare folder ({MANIFEST_FILE} missing)")
    raw = read_json_object(path, "compare manifest")
    return validated(Manifest, raw, f"invalid compare manifest {path}")


def iter_records(out_dir: Path) -> Iterator[tuple[dict[str, Any], RunRecord | None]]:
    """Each stage line of ``compare.json`` (as a mapping) with its record (``None`` when it
    has none)."""
    for stage in read_manifest(out_dir).stages:
        record = None
        if stage.record:
            path = out_dir / stage.record
            if path.is_file():
                record = record_from_dict(read_json_object(path, "stage record"), str(path))
        yield stage.model_dump(mode="json"), record
