"""One compare stage: build the entry's model, fit it, evaluate it through
:mod:`llmrec.experiment`'s evaluation and record assembly, measure and probe it."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from llmrec.compare.config import CompareEntry
from llmrec.compare.context import StageContext
from llmrec.compare.evidence import PerUser, record_intervals, write_per_user
from llmrec.compare.folder import MODEL_DIR
from llmrec.compare.measure import (
    LMLedger,
    Memory,
    latency,
    ranker_stats,
    save_model,
    training_summary,
    tuning_cost,
    tuning_size,
)
from llmrec.compare.probes import popularity_profile, run_probes
from llmrec.compare.validity import run_validity
from llmrec.engine import describe as describe_engine
from llmrec.errors import ConfigError
from llmrec.eval.protocols import EvalResult
from llmrec.experiment import evaluate_protocol, flat_metrics, make_record, seeded_model
from llmrec.models.base import Recommender
from llmrec.results import RunRecord, new_run_id
from llmrec.runtime import RuntimeOptions

__all__ = ["Unavailable", "build_model", "first_line", "measure_seed", "measure_stage"]

Log = Callable[[str], None]
#: LM figures that read "not measured" (NaN) when the model holds no LM
_LM_METRICS = ("lm_calls_per_1k", "lm_tokens_per_1k", "fit_lm_calls", "fit_lm_tokens")


class Unavailable(Exception):
    """The entry's model cannot be constructed in this installation."""


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


@contextmanager
def lm_missing_as_unavailable() -> Iterator[None]:
    """A missing optional package or LM backend while fitting means the entry is unavailable."""
    from llmrec.errors import MissingExtraError

    try:
        yield
    except (MissingExtraError, ModuleNotFoundError) as exc:
        raise Unavailable(first_line(exc)) from None


def build_model(
    entry: CompareEntry, seed: int, runtime: RuntimeOptions | None = None
) -> Recommender:
    """The entry's model, or :class:`Unavailable` when it cannot be built here."""
    from llmrec.errors import MissingExtraError
    from llmrec.models.catalogue import find_spec
    from llmrec.models.registry import get_model_class

    if find_spec(entry.model) is None and ":" not in entry.model:
        raise Unavailable(f"model {entry.model!r} is not registered in this installation")
    try:
        get_model_class(entry.model)  # a class that cannot be imported here is unavailable
    except (ConfigError, MissingExtraError, ImportError) as exc:
        raise Unavailable(first_line(exc)) from None
    try:
        return seeded_model(entry.model, entry.params, seed, runtime)
    except (MissingExtraError, ImportError) as exc:
        raise Unavailable(first_line(exc)) from None


def measure_stage(
    entry: CompareEntry,
    ctx: StageContext,
    stage_dir: Path,
    key: str,
    log: Log,
    ledger: LMLedger,
) -> RunRecord:
    """Fit, evaluate and probe one entry; return its record (not yet written)."""
    stage_tic, cpu_tic = time.perf_counter(), time.process_time()
    model = build_model(entry, ctx.config.seed, ctx.config.runtime)
    mem = Memory()
    tic = time.perf_counter()
    with lm_missing_as_unavailable():
        model.fit(ctx.split.train, ctx.split.valid)
    fit_s = time.perf_counter() - tic
    fit_lm = ledger.take(model)
    metrics: dict[str, float] = {"fit_s": fit_s, **tuning_cost(model), **tuning_size(model)}
    extra: dict[str, Any] = {"stage_key": key, "entry": entry.model_dump(mode="json")}
    result, per_user = _accuracy(entry, model, ctx, metrics, extra)
    write_per_user(stage_dir, per_user)
    extra["intervals"] = record_intervals(per_user, seed=ctx.config.seed)
    serve_lm = ledger.take(model)
    n_recs = max(1.0, float(len(result.users)))
    metrics.update(_lm_metrics(fit_lm, serve_lm, n_recs))
    metrics["throughput_users_s"] = n_recs / max(result.timings["total_s"], 1e-9)
    metrics.update(latency(entry, model, ctx))
    log(f"    {entry.name}: ndcg@10 {metrics['ndcg@10']:.4f}, probes")
    run_probes(entry, model, ctx, metrics, extra)
    run_validity(entry, model, ctx, result, extra)
    ledger.take(model)  # what latency and probes spent belongs to no later stage
    metrics["size_bytes"] = float(save_model(model, stage_dir / MODEL_DIR))
    metrics["peak_rss_mb"], metrics["peak_delta_mb"] = mem.peak()
    extra["lm_serving"] = serve_lm or _zero_lm()
    extra["lm_fit"] = fit_lm or _zero_lm()
    extra["ranker_stats"] = ranker_stats(model)
    extra["training"] = training_summary(model)
    extra["violations"] = result.violations
    extra["engine"] = describe_engine(ctx.config.runtime)  # how it ran, not what it is
    timings = {"fit_s": fit_s, "evaluate_s": result.timings["total_s"]}
    timings["stage_s"] = time.perf_counter() - stage_tic
    # CPU seconds of all threads: on a shared machine a steadier figure than wall time
    timings["stage_cpu_s"] = time.process_time() - cpu_tic
    cfg = ctx.config
    return make_record(
        model,
        run_id=new_run_id(entry.name),
        dataset=ctx.data.name,
        protocol=entry.protocol,
        config={
            "compare_entry": entry.model_dump(mode="json"),
            "params": model.config.model_dump(mode="json"),
            "split": cfg.split.model_dump(mode="json"),
            "eval": cfg.eval.model_dump(mode="json"),
            "probes": cfg.probes.model_dump(mode="json"),
            "seed": cfg.seed,
        },
        metrics={k: float(v) for k, v in metrics.items()},
        timings=timings,
        peak_rss_mb=metrics["peak_rss_mb"],
        extra=extra,
        model_name=entry.model,
    )


