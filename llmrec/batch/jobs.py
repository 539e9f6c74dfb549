"""What a batch job computes: its config, and the worker that turns one part of the input into
one part of the output.

A *part* is the unit of everything in a batch job: rows ``[p * part_rows, (p + 1) * part_rows)``
of the input, one LM call (or one ranker pass), one output file. The same worker runs under
every engine (in this process on the local engine, in a Ray Data actor on the ray engine) and
sees exactly the same rows, so the LM makes exactly the same calls (same padding, same
length-sorting inside sentence-transformers): outputs are bit-identical.

Workers have no side effects (no cache, no files): a part Ray retries runs twice and nothing
changes. Each answers its part's rows and the LM usage counters that part added.

Example::

    job = EncodeJob(encoder="fake:16", id_column="item", text_column="title")
    worker = make_worker(job)
    out, usage = worker(pa.table({"item": [1, 2], "title": ["Heat", "Fargo"]}))
    out.column("vector").type   # fixed_size_list<float>[16]
    usage["calls"]              # 1: a part is one LM call
"""

from __future__ import annotations

import string
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, Protocol

import numpy as np
from pydantic import Field

from llmrec.config import StrictConfig
from llmrec.data.dataset import coerce_id
from llmrec.errors import ConfigError
from llmrec.lm.base import LanguageModel
from llmrec.paradigms.tokens.tags import TagConfig
from llmrec.runtime import RuntimeOptions

if TYPE_CHECKING:  # pyarrow is the parquet extra: imported where a job runs
    import pyarrow as pa

    from llmrec.data.dataset import Dataset

__all__ = ["BatchJob", "EncodeJob", "RankJob", "TagsJob", "Worker", "make_worker"]


class _TextJob(StrictConfig):
    """Fields of the jobs that read item texts.

    Attributes:
        id_column: the column that names each row (unique; copied to the output).
        text_column: the column holding each row's text (ignored with ``item_template``).
        item_template: ``str.format`` template over columns, e.g. ``"{title} ({year})"``.
        part_rows: rows per part: per LM call, per output file, per unit of resumption.
        lm_options: keyword options for the LM backend (``load_lm(spec, **lm_options)``).
    """

    id_column: str = "id"
    text_column: str = "text"
    item_template: str | None = None
    part_rows: int = Field(default=1024, ge=1)
    lm_options: dict[str, Any] = Field(default_factory=dict)

    def text_columns(self) -> list[str]:
        """The columns the texts are made of."""
        if self.item_template is None:
            return [self.text_column]
        try:
            names = [f for _, f, _, _ in string.Formatter().parse(self.item_template) if f]
        except ValueError as exc:
            raise ConfigError(f"item_template {self.item_template!r}: {exc}") from None
        if not names or any(not n.isidentifier() for n in names):
            raise ConfigError(
                f"item_template {self.item_template!r} must name columns as {{column}}"
            )
        return list(dict.fromkeys(names))

    def input_columns(self) -> list[str]:
        return list(dict.fromkeys([self.id_column, *self.text_columns()]))

    def texts(self, rows: pa.Table) -> list[str]:
        """One text per row: the text column, or the template filled from each row."""
        if self.item_template is None:
            return ["" if t is None else str(t) for t in rows.column(self.text_column).to_pylist()]
        cols = {c: rows.column(c).to_pylist() for c in self.text_columns()}
        return [
            self.item_template.format(
                **{c: ("" if v[i] is None else v[i]) for c, v in cols.items()}
            )
            for i in range(rows.num_rows)
        ]


class EncodeJob(_TextJob):
    """Texts to unit vectors (``llmrec batch encode``), as the embeddings paradigm encodes.

    Attributes:
        encoder: an LM spec (``minilm-l6``, ``st:PATH``, ``smollm2-135m``, ``fake:32``, ...).
        pooling: causal-LM pooling, ``mean`` or ``last``; ``None``: the backend's default.
        max_tokens: token budget per text; ``None``: the encoder's context length.
        batch_size: texts per forward pass inside a part's call.
    """

    kind: Literal["encode"] = "encode"
    encoder: str = "minilm-l6"
    pooling: Literal["mean", "last"] | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    batch_size: int = Field(default=64, ge=1)

    def lm_spec(self) -> str:
        return self.encoder


