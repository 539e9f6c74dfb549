"""The output folder of a batch job: one Parquet file per part, a manifest, and ``_SUCCESS``.

::

    DIR/_llmrec_batch.json   the job, its input's fingerprint, state (running | complete), the
                             engine that ran, LM usage (this run and in all)
    DIR/part-00000.parquet   the answers of rows 0..part_rows-1, in input order; its schema
                             metadata holds the LM usage counters the part added
    DIR/_vocabulary.json     (tags) the controlled vocabulary
    DIR/_SUCCESS             written last: only a folder holding it is complete

Each part is written to a temporary name and renamed into place, so a part file is whole or
absent: an interrupted job leaves whole parts, and a rerun computes only the missing ones. A
folder made by another job (another config or another input) is refused, never mixed.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from llmrec._io import atomic_write_text, dumps_json, read_json_object
from llmrec.batch.inputs import BatchInput
from llmrec.batch.jobs import EncodeJob, RankJob, TagsJob
from llmrec.errors import ConfigError

__all__ = ["MANIFEST", "SUCCESS", "VOCABULARY", "BatchOutput"]

MANIFEST = "_llmrec_batch.json"
SUCCESS = "_SUCCESS"
VOCABULARY = "_vocabulary.json"
FORMAT = "llmrec-batch/1"
USAGE_KEY = b"llmrec.usage"


def part_name(index: int) -> str:
    return f"part-{index:05d}.parquet"


class BatchOutput:
    """The folder ``folder`` for ``job`` over ``source`` (see the module docstring)."""

    def __init__(
        self, folder: Path, job: EncodeJob | TagsJob | RankJob, source: BatchInput
    ) -> None:
        self.folder = folder
        self.identity = {
            "format": FORMAT,
            "job": job.model_dump(mode="json"),
            "input": {
                "rows": source.rows.num_rows,
                "parts": source.n_parts,
                "fingerprint": source.fingerprint,
            },
        }
        self.n_parts = source.n_parts
        self._claim()

    def _claim(self) -> None:
        """Create the folder, or check that it holds this job's output; then clear what an
        interrupted write left (temporary files)."""
        path = self.folder / MANIFEST
        if self.folder.exists() and not self.folder.is_dir():
            raise ConfigError(f"--out {self.folder} is a file, not a folder")
        if path.is_file():
            saved = read_json_object(path, "batch manifest")
            theirs = {k: saved.get(k) for k in self.identity}
            if theirs != self.identity:
                what = [k for k in ("job", "input") if theirs.get(k) != self.identity[k]]
                raise ConfigError(
                    f"--out {self.folder} holds the output of another job (its "
                    f"{' and '.join(what) or 'format'} differ); give another --out or delete it"
                )
        elif self.folder.exists() and any(self.folder.iterdir()):
            raise ConfigError(
                f"--out {self.folder} is not empty and holds no llmrec batch output "
                f"({MANIFEST} missing); give a new or empty folder"
            )
        else:
            self.folder.mkdir(parents=True, exist_ok=True)
            atomic_write_text(path, dumps_json({**self.identity, "state": "running"}))
        for leftover in self.folder.glob(".*.tmp"):
            leftover.unlink(missing_ok=True)

    def complete(self) -> bool:
        return (self.folder / SUCCESS).is_file()

    def manifest(self) -> dict[str, Any]:
        return read_json_object(self.folder / MANIFEST, "batch manifest")

    def done(self) -> dict[int, dict[str, float]]:
        """The parts already written, with the LM usage each added."""
        out = {}
        for index in range(self.n_parts):
            path = self.folder / part_name(index)
            if path.is_file():
                meta = pq.read_schema(path).metadata or {}
                out[index] = json.loads(meta.get(USAGE_KEY, b"{}"))
        return out

    def write_part(self, index: int, table: pa.Table, usage: dict[str, float]) -> None:
        """Part ``index`` (whole, or not at all)."""
        meta = {USAGE_KEY: dumps_json(usage).encode()}
        self._write(part_name(index), table.replace_schema_metadata(meta))

    def read_part(self, index: int) -> pa.Table:
        return pq.read_table(self.folder / part_name(index))

    def rewrite_part(self, index: int, table: pa.Table) -> None:
        """Part ``index`` replaced by ``table``, keeping its usage metadata."""
        meta = pq.read_schema(self.folder / part_name(index)).metadata
        self._write(part_name(index), table.replace_schema_metadata(meta))

    def _write(self, name: str, table: pa.Table) -> None:
        tmp = self.folder / f".{name}.{uuid.uuid4().hex[:8]}.tmp"
        try:
            pq.write_table(table, tmp)
            os.replace(tmp, self.folder / name)
        finally:
            tmp.unlink(missing_ok=True)

    def finish(self, record: dict[str, Any]) -> dict[str, Any]:
        """Mark the folder complete: the manifest with ``record`` added, then ``_SUCCESS``."""
        manifest = {**self.identity, "state": "complete", **record}
        atomic_write_text(self.folder / MANIFEST, dumps_json(manifest))
        atomic_write_text(self.folder / SUCCESS, "")
        return manifest
