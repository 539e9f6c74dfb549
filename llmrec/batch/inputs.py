"""The input of a batch job: a Parquet file, read and checked once on the driver.

Every fault a user can make with the input file is a one-line :class:`~llmrec.errors.DataError`
naming the file: not there, not Parquet, no rows, a missing column, a missing or repeated id,
a user index the model does not know. The checked rows carry ``_row`` (their position in the
file) and ``_part`` (``_row // part_rows``): Ray Data does not keep order, so every answer is
put back by these, never by arrival.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from llmrec.batch.jobs import EncodeJob, RankJob, TagsJob
from llmrec.errors import DataError

__all__ = ["BatchInput", "read_input"]

ROW, PART = "_row", "_part"


@dataclass(frozen=True)
class BatchInput:
    """The rows a job reads (only the columns it needs, plus ``_row`` and ``_part``).

    Attributes:
        path: the file.
        rows: the rows, in file order.
        part_rows: rows per part (the last part may have fewer).
        n_parts: parts the rows make.
        fingerprint: sha256 of the columns read: a changed input is another job.
    """

    path: Path
    rows: pa.Table
    part_rows: int
    n_parts: int
    fingerprint: str

    def part(self, index: int) -> pa.Table:
        """The rows of part ``index``."""
        return self.rows.slice(index * self.part_rows, self.part_rows)

    def pending(self, done: set[int]) -> pa.Table:
        """The rows of every part not in ``done``."""
        mask = pc.invert(pc.is_in(self.rows.column(PART), pa.array(sorted(done), pa.int64())))
        return self.rows.filter(mask)


def read_input(path: Path, job: EncodeJob | TagsJob | RankJob) -> BatchInput:
    """The checked rows of ``path`` that ``job`` reads (see the module docstring)."""
    if not path.is_file():
        what = "is a folder" if path.is_dir() else "does not exist"
        raise DataError(f"the input {what}", file=str(path))
    columns = job.input_columns()
    try:
        schema = pq.read_schema(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataError(f"not a Parquet file ({_first_line(exc)})", file=str(path)) from None
    missing = [c for c in columns if c not in schema.names]
    if missing:
        raise DataError(
            f"no column {missing[0]!r} (the file has {', '.join(schema.names) or 'none'})",
            file=str(path),
        )
    table = pq.read_table(path, columns=columns)
    if table.num_rows == 0:
        raise DataError("no rows", file=str(path))
    _check_ids(table, job.id_column, path)
    if isinstance(job, RankJob) and job.dataset is not None:
        _check_user_ids(table.column(job.user_column), job, path)
    elif isinstance(job, RankJob):
        _check_users(table.column(job.user_column), Path(job.model), path, job.user_column)
    n = table.num_rows
    rows = np.arange(n, dtype=np.int64)
    table = table.append_column(ROW, pa.array(rows)).append_column(
        PART, pa.array(rows // job.part_rows)
    )
    parts = -(-n // job.part_rows)
    return BatchInput(path, table, job.part_rows, parts, _fingerprint(table, columns))


def _check_ids(table: pa.Table, column: str, path: Path) -> None:
    ids = table.column(column)
    if ids.null_count:
        row = pc.index(pc.is_null(ids), True).as_py()
        raise DataError("an empty id", file=str(path), row=row, column=column)
    counts = pc.value_counts(ids).flatten()
    repeated = pc.filter(counts[0], pc.greater(counts[1], 1))
    if len(repeated):
        raise DataError(
            f"id {repeated[0].as_py()!r} appears more than once (ids must be unique)",
            file=str(path),
            column=column,
        )


def _check_users(users: pa.ChunkedArray, model: Path, path: Path, column: str) -> None:
    from llmrec.models.saved import read_saved_meta

    n_users = read_saved_meta(model).n_users
    if not pa.types.is_integer(users.type):
        raise DataError(
            f"user indices must be integers, not {users.type}", file=str(path), column=column
        )
    values = users.to_numpy()
    bad = np.flatnonzero((values < 0) | (values >= n_users))
    if len(bad):
        raise DataError(
            f"user {values[bad[0]]} is not in the model (it knows users 0..{n_users - 1})",
            file=str(path),
            row=int(bad[0]),
            column=column,
        )


def _check_user_ids(users: pa.ChunkedArray, job: RankJob, path: Path) -> None:
    """Every user id of a rank job with a dataset is one of the dataset's users."""
    from llmrec.batch.jobs import rank_dataset
    from llmrec.data.dataset import coerce_id

    data = rank_dataset(job)
    known = set(data.user_ids.tolist())
    for row, user in enumerate(users.to_pylist()):
        if coerce_id(user, data.user_ids) not in known:
            raise DataError(
                f"user {user!r} is not in {job.dataset}",
                file=str(path),
                row=row,
                column=job.user_column,
            )


def _fingerprint(table: pa.Table, columns: list[str]) -> str:
    digest = hashlib.sha256()
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.select(columns).schema) as writer:
        writer.write_table(table.select(columns).combine_chunks())
    digest.update(sink.getvalue().to_pybytes())
    return digest.hexdigest()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