class TagsJob(_TextJob):
    """Texts to LM-generated tags (``llmrec batch tags``), as the tokens paradigm tags items.

    A part's retry rounds run inside the part (so a part is whole when written); the
    vocabulary is learned on the driver from every part once all are written.

    Attributes:
        lm: a generative LM spec.
        tags: the tag generation settings (``batch_size`` prompts per ``generate`` call).
        vocabulary: a fixed vocabulary; ``None`` learns one (``tags.min_count``,
            ``tags.vocab_size``).
    """

    kind: Literal["tags"] = "tags"
    lm: str = "smollm2-135m"
    tags: TagConfig = Field(default_factory=lambda: TagConfig.model_validate({}))
    vocabulary: list[str] | None = None
    part_rows: int = Field(default=256, ge=1)

    def lm_spec(self) -> str:
        return self.lm


class RankJob(StrictConfig):
    """Top-K items per user from a saved model folder (``llmrec batch rank``).

    Attributes:
        model: a folder written by ``llmrec run`` (``RUN/model``) or ``Recommender.save``: a
            direct-paradigm two-stage model, or any other saved model.
        user_column: the column naming the users: indices in the model's index space, or with
            ``dataset`` the dataset's own user ids.
        k: items per user.
        part_rows: users per part.
        dataset: the dataset the model was trained on (a name or path, as ``llmrec run``
            takes it). With it, users are the dataset's ids, ``items`` holds the dataset's item
            ids, and every item a user has in the dataset is left out, as ``llmrec serve``
            answers; without it, indices, and the history the model was fitted on.
    """

    kind: Literal["rank"] = "rank"
    model: str
    user_column: str = "user"
    dataset: str | None = None
    k: int = Field(default=10, ge=1, le=10_000)
    part_rows: int = Field(default=256, ge=1)

    @property
    def id_column(self) -> str:
        return self.user_column

    def input_columns(self) -> list[str]:
        return [self.user_column]

    def lm_spec(self) -> str:
        return self.model


BatchJob = Annotated[EncodeJob | TagsJob | RankJob, Field(discriminator="kind")]


class Worker(Protocol):
    """Turns one part's input rows into its output rows (same order) and the LM usage counters
    the part added."""

    def __call__(self, rows: pa.Table) -> tuple[pa.Table, dict[str, float]]: ...


def _counters(lms: list[LanguageModel]) -> dict[int, dict[str, float]]:
    return {id(lm): lm.stats.as_dict() for lm in lms}


def _usage(lms: list[LanguageModel], before: dict[int, dict[str, float]]) -> dict[str, float]:
    """What ``lms`` counted since ``before`` (an LM loaded since then counts from zero)."""
    out: dict[str, float] = {}
    for lm in lms:
        was = before.get(id(lm), {})
        for key, value in lm.stats.as_dict().items():
            out[key] = out.get(key, 0.0) + value - was.get(key, 0.0)
    return out


class _EncodeWorker:
    def __init__(self, job: EncodeJob, runtime: RuntimeOptions) -> None:
        from llmrec.lm.registry import load_lm
        from llmrec.paradigms.embeddings.encoder import EncoderConfig, TextEncoder

        self.job = job
        # no disk cache: workers write nothing
        self.lm = load_lm(job.encoder, runtime=runtime, **job.lm_options)
        settings = EncoderConfig(
            encoder=job.encoder, pooling=job.pooling, max_tokens=job.max_tokens,
            batch_size=job.batch_size, chunk_size=job.part_rows, cache=False,
        )  # fmt: skip
        self.encoder = TextEncoder(settings, lm=self.lm)

    def __call__(self, rows: pa.Table) -> tuple[pa.Table, dict[str, float]]:
        import pyarrow as pa

        before = _counters([self.lm])
        vectors, _ = self.encoder.encode(self.job.texts(rows))  # one LM call: the whole part
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        column = pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), vectors.shape[1])
        out = pa.table({self.job.id_column: rows.column(self.job.id_column), "vector": column})
        return out, _usage([self.lm], before)


