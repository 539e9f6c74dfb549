"""``llmrec compare``: the paradigms side by side on one split, one protocol, one record each.

A :class:`CompareConfig` lists *entries* — a name, a paradigm (classic / embeddings / tokens /
direct), a registered model with its params, and a protocol (``full`` ranking, ``candidates``
ranking, or ``two-stage``: full ranking through a retriever and an LM ranker). :func:`run_compare`
carries out each entry as one *stage* in ``out_dir/stages/<name>/``:

* fit, then evaluate on the test split (accuracy, cold-item and cold-user slices);
* efficiency: fit seconds, per-user latency p50/p95 from single-user calls on a seeded sample,
  throughput of the batch evaluation, peak memory, model size on disk, LM calls and tokens per
  1,000 recommendations (from the backends' counters);
* bias probes (``llmrec.eval.bias``): NDCG@10 by candidate slot, popularity of the
  recommendations against the catalogue, and — for LM rankers — FaiRLLM fairness by attribute;

and writes its :class:`~llmrec.results.RunRecord` atomically. A finished stage whose config is
unchanged is reused on the next call, so an interrupted compare resumes where it stopped. A model
that is not registered or cannot be imported (a paradigm not installed, an extra missing) is
recorded as *unavailable* with the reason; a stage that fails is recorded as *failed*; neither
stops the other stages. ``compare.json`` in ``out_dir`` lists every stage and its record.
"""

from __future__ import annotations

import gc
import hashlib
import json
import math
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from llmrec._io import (
    atomic_write_text,
    check_unique_names,
    dumps_json,
    make_dirs,
    read_json_object,
    read_yaml_mapping,
    staged_dir,
    validated,
)
from llmrec.data.dataset import Dataset, UserHistory
from llmrec.data.splits import Split, make_split
from llmrec.errors import ConfigError, LlmrecError
from llmrec.experiment import MAX_SEED, check_cutoffs
from llmrec.results import (
    RECORD_FILE,
    ResultsStore,
    RunRecord,
    environment,
    new_run_id,
    read_record,
    record_from_dict,
    write_record,
)

__all__ = [
    "MANIFEST_FILE",
    "MODEL_DIR",
    "PIPELINE",
    "CompareConfig",
    "CompareEntry",
    "ProbeConfig",
    "StageStatus",
    "load_compare_config",
    "pipeline_need",
    "quick_config",
    "run_compare",
]

MANIFEST_FILE = "compare.json"
ERROR_FILE = "error.txt"
#: the fitted model inside a stage folder (what `llmrec serve COMPARE_DIR` loads)
MODEL_DIR = "model"
Paradigm = Literal["classic", "embeddings", "tokens", "direct"]
Protocol = Literal["full", "candidates", "two-stage"]
Log = Callable[[str], None]

#: what each paradigm (or model, where it differs) needs from an existing system
PIPELINE: dict[str, str] = {
    "classic": "nothing new (no LM)",
    "embeddings": "new index",
    "tokens": "offline job only",
    "direct": "new serving model",
    # model-level refinements of the paradigm default
    "textknn": "new index",
    "lm-sasrec": "offline job only",
    "user-tower": "new serving model",
    "token-sasrec": "offline job only",
    "tiger": "new serving model",
    "two_stage": "new serving model",
}
#: how far each need reaches into a deployment, for the ``pipeline`` constraint
PIPELINE_LEVEL = {
    "nothing new (no LM)": 0,
    "offline job only": 1,
    "new index": 2,
    "new serving model": 3,
}


def pipeline_need(paradigm: str, model: str, override: str | None = None) -> str:
    """The pipeline-compatibility label of an entry (override, else model, else paradigm)."""
    if override:
        return override
    if paradigm == "classic":
        return PIPELINE["classic"]
    return PIPELINE.get(model, PIPELINE.get(paradigm, "unknown"))


# --- configuration ---------------------------------------------------------------------------
class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CompareEntry(_Strict):
    """One model under one protocol.

    Attributes:
        name: unique label, also the stage folder name (letters, digits, ``-``, ``_``).
        paradigm: classic / embeddings / tokens / direct.
        model: registered short name (``llmrec models``) or ``module:Class``.
        params: the model's config (validated by the model).
        protocol: ``full`` ranking, ``candidates`` (1 held-out + negatives) or ``two-stage``
            (full ranking, the model being a retriever + LM ranker).
        sample: evaluate on the compare-wide user sample only (for slow LM rankers).
        probes: bias probes to run; default position + popularity, plus fairness for direct.
        pipeline: override of the pipeline-compatibility label.
        enabled: ``False`` skips the entry.
    """

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=64)
    paradigm: Paradigm
    model: str
    params: dict[str, Any] = Field(default_factory=dict)
    protocol: Protocol = "full"
    sample: bool = False
    probes: list[Literal["position", "popularity", "fairness"]] | None = None
    pipeline: str | None = None
    enabled: bool = True

    def probe_set(self) -> set[str]:
        if self.probes is not None:
            return set(self.probes)
        base = {"position", "popularity"}
        return base | {"fairness"} if self.paradigm == "direct" else base