def _zero_lm() -> dict[str, float]:
    return {"calls": 0.0, "prompt_tokens": 0.0, "generated_tokens": 0.0, "cache_hits": 0.0}


def _lm_metrics(
    fit: dict[str, float] | None, serve: dict[str, float] | None, n_recs: float
) -> dict[str, float]:
    """LM calls and tokens of the fit and per 1,000 recommendations; NaN when the model holds
    no LM ("not measured" rather than a zero that reads as "free")."""
    if fit is None or serve is None:
        return dict.fromkeys(_LM_METRICS, math.nan)
    return {
        "lm_calls_per_1k": 1000.0 * serve["calls"] / n_recs,
        "lm_tokens_per_1k": 1000.0 * (serve["prompt_tokens"] + serve["generated_tokens"]) / n_recs,
        "fit_lm_calls": fit["calls"],
        "fit_lm_tokens": fit["prompt_tokens"] + fit["generated_tokens"],
    }


def _accuracy(
    entry: CompareEntry,
    model: Recommender,
    ctx: StageContext,
    metrics: dict[str, float],
    extra: dict[str, Any],
) -> tuple[EvalResult, PerUser]:
    ev = ctx.config.eval
    users = ctx.sample if entry.sample else None
    with lm_missing_as_unavailable():
        result = evaluate_protocol(
            model, ctx.split, ev, entry.protocol, phase="test", seed=ctx.config.seed, users=users
        )
    metrics.update(flat_metrics(result, ctx.split, ev))
    in_sample = np.isin(result.users, ctx.sample)
    for metric, value in result.slice(in_sample).items():
        metrics[f"sample_{metric}"] = value
    extra["evaluated_users"] = "sample" if entry.sample else "all"
    extra["popularity"] = popularity_profile(result.ranked[:, :10], ctx)
    return result, _per_user(result, ctx)


def _per_user(result: EvalResult, ctx: StageContext) -> PerUser:
    from llmrec.eval.slices import cold_item_mask, cold_user_mask

    ev = ctx.config.eval
    masks = {
        "in_sample": np.isin(result.users, ctx.sample),
        "cold_items": cold_item_mask(result, ctx.split, max_item_count=ev.cold_item_max_count),
        "cold_users": cold_user_mask(result, ctx.split, max_user_count=ev.cold_user_max_count),
    }
    return PerUser(result.users, dict(result.per_user), masks)


def measure_seed(entry: CompareEntry, ctx: StageContext, seed: int) -> tuple[PerUser, float]:
    """Fit ``entry``'s model with ``seed`` (its other params unchanged) and evaluate it as the
    stage does (same users, same candidates); return its per-user arrays and fit seconds.
    No latency, probes or saved model: a further seed only measures accuracy."""
    seeded = entry.model_copy(update={"params": {**entry.params, "seed": seed}})
    model = build_model(seeded, seed)
    tic = time.perf_counter()
    with lm_missing_as_unavailable():
        model.fit(ctx.split.train, ctx.split.valid)
    fit_s = time.perf_counter() - tic
    _, per_user = _accuracy(seeded, model, ctx, {}, {})
    return per_user, fit_s
