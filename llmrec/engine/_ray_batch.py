"""Batch jobs on Ray Data: every Ray Data call llmrec makes is in this module (a sibling of
:mod:`llmrec.engine._ray`, which holds the Ray Core calls and the connection).

The pending rows (those of parts not yet written) become a dataset of one block per part,
then::

    from_arrow(parts) → map_batches(_PartActor, batch_size=None, compute=ActorPoolStrategy(n))

so each actor call receives one whole part: the rows the local engine gives its worker in one
call (another cut changes an encoder's padding and the last bits: ``docs/distributed.md``).
The actor runs the same worker the local engine runs and returns the answers with ``_row``,
``_part`` and a note (the usage the part added, the actor, the rows it saw). The driver
streams the answers back (``iter_batches``), regroups them by part (Ray does not keep
order), checks that each part reached its actor whole, and hands it to the output folder,
which writes it atomically. The driver writes and actors write nothing, so a part Ray retries
after a crash is answered twice and written once.

Why not ``read_parquet`` and ``write_parquet``: the driver reads the input anyway (its checks,
its fingerprint, the parts already done), Ray 2.60's Parquet reader bundles small files into
one read task (one actor would answer every part) and cuts blocks where it likes, and parts
written by actors could not be renamed into place whole, which resuming relies on.
"""

from __future__ import annotations

import itertools
import json
import os
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import numpy as np
import pyarrow as pa
import ray
import ray.data
from ray.data import ActorPoolStrategy

from llmrec.batch.inputs import PART, ROW
from llmrec.batch.jobs import EncodeJob, RankJob, TagsJob, job_from_json, make_worker
from llmrec.engine._ray import RayEngine, _first_line
from llmrec.errors import BackendError, ConfigError, LlmrecError
from llmrec.runtime import RuntimeOptions

__all__ = ["ray_answers"]

USAGE = "_usage"


class _PartActor:
    """One Ray Data actor: the job's worker, loaded once, answering one part per call."""

    def __init__(self, job: dict[str, Any], runtime: dict[str, Any]) -> None:
        self.worker = make_worker(job_from_json(job), RuntimeOptions.model_validate(runtime))
        self.where = f"{ray.util.get_node_ip_address()}:{os.getpid()}"

    def __call__(self, batch: pa.Table) -> pa.Table:
        out = []
        for rows in _by_part(batch):
            answer, usage = self.worker(rows.drop_columns([ROW, PART]))
            note = json.dumps({"usage": usage, "actor": self.where, "rows": rows.num_rows})
            out.append(
                answer.append_column(ROW, rows.column(ROW))
                .append_column(PART, rows.column(PART))
                .append_column(USAGE, pa.array([note] * rows.num_rows, pa.string()))
            )
        return pa.concat_tables(out)


def _by_part(batch: pa.Table) -> Iterator[pa.Table]:
    """The parts in ``batch`` (normally one: a staged file is one block), each in row order."""
    batch = batch.sort_by([(PART, "ascending"), (ROW, "ascending")])
    parts = batch.column(PART).to_numpy()
    starts = [0, *(np.flatnonzero(np.diff(parts)) + 1).tolist(), len(parts)]
    for first, end in itertools.pairwise(starts):
        yield batch.slice(first, end - first)


def ray_answers(
    engine: RayEngine, job: EncodeJob | TagsJob | RankJob, pending: pa.Table
) -> Iterator[tuple[int, pa.Table, dict[str, float], str]]:
    """Each pending part's answers (rows in input order), its usage and the actor that
    answered, as parts complete on ``engine``'s cluster (see the module docstring)."""
    engine.connect()
    rt = engine.runtime
    _check_room(rt.ray_actors * rt.ray_actor_cpus)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    # one block per part, so one actor call per part: the local call boundaries
    answers = ray.data.from_arrow(list(_by_part(pending))).map_batches(
        _PartActor,
        batch_size=None,
        fn_constructor_args=(job.model_dump(mode="json"), rt.model_dump(mode="json")),
        compute=ActorPoolStrategy(size=rt.ray_actors),
        batch_format="pyarrow",
        num_cpus=rt.ray_actor_cpus,
        num_gpus=rt.ray_actor_gpus,
    )
    expected = dict(zip(*np.unique(pending.column(PART).to_numpy(), return_counts=True),
                        strict=True))  # fmt: skip
    waiting: dict[int, list[pa.Table]] = defaultdict(list)
    try:
        for batch in answers.iter_batches(batch_format="pyarrow", batch_size=None):
            yield from _whole_parts(batch, waiting, expected)
    except ray.exceptions.RayError as exc:
        raise _job_error(exc) from None


def _whole_parts(
    batch: pa.Table, waiting: dict[int, list[pa.Table]], expected: dict[Any, Any]
) -> Iterator[tuple[int, pa.Table, dict[str, float], str]]:
    """The parts ``batch`` completes: Ray may hand back a part's rows in several batches."""
    parts = batch.column(PART).to_numpy()
    for index in np.unique(parts).tolist():
        waiting[index].append(batch.filter(pa.array(parts == index)))
        if sum(t.num_rows for t in waiting[index]) < expected[index]:
            continue
        rows = pa.concat_tables(waiting.pop(index)).sort_by(ROW)
        note = json.loads(rows.column(USAGE)[0].as_py())
        if note["rows"] != expected[index]:  # never seen: a block Ray split in two
            raise BackendError(
                f"ray: part {index} reached an actor in pieces ({note['rows']} of "
                f"{expected[index]} rows), so its answers could differ from the local run's; "
                "run it again, or with --engine local"
            )
        yield index, rows.drop_columns([ROW, PART, USAGE]), note["usage"], note["actor"]


def _check_room(actor_cpus: float) -> None:
    """Ray Data hangs when its actors hold every CPU (ray#44687): leave one for its tasks."""
    total = float(ray.cluster_resources().get("CPU", 0.0))
    if actor_cpus > total - 1:
        raise ConfigError(
            f"ray: the batch actors would reserve {actor_cpus:g} of the cluster's {total:g} "
            "CPUs; leave at least one for Ray Data's read tasks (lower --ray-actors or "
            "--ray-actor-cpus)"
        )


def _job_error(exc: Exception) -> LlmrecError:
    """A failed Ray Data job as one line: the worker's own error when it raised one."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, LlmrecError):
        return cause
    return BackendError(f"ray: the batch job failed: {_first_line(exc)}")