class SplitSettings(_Strict):
    kind: Literal["loo", "temporal", "random"] = "loo"
    valid_frac: float = 0.1
    test_frac: float = 0.1
    min_history: int = 3


class EvalSettings(_Strict):
    """Attributes:
    ks: cutoffs (10 must be among them: the report reads NDCG/Recall/MRR@10).
    n_negatives, sampling: the candidate protocol's negatives.
    cold_item_max_count: a held-out item with at most this many training interactions is
        cold; cold_user_max_count: likewise for a user's known history.
    """

    ks: list[int] = Field(default_factory=lambda: [10, 20])
    n_negatives: int = Field(default=19, ge=1)
    sampling: Literal["uniform", "popularity"] = "uniform"
    cold_item_max_count: int = Field(default=5, ge=0)
    cold_user_max_count: int = Field(default=5, ge=0)

    @model_validator(mode="after")
    def _has_ten(self) -> EvalSettings:
        check_cutoffs(self.ks)
        if 10 not in self.ks:
            raise ValueError("eval.ks must include 10 (the report reads @10)")
        return self


class ProbeConfig(_Strict):
    """Sizes of the measurements beside accuracy.

    Attributes:
        sample_users: size of the seeded test-user sample that ``sample`` entries are evaluated
            on (and that every full-ranking entry is also scored on, for a fair comparison).
        latency_users: users timed one by one for the latency percentiles.
        probe_users: users in the position and fairness probes.
        slots: candidate slots for the position probe (``None``: every slot).
        fairness_attributes: user attributes probed (FaiRLLM), values taken from the data.
        max_fairness_values: most frequent values kept per attribute.
        fairness_k: list length compared in the fairness probe.
    """

    sample_users: int = Field(default=200, ge=1)
    latency_users: int = Field(default=50, ge=1)
    probe_users: int = Field(default=50, ge=1)
    slots: list[int] | None = Field(default_factory=lambda: [0, 4, 9, 14, 19])
    fairness_attributes: list[str] = Field(default_factory=lambda: ["gender"])
    max_fairness_values: int = Field(default=6, ge=1)
    fairness_k: int = Field(default=5, ge=1)


class CompareConfig(_Strict):
    """Everything a comparison runs: the data, split, evaluation, probes and entries."""

    dataset: str = "ml-100k"
    seed: int = Field(default=0, ge=0, le=MAX_SEED)
    split: SplitSettings = Field(default_factory=SplitSettings)
    eval: EvalSettings = Field(default_factory=EvalSettings)
    probes: ProbeConfig = Field(default_factory=ProbeConfig)
    entries: list[CompareEntry] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_names(self) -> CompareConfig:
        check_unique_names([e.name for e in self.entries])
        return self

    @model_validator(mode="after")
    def _fairness_list_shorter_than_candidates(self) -> CompareConfig:
        # a list as long as the candidates holds all of them under every profile: SNSR is 0
        # for any ranker, a measurement that cannot fail
        n_candidates = 1 + self.eval.n_negatives
        probed = [e.name for e in self.entries if "fairness" in e.probe_set()]
        if probed and self.probes.fairness_k >= n_candidates:
            raise ValueError(
                f"probes.fairness_k ({self.probes.fairness_k}) must be below the number of "
                f"candidates (1 + eval.n_negatives = {n_candidates}) for the fairness probe of "
                f"{', '.join(probed)}"
            )
        return self


def load_compare_config(
    source: Path | dict[str, Any], overrides: dict[str, Any] | None = None
) -> CompareConfig:
    """A :class:`CompareConfig` from a YAML/JSON file or a mapping, with top-level overrides."""
    raw = read_yaml_mapping(source, "compare config") if isinstance(source, Path) else dict(source)
    raw.update(overrides or {})
    return validated(CompareConfig, raw, "compare config")


