"""File-to-file batch jobs for production precompute: ``llmrec batch encode|tags|rank``.

A job reads a Parquet file, answers every row with an LM (or a saved model) and writes Parquet
parts into a folder, resumably (:mod:`llmrec.batch.output`). The engine decides where the
parts are answered: in this process (``local``, the reference, plain pyarrow) or by a pool of
Ray Data actors (``ray``: one block per part → ``map_batches`` with a callable class on an
``ActorPoolStrategy``, in :mod:`llmrec.engine._ray_batch`). Both run the same worker on the
same parts (:mod:`llmrec.batch.jobs`), so the outputs are bit-identical; answers travel with
their row and part numbers and are written by the driver in part order.

Example::

    job = EncodeJob(encoder="minilm-l6", id_column="item", item_template="{title} ({year})")
    manifest = run_batch(job, Path("items.parquet"), Path("out/vectors"))
    manifest["rows_this_run"], manifest["usage"]["calls"]
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmrec import progress
from llmrec._io import atomic_write_text, dumps_json
from llmrec.batch.jobs import EncodeJob, RankJob, TagsJob
from llmrec.engine import Engine, engine_for
from llmrec.errors import require
from llmrec.runtime import RuntimeOptions

if TYPE_CHECKING:
    import pyarrow as pa

    from llmrec.batch.output import BatchOutput

__all__ = ["EncodeJob", "RankJob", "TagsJob", "run_batch"]

#: (part index, its output rows in input order, the LM usage it added, the actor that answered)
PartResult = tuple[int, "pa.Table", dict[str, float], str]


def run_batch(
    job: EncodeJob | TagsJob | RankJob,
    source: Path,
    out: Path,
    *,
    runtime: RuntimeOptions | None = None,
    log: Callable[[str], None] = lambda _msg: None,
) -> dict[str, Any]:
    """Run ``job`` over the Parquet file ``source`` into the folder ``out`` on the engine
    ``runtime`` names (local by default); returns the manifest. A folder this job already
    completed is left as it is; one it began is resumed (only missing parts are computed)."""
    require("pyarrow", "parquet")
    from llmrec.batch.inputs import read_input
    from llmrec.batch.output import BatchOutput

    start = time.perf_counter()
    rows = read_input(source, job)
    output = BatchOutput(out, job, rows)
    if output.complete():
        log(f"{out} is complete already ({rows.n_parts} parts); nothing to do")
        return output.manifest()
    done = output.done()
    n_done = len(done)
    log(f"{job.kind}: {rows.n_parts - n_done} of {rows.n_parts} parts to compute")
    pending = rows.pending(set(done))
    engine = engine_for(runtime)
    used: dict[str, float] = {}
    actors: set[str] = set()
    # one bar for the job: the workers' own (an encoder's, a tagger's) stay silent under it
    with progress.phase(f"batch {job.kind}", pending.num_rows, unit="row") as bar:
        for index, table, usage, actor in _answers(engine, job, pending, runtime):
            output.write_part(index, table, usage)
            done[index] = usage
            _add(used, usage)
            actors.add(actor)
            bar.update(table.num_rows)
    extra = _finish_tags(job, output) if isinstance(job, TagsJob) else {}
    total: dict[str, float] = {}
    for usage in done.values():
        _add(total, usage)
    record = {
        "engine": {**engine.describe(), "actors_used": sorted(actors)},
        "rows": rows.rows.num_rows,
        "rows_this_run": pending.num_rows,
        "parts_this_run": rows.n_parts - n_done,
        "usage_this_run": used,
        "usage": total,
        "seconds_this_run": round(time.perf_counter() - start, 3),
        **extra,
    }
    manifest = output.finish(record)
    log(f"{out}: {pending.num_rows} rows computed, {rows.rows.num_rows} in all; complete")
    return manifest


def _answers(
    engine: Engine,
    job: EncodeJob | TagsJob | RankJob,
    pending: pa.Table,
    runtime: RuntimeOptions | None,
) -> Iterator[PartResult]:
    """Each pending part's answers, as the engine produces them."""
    if pending.num_rows == 0:
        return iter(())
    if engine.kind == "local":
        return _local_answers(job, pending, runtime)
    from llmrec.engine._ray import RayEngine
    from llmrec.engine._ray_batch import ray_answers

    assert isinstance(engine, RayEngine)
    return ray_answers(engine, job, pending)  # the actors get the engine's runtime options


def _local_answers(
    job: EncodeJob | TagsJob | RankJob, pending: pa.Table, runtime: RuntimeOptions | None
) -> Iterator[PartResult]:
    """The reference: parts one after another, through the worker a Ray actor would hold."""
    import numpy as np

    from llmrec.batch.inputs import PART, ROW
    from llmrec.batch.jobs import make_worker

    worker = make_worker(job, runtime)
    parts = pending.column(PART).to_numpy()
    starts = [0, *(np.flatnonzero(np.diff(parts)) + 1).tolist()]  # rows are in file order
    ends = [*starts[1:], len(parts)]
    for first, end in zip(starts, ends, strict=True):
        rows = pending.slice(first, end - first).drop_columns([ROW, PART])
        table, usage = worker(rows)
        yield int(parts[first]), table, usage, "local"


def _finish_tags(job: TagsJob, output: BatchOutput) -> dict[str, Any]:
    """The vocabulary, from every part's tags in part order (so every engine learns the same
    one), and each part's ``tags`` column: its tags that are in the vocabulary."""
    import pyarrow as pa

    from llmrec.batch.output import VOCABULARY
    from llmrec.paradigms.tokens.tags import build_vocabulary

    tables = [output.read_part(i) for i in range(output.n_parts)]
    parsed = [tags for t in tables for tags in t.column("parsed").to_pylist()]
    cfg = job.tags
    vocab = (
        job.vocabulary
        if job.vocabulary is not None
        else build_vocabulary(parsed, cfg.min_count, cfg.vocab_size)
    )
    allowed = set(vocab)
    for index, table in enumerate(tables):
        kept = [[t for t in tags if t in allowed] for tags in table.column("parsed").to_pylist()]
        column = pa.array(kept, type=pa.list_(pa.string()))
        if "tags" in table.column_names:
            table = table.drop_columns(["tags"])
        output.rewrite_part(index, table.add_column(1, "tags", column))
    atomic_write_text(output.folder / VOCABULARY, dumps_json(vocab))
    failed = sum(sum(t.column("failed").to_pylist()) for t in tables)
    return {"vocabulary": len(vocab), "failed": failed}


def _add(total: dict[str, float], usage: dict[str, float]) -> None:
    for key, value in usage.items():
        total[key] = total.get(key, 0.0) + value