class _TagsWorker:
    def __init__(self, job: TagsJob, runtime: RuntimeOptions) -> None:
        from llmrec.lm.registry import load_lm

        self.job = job
        self.lm = load_lm(job.lm, runtime=runtime, **job.lm_options)

    def __call__(self, rows: pa.Table) -> tuple[pa.Table, dict[str, float]]:
        import pyarrow as pa

        from llmrec.paradigms.tokens.tags import generate_item_tags

        before = _counters([self.lm])
        # the vocabulary is the driver's, from every part: here every parsed tag is kept
        result = generate_item_tags(self.lm, self.job.texts(rows), self.job.tags, vocabulary=[])
        failed, retried = set(result.failed), set(result.retried)
        out = pa.table(
            {
                self.job.id_column: rows.column(self.job.id_column),
                "parsed": pa.array(result.parsed, type=pa.list_(pa.string())),
                "raw": pa.array(result.raw, type=pa.string()),
                "failed": pa.array([i in failed for i in range(rows.num_rows)]),
                "retried": pa.array([i in retried for i in range(rows.num_rows)]),
            }
        )
        usage = _usage([self.lm], before)
        usage["backend_errors"] = usage.get("backend_errors", 0.0) + result.backend_errors
        return out, usage


class _RankWorker:
    def __init__(self, job: RankJob, runtime: RuntimeOptions) -> None:
        from llmrec.models.base import Recommender

        self.job = job
        self.model = Recommender.load(job.model, runtime=runtime)
        self.data = None if job.dataset is None else rank_dataset(job, self.model)

    def __call__(self, rows: pa.Table) -> tuple[pa.Table, dict[str, float]]:
        import pyarrow as pa

        column = rows.column(self.job.user_column)
        before = _counters(self.model.language_models())
        if self.data is None:
            users = np.asarray(column.to_numpy(), dtype=np.int64)
            recs = self.model.recommend(users, self.job.k)
            items = pa.array(recs.items.reshape(-1))
        else:
            users = self.data.user_index(
                [coerce_id(u, self.data.user_ids) for u in column.to_pylist()]
            )
            recs = self.model.recommend(users, self.job.k, history=self.data.history())
            flat = recs.items.reshape(-1)
            ids = self.data.item_ids[np.maximum(flat, 0)]
            items = pa.array(ids, mask=flat < 0)  # a catalogue shorter than k: nulls
        scores = pa.array(recs.scores.astype(np.float32).reshape(-1))
        k = self.job.k
        out = pa.table({self.job.user_column: column,
                        "items": pa.FixedSizeListArray.from_arrays(items, k),
                        "scores": pa.FixedSizeListArray.from_arrays(scores, k)})  # fmt: skip
        # the first part loads the model's LM: it counts from zero
        return out, _usage(self.model.language_models(), before)


def rank_dataset(job: RankJob, model: Any | None = None) -> Dataset:
    """The dataset a rank job names, checked against its model's size (the saved meta when
    ``model`` is not loaded): a model of another catalogue is a one-line :class:`ConfigError`."""
    from llmrec.data import load_dataset
    from llmrec.models.saved import read_saved_meta

    assert job.dataset is not None
    data = load_dataset(job.dataset)
    meta = model if model is not None else read_saved_meta(Path(job.model))
    if (meta.n_users, meta.n_items) != (data.n_users, data.n_items):
        raise ConfigError(
            f"the model at {job.model} was trained on {meta.n_users} users x {meta.n_items} "
            f"items, but {job.dataset} has {data.n_users} x {data.n_items}: rank with the "
            "dataset it was trained on"
        )
    return data


def make_worker(
    job: EncodeJob | TagsJob | RankJob, runtime: RuntimeOptions | None = None
) -> Worker:
    """The worker of ``job``: it loads its model now (once per process or actor), on the
    device, dtype and threads ``runtime`` names, in this process whatever its engine."""
    rt = (runtime or RuntimeOptions()).model_copy(update={"engine": "local"})
    if isinstance(job, EncodeJob):
        return _EncodeWorker(job, rt)
    if isinstance(job, TagsJob):
        return _TagsWorker(job, rt)
    return _RankWorker(job, rt)


def job_from_json(data: dict[str, Any]) -> EncodeJob | TagsJob | RankJob:
    """A job from its JSON form (what an actor receives: plain data, never a pickle)."""
    kind = data.get("kind")
    if kind == "encode":
        return EncodeJob.model_validate(data)
    if kind == "tags":
        return TagsJob.model_validate(data)
    return RankJob.model_validate(data)