def quick_config(dataset: str = "ml-100k") -> CompareConfig:
    """The ``--quick`` preset: ``configs/compare-quick.yaml`` when present, else built in."""
    shipped = Path(__file__).resolve().parent.parent / "configs" / "compare-quick.yaml"
    if shipped.is_file():
        return load_compare_config(shipped, {"dataset": dataset})
    return CompareConfig(
        dataset=dataset,
        probes=ProbeConfig(sample_users=100, latency_users=20, probe_users=20),
        entries=[
            CompareEntry(name="popularity", paradigm="classic", model="popularity"),
            CompareEntry(name="itemknn", paradigm="classic", model="itemknn"),
        ],
    )


# --- stage status ----------------------------------------------------------------------------
class StageStatus(_Strict):
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


class _Unavailable(Exception):
    """The entry's model cannot be constructed in this installation."""


# --- the runner ------------------------------------------------------------------------------
def run_compare(
    config: CompareConfig,
    out_dir: Path,
    *,
    data: Dataset | None = None,
    data_dir: Path | None = None,
    store: ResultsStore | None = None,
    log: Log = lambda _msg: None,
    constraints: dict[str, Any] | None = None,
) -> list[StageStatus]:
    """Run (or resume) every entry of ``config`` into ``out_dir`` and write ``compare.json``.

    Args:
        data: the dataset (default: loaded by name from ``config.dataset``).
        store: results store that finished records are added to.
        constraints: the user's constraints, stored in ``compare.json`` for the report.

    Returns one :class:`StageStatus` per entry, in config order.
    """
    make_dirs(out_dir, "compare folder")
    started = time.perf_counter()
    data = data if data is not None else load_data(config.dataset, data_dir, seed=config.seed)
    split = _split(data, config)
    ctx = _Context(config, data, split)
    statuses: list[StageStatus] = []
    enabled = [e for e in config.entries if e.enabled]
    total_est = sum(_estimate(e, out_dir, data) for e in enabled)
    log(
        f"compare {len(enabled)} entries on {data.name} ({data.n_users} users, {data.n_items} "
        f"items, {data.n_interactions} interactions); rough estimate {_dur(total_est)}"
    )
    done_s = 0.0
    for number, entry in enumerate(config.entries, start=1):
        if not entry.enabled:
            statuses.append(_status(entry, "disabled"))
            continue
        est = _estimate(entry, out_dir, data)
        remaining = max(0.0, total_est - done_s)
        log(
            f"[{number}/{len(config.entries)}] {entry.name} ({entry.paradigm}, {entry.model}, "
            f"{entry.protocol}): est. {_dur(est)}, about {_dur(remaining)} left"
        )
        status = _run_stage(entry, ctx, out_dir, store, log)
        statuses.append(status)
        done_s += est
        log(f"    {entry.name}: {status.status} in {_dur(status.seconds)} {status.reason}".rstrip())
        _write_manifest(out_dir, config, data, split, statuses, constraints, started)
    _write_manifest(out_dir, config, data, split, statuses, constraints, started)
    return statuses


def load_data(name: str, data_dir: Path | None = None, *, seed: int = 0) -> Dataset:
    """Load a dataset by name or path through :func:`llmrec.data.load_dataset`."""
    from llmrec.data import load_dataset

    return load_dataset(name, data_dir=data_dir, seed=seed)


def _split(data: Dataset, config: CompareConfig) -> Split:
    s = config.split
    if s.kind == "loo":
        return make_split(data, "loo", min_history=s.min_history)
    return make_split(
        data, s.kind, seed=config.seed, valid_frac=s.valid_frac, test_frac=s.test_frac
    )


class _Context:
    """What every stage shares: the split, query-time history, user samples, candidates."""

    def __init__(self, config: CompareConfig, data: Dataset, split: Split) -> None:
        self.config = config
        self.data = data
        self.split = split
        self.known = split.known_at_test()
        self.hist: UserHistory = self.known.history()
        self.test_users = split.test.active_users().astype(np.int64)
        rng = np.random.default_rng(config.seed)
        p = config.probes
        order = rng.permutation(self.test_users)
        self.sample = np.sort(order[: p.sample_users])
        self.latency_users = order[: p.latency_users]
        self.probe_users = np.sort(order[: p.probe_users])
        self.popularity = split.train.item_popularity().astype(np.float64)
        self.deciles = popularity_deciles(self.popularity)
        self._candidates: np.ndarray | None = None

    def probe_candidates(self) -> tuple[np.ndarray, np.ndarray]:
        """``(probe users, 1 + n_negatives)`` seeded candidates and ``(probe users,)`` positives."""
        from llmrec.eval.protocols import sample_candidates, truth_for

        truth = truth_for(self.probe_users, self.split.test)
        if self._candidates is None:
            ev = self.config.eval
            self._candidates = sample_candidates(
                self.probe_users,
                truth,
                self.hist,
                self.split.train.n_items,
                n_negatives=ev.n_negatives,
                sampling=ev.sampling,
                popularity=self.popularity,
                seed=self.config.seed + 1,
            )
        positives = truth.items[truth.indptr[:-1]]
        return self._candidates, positives


def stage_key(entry: CompareEntry, config: CompareConfig, data: Dataset) -> str:
    """Hash of everything a stage's numbers depend on: when it changes, the stage reruns."""
    blob = json.dumps(
        {
            "entry": entry.model_dump(mode="json", exclude={"enabled", "pipeline"}),
            "dataset": [data.name, data.n_users, data.n_items, data.n_interactions],
            "split": config.split.model_dump(mode="json"),
            "eval": config.eval.model_dump(mode="json"),
            "probes": config.probes.model_dump(mode="json"),
            "seed": config.seed,
        },
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _status(entry: CompareEntry, status: str, **kw: Any) -> StageStatus:
    return StageStatus(
        name=entry.name,
        paradigm=entry.paradigm,
        model=entry.model,
        protocol=entry.protocol,
        pipeline=pipeline_need(entry.paradigm, entry.model, entry.pipeline),
        status=status,  # type: ignore[arg-type]
        **kw,
    )


def _run_stage(
    entry: CompareEntry, ctx: _Context, out_dir: Path, store: ResultsStore | None, log: Log
) -> StageStatus:
    stage_dir = out_dir / "stages" / entry.name
    key = stage_key(entry, ctx.config, ctx.data)
    rel = f"stages/{entry.name}/{RECORD_FILE}"
    cached = _cached_record(stage_dir, key)
    if cached is not None:
        return _status(
            entry,
            "cached",
            run_id=cached.run_id,
            record=rel,
            key=key,
            seconds=float(cached.timings.get("stage_s", 0.0)),
        )
    tic = time.perf_counter()
    try:
        # the stage (model and record) is written beside its folder and renamed into place
        # whole: an interrupted stage leaves the previous folder, which resume does not reuse
        # unless its record carries this stage's key
        with staged_dir(stage_dir) as partial:
            record = _measure(entry, ctx, partial, key, log)
            write_record(record, partial)
    except _Unavailable as exc:
        return _status(entry, "unavailable", reason=str(exc), key=key)
    except Exception as exc:  # one entry's failure must not stop the comparison
        reason = _reason(exc)
        if not isinstance(exc, LlmrecError | ValidationError):
            # an unexpected error is a bug somewhere: keep its traceback for the bug report
            atomic_write_text(stage_dir / ERROR_FILE, traceback.format_exc())
            reason += f" (traceback in stages/{entry.name}/{ERROR_FILE})"
        return _status(entry, "failed", reason=reason, key=key, seconds=time.perf_counter() - tic)
    finally:
        gc.collect()
    if store is not None:
        store.add(record)
    return _status(
        entry, "done", run_id=record.run_id, record=rel, key=key, seconds=record.timings["stage_s"]
    )


def _cached_record(stage_dir: Path, key: str) -> RunRecord | None:
    if not (stage_dir / RECORD_FILE).is_file():
        return None
    try:
        record = read_record(stage_dir)
    except ConfigError:
        return None  # a torn or foreign file: run the stage again
    return record if record.extra.get("stage_key") == key else None


def _build_model(entry: CompareEntry, seed: int) -> Any:
    """The entry's model, or :class:`_Unavailable` when it cannot be built here."""
    from llmrec.errors import MissingExtraError
    from llmrec.models.registry import MODELS, get_model_class

    if entry.model not in MODELS and ":" not in entry.model:
        raise _Unavailable(f"model {entry.model!r} is not registered in this installation")
    try:
        klass = get_model_class(entry.model)
    except (ConfigError, MissingExtraError, ImportError) as exc:
        raise _Unavailable(_first_line(exc)) from None
    params = dict(entry.params)
    params.setdefault("seed", seed)
    try:
        return klass(params)
    except (MissingExtraError, ImportError) as exc:
        raise _Unavailable(_first_line(exc)) from None


def _measure(entry: CompareEntry, ctx: _Context, stage_dir: Path, key: str, log: Log) -> RunRecord:
    """Fit, evaluate and probe one entry; return its record (not yet written)."""
    stage_tic, cpu_tic = time.perf_counter(), time.process_time()
    model = _build_model(entry, ctx.config.seed)
    mem = _Memory()
    tic = time.perf_counter()
    with _lm_missing_as_unavailable():
        model.fit(ctx.split.train, ctx.split.valid)
    fit_s = time.perf_counter() - tic
    fit_lm = _lm_totals(model)
    metrics: dict[str, float] = {"fit_s": fit_s}
    extra: dict[str, Any] = {"stage_key": key, "entry": entry.model_dump(mode="json")}
    result = _accuracy(entry, model, ctx, metrics, extra)
    serve_lm = _diff(_lm_totals(model), fit_lm)
    n_recs = max(1.0, float(len(result.users)))
    metrics["lm_calls_per_1k"] = 1000.0 * serve_lm["calls"] / n_recs
    metrics["lm_tokens_per_1k"] = (
        1000.0 * (serve_lm["prompt_tokens"] + serve_lm["generated_tokens"]) / n_recs
    )
    metrics["fit_lm_calls"] = fit_lm["calls"]
    metrics["fit_lm_tokens"] = fit_lm["prompt_tokens"] + fit_lm["generated_tokens"]
    if not _language_models(model):
        # no backend is reachable from the model (none, or released after fitting): say
        # "not measured" rather than a zero that reads as "free"
        for name in ("lm_calls_per_1k", "lm_tokens_per_1k", "fit_lm_calls", "fit_lm_tokens"):
            metrics[name] = float("nan")
    metrics["throughput_users_s"] = n_recs / max(result.timings["total_s"], 1e-9)
    metrics.update(_latency(entry, model, ctx))
    log(f"    {entry.name}: ndcg@10 {metrics['ndcg@10']:.4f}, probes")
    _probes(entry, model, ctx, metrics, extra)
    metrics["size_bytes"] = float(_save_model(model, stage_dir / MODEL_DIR))
    metrics["peak_rss_mb"], metrics["peak_delta_mb"] = mem.peak()
    extra["lm_serving"] = serve_lm
    extra["lm_fit"] = fit_lm
    extra["ranker_stats"] = _ranker_stats(model)
    extra["training"] = _training(model)
    extra["violations"] = result.violations
    if diagnostics := model.diagnostics():
        extra["diagnostics"] = diagnostics
    timings = {"fit_s": fit_s, "evaluate_s": result.timings["total_s"]}
    timings["stage_s"] = time.perf_counter() - stage_tic
    # CPU seconds of all threads: on a shared machine a steadier figure than wall time
    timings["stage_cpu_s"] = time.process_time() - cpu_tic
    return RunRecord(
        run_id=new_run_id(entry.name),
        created=time.strftime("%Y-%m-%dT%H:%M:%S"),
        dataset=ctx.data.name,
        model=entry.model,
        protocol=entry.protocol,
        config={
            "compare_entry": entry.model_dump(mode="json"),
            "params": model.config.model_dump(mode="json"),
            "split": ctx.config.split.model_dump(mode="json"),
            "eval": ctx.config.eval.model_dump(mode="json"),
            "probes": ctx.config.probes.model_dump(mode="json"),
            "seed": ctx.config.seed,
        },
        metrics={k: float(v) for k, v in metrics.items()},
        timings=timings,
        peak_rss_mb=metrics["peak_rss_mb"],
        environment=environment(),
        extra=extra,
    )


# --- accuracy --------------------------------------------------------------------------------
def _accuracy(
    entry: CompareEntry,
    model: Any,
    ctx: _Context,
    metrics: dict[str, float],
    extra: dict[str, Any],
) -> Any:
    from llmrec.eval.protocols import evaluate, evaluate_candidates
    from llmrec.eval.slices import slice_report

    ev = ctx.config.eval
    users = ctx.sample if entry.sample else None
    with _lm_missing_as_unavailable():
        if entry.protocol == "candidates":
            result = evaluate_candidates(
                model,
                ctx.split,
                phase="test",
                ks=tuple(ev.ks),
                n_negatives=ev.n_negatives,
                sampling=ev.sampling,
                users=users,
                seed=ctx.config.seed,
            )
        else:
            result = evaluate(model, ctx.split, phase="test", ks=tuple(ev.ks), users=users)
    metrics.update({k: float(v) for k, v in result.metrics.items()})
    slices = slice_report(
        result,
        ctx.split,
        max_item_count=ev.cold_item_max_count,
        max_user_count=ev.cold_user_max_count,
    )
    for name in ("cold_items", "cold_users"):
        for metric, value in slices[name].items():
            metrics[f"{name}_{metric}"] = value
    in_sample = np.isin(result.users, ctx.sample)
    for metric, value in result.slice(in_sample).items():
        metrics[f"sample_{metric}"] = value
    extra["evaluated_users"] = "sample" if entry.sample else "all"
    extra["popularity"] = _popularity_profile(result.ranked[:, :10], ctx)
    return result


def popularity_deciles(popularity: np.ndarray) -> np.ndarray:
    """``(n_items,)`` int decile of each item by training popularity: 0 = the least popular
    tenth of the catalogue, 9 = the most popular (ties broken by item index)."""
    order = np.lexsort((np.arange(len(popularity)), popularity))
    deciles = np.empty(len(popularity), dtype=np.int64)
    deciles[order] = (np.arange(len(popularity)) * 10) // max(1, len(popularity))
    return deciles


def _popularity_profile(ranked: np.ndarray, ctx: _Context) -> dict[str, Any]:
    """Share of recommended items in each popularity decile, against the catalogue (0.1 each)
    and the training interactions; mean popularity of recommendations against the catalogue."""
    items = ranked[ranked >= 0]
    counts = np.bincount(ctx.deciles[items], minlength=10).astype(np.float64)
    rec_share = counts / max(1.0, counts.sum())
    inter = np.bincount(ctx.deciles, weights=ctx.popularity, minlength=10)
    catalogue_mean = float(ctx.popularity.mean()) if len(ctx.popularity) else 0.0
    rec_mean = float(ctx.popularity[items].mean()) if len(items) else 0.0
    return {
        "decile_share": [round(float(x), 6) for x in rec_share],
        "catalogue_share": [
            round(float(x), 6)
            for x in np.bincount(ctx.deciles, minlength=10) / max(1, len(ctx.deciles))
        ],
        "interaction_share": [round(float(x), 6) for x in inter / max(1.0, inter.sum())],
        "rec_mean_popularity": rec_mean,
        "catalogue_mean_popularity": catalogue_mean,
        "lift": rec_mean / catalogue_mean if catalogue_mean else float("nan"),
    }


# --- efficiency ------------------------------------------------------------------------------
def _latency(entry: CompareEntry, model: Any, ctx: _Context) -> dict[str, float]:
    """Per-user milliseconds from single-user calls on a seeded sample (one warm-up call)."""
    users = ctx.latency_users
    if entry.protocol == "candidates":
        cands = _candidates_for(users, ctx)

        def call(row: int) -> None:
            model.score_candidates(users[row : row + 1], cands[row : row + 1], history=ctx.hist)
    else:

        def call(row: int) -> None:
            model.recommend(users[row : row + 1], 10, history=ctx.hist)

    if len(users) == 0:
        return {}
    call(0)
    times = []
    for row in range(len(users)):
        tic = time.perf_counter()
        call(row)
        times.append(1000.0 * (time.perf_counter() - tic))
    return {
        "latency_p50_ms": float(np.percentile(times, 50)),
        "latency_p95_ms": float(np.percentile(times, 95)),
        "latency_mean_ms": float(np.mean(times)),
        "latency_users": float(len(times)),
    }


def _candidates_for(users: np.ndarray, ctx: _Context) -> np.ndarray:
    from llmrec.eval.protocols import sample_candidates, truth_for

    ev = ctx.config.eval
    return sample_candidates(
        users,
        truth_for(users, ctx.split.test),
        ctx.hist,
        ctx.split.train.n_items,
        n_negatives=ev.n_negatives,
        sampling=ev.sampling,
        popularity=ctx.popularity,
        seed=ctx.config.seed + 2,
    )


def _save_model(model: Any, folder: Path) -> int:
    """Save the fitted model into the stage (``llmrec serve`` loads it from there); return its
    size on disk in bytes, 0 if it cannot be saved. :meth:`Recommender.save` writes beside and
    renames into place, so an interrupted save never leaves a half-written model."""
    try:
        model.save(folder)
    except (LlmrecError, NotImplementedError, OSError, TypeError, ValueError):
        return 0
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


class _Memory:
    """Peak resident memory during a stage: the kernel's high-water mark is reset at the start
    (``/proc/self/clear_refs``) so that earlier stages do not count; elsewhere the process peak."""

    def __init__(self) -> None:
        self.start_mb = _status_mb("VmRSS")
        # resetting the high-water mark needs Linux >= 4.0; elsewhere the process peak is used
        with suppress(OSError):
            Path("/proc/self/clear_refs").write_text("5")

    def peak(self) -> tuple[float, float]:
        """(peak MiB, peak minus the resident MiB at the stage start)."""
        from llmrec.results import peak_rss_mb

        peak = _status_mb("VmHWM") or peak_rss_mb()
        return peak, max(0.0, peak - self.start_mb)


def _status_mb(field_name: str) -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return float(line.split()[1]) / 1024.0
    except OSError:
        pass
    return 0.0


def _language_models(model: Any, depth: int = 3) -> list[Any]:
    """LM backends held by ``model`` (looked up in instance attributes, without loading any)."""
    from llmrec.lm.base import LanguageModel

    found: dict[int, Any] = {}

    def walk(obj: Any, level: int) -> None:
        if isinstance(obj, LanguageModel):
            found[id(obj)] = obj
            return
        if level == 0 or not hasattr(obj, "__dict__") or isinstance(obj, type):
            return
        for value in vars(obj).values():
            if isinstance(value, list | tuple):
                for v in value[:8]:
                    walk(v, level - 1)
            elif hasattr(value, "__dict__") and type(value).__module__.startswith("llmrec"):
                walk(value, level - 1)

    walk(model, depth)
    return list(found.values())


def _lm_totals(model: Any) -> dict[str, float]:
    totals = {"calls": 0.0, "prompt_tokens": 0.0, "generated_tokens": 0.0, "cache_hits": 0.0}
    for lm in _language_models(model):
        stats = lm.stats.as_dict()
        for name in totals:
            totals[name] += float(stats.get(name, 0.0))
    return totals


def _diff(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {k: after[k] - before.get(k, 0.0) for k in after}


def _training(model: Any) -> dict[str, Any]:
    """Early-stopping summary of torch-trained models (epochs run, best epoch and score)."""
    log = getattr(model, "train_log", None)
    if log is None or not hasattr(log, "best_epoch"):
        return {}
    epochs = list(getattr(log, "epochs", []))
    return {
        "epochs_evaluated": epochs[-1] if epochs else 0,
        "best_epoch": int(log.best_epoch),
        "best_valid_ndcg@10": float(getattr(log, "best_score", float("nan"))),
        "time_to_best_s": float(getattr(log, "time_to_best_s", float("nan"))),
    }


def _ranker_stats(model: Any) -> dict[str, float]:
    ranker = getattr(model, "ranker", None)
    stats = getattr(ranker, "stats", None)
    summary = getattr(stats, "summary", None)
    return dict(summary()) if callable(summary) else {}


@contextmanager
def _lm_missing_as_unavailable() -> Iterator[None]:
    """A missing optional package or LM backend while fitting means the entry is unavailable."""
    from llmrec.errors import MissingExtraError

    try:
        yield
    except (MissingExtraError, ModuleNotFoundError) as exc:
        raise _Unavailable(_first_line(exc)) from None


# --- bias probes -----------------------------------------------------------------------------
def _probes(
    entry: CompareEntry,
    model: Any,
    ctx: _Context,
    metrics: dict[str, float],
    extra: dict[str, Any],
) -> None:
    from llmrec.eval import bias

    wanted = entry.probe_set()
    cands, positives = ctx.probe_candidates()
    users = ctx.probe_users
    scorer = bias.scorer_of(model, ctx.hist)
    if "position" in wanted and len(users):
        slots = _slots(ctx.config.probes.slots, cands.shape[1])
        pos = bias.position_bias(scorer, users, cands, positives, slots=slots, k=10)
        extra["position"] = pos.as_dict()
        metrics["position_spread"] = pos.spread
    if "popularity" in wanted and len(users):
        scores = scorer(users, cands)
        pop = bias.popularity_bias(scores, cands, ctx.popularity, k=5)
        extra["candidate_popularity"] = pop
        metrics["candidate_popularity_lift"] = pop["lift"]
    metrics["popularity_lift"] = extra["popularity"]["lift"]
    if "fairness" in wanted:
        report = _fairness(model, ctx, users, cands)
        if report:
            extra["fairness"] = report
            metrics["fairness_snsr"] = max(r["snsr_jaccard"] for r in report.values())


def _slots(slots: Sequence[int] | None, width: int) -> list[int] | None:
    if slots is None:
        return None
    return sorted({s for s in slots if 0 <= s < width}) or None


def _fairness(
    model: Any, ctx: _Context, users: np.ndarray, cands: np.ndarray
) -> dict[str, dict[str, Any]]:
    """FaiRLLM per attribute, for models whose ranker can swap the profile in its prompts."""
    from llmrec.eval import bias

    ranker = model if hasattr(model, "profile_override") else getattr(model, "ranker", None)
    if ranker is None or not hasattr(ranker, "profile_override"):
        return {}
    out: dict[str, dict[str, Any]] = {}
    p = ctx.config.probes
    for attribute in p.fairness_attributes:
        values = _attribute_values(ctx.data, attribute, p.max_fairness_values)
        if not values:
            continue
        rank_under = bias.ranked_under_profiles(ranker, users, cands, ctx.hist, k=p.fairness_k)
        report = bias.fairness(rank_under, attribute, values, n_users=len(users), k=p.fairness_k)
        out[attribute] = report.as_dict()
    return out


def _attribute_values(data: Dataset, attribute: str, limit: int) -> list[str]:
    attrs = data.user_attrs
    if attrs is None or attribute not in attrs.columns:
        return []
    counts = attrs[attribute].dropna().astype(str).value_counts()
    return sorted(counts.index[:limit].tolist())


# --- manifest, estimates, helpers ------------------------------------------------------------
def _write_manifest(
    out_dir: Path,
    config: CompareConfig,
    data: Dataset,
    split: Split,
    statuses: list[StageStatus],
    constraints: dict[str, Any] | None,
    started: float,
) -> None:
    previous = read_manifest(out_dir) if (out_dir / MANIFEST_FILE).is_file() else {}
    manifest = {
        "config": config.model_dump(mode="json"),
        "dataset": {
            "name": data.name,
            "n_users": data.n_users,
            "n_items": data.n_items,
            "n_interactions": data.n_interactions,
        },
        "split": {
            "kind": split.kind,
            "test_users": len(split.test.active_users()),
        },
        "constraints": constraints if constraints is not None else previous.get("constraints", {}),
        "stages": [s.model_dump(mode="json") for s in statuses],
        "updated": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "elapsed_s": time.perf_counter() - started,
    }
    atomic_write_text(out_dir / MANIFEST_FILE, dumps_json(manifest, sort_keys=True))


def read_manifest(out_dir: Path) -> dict[str, Any]:
    """The ``compare.json`` of a compare folder; a one-line :class:`ConfigError` when it is
    missing, not JSON, or its stage list is malformed."""
    path = out_dir / MANIFEST_FILE
    if not path.exists():
        raise ConfigError(f"{out_dir} is not a compare folder ({MANIFEST_FILE} missing)")
    data = read_json_object(path, "compare manifest")
    stages = data.get("stages", [])
    if not isinstance(stages, list) or not all(_is_stage_line(s) for s in stages):
        raise ConfigError(f"{path}: 'stages' must be a list of stage objects with a name")
    return data


def _is_stage_line(stage: Any) -> bool:
    return isinstance(stage, dict) and isinstance(stage.get("name"), str)


#: rough seconds per stage on ML-100K (943 users, 1,682 items) on a 2-core machine
_ROUGH_S = {
    "popularity": 2,
    "itemknn": 5,
    "bpr": 60,
    "sasrec": 120,
    "textknn": 30,
    "lm-sasrec": 150,
    "user-tower": 40,
    "token-sasrec": 150,
    "tiger": 240,
    "two_stage": 180,
}


def _estimate(entry: CompareEntry, out_dir: Path, data: Dataset) -> float:
    """Seconds a stage should take: its last record's time, else a rough per-model figure."""
    stage_dir = out_dir / "stages" / entry.name
    if (stage_dir / RECORD_FILE).is_file():
        try:
            seconds = read_record(stage_dir).timings.get("stage_s", 0.0)
        except ConfigError:
            seconds = math.nan
        if math.isfinite(seconds):
            return float(seconds)
    scale = max(0.01, data.n_interactions / 100_000)
    return _ROUGH_S.get(entry.model, 60) * scale


def _dur(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min"


def _reason(exc: BaseException) -> str:
    """One line saying why a stage failed; a validation error names the offending field."""
    if isinstance(exc, ValidationError) and exc.errors():
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "top level"
        return f"invalid {exc.title} at {where}: {err['msg']}"
    return f"{type(exc).__name__}: {_first_line(exc)}"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def iter_records(out_dir: Path) -> Iterator[tuple[dict[str, Any], RunRecord | None]]:
    """Each stage line of ``compare.json`` with its record (``None`` when it has none)."""
    manifest = read_manifest(out_dir)
    for stage in manifest.get("stages", []):
        record = None
        rel = stage.get("record")
        if isinstance(rel, str) and rel:
            path = out_dir / rel
            if path.is_file():
                record = record_from_dict(read_json_object(path, "stage record"), str(path))
        yield stage, record
