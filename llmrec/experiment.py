"""One experiment run: load data, split, fit, evaluate, record.

:class:`RunConfig` is plain data (it validates, dumps to JSON/YAML and loads back);
:func:`run_experiment` carries it out and returns the :class:`~llmrec.results.RunRecord` it
wrote to the run folder and the results store.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from llmrec.data.splits import make_split
from llmrec.errors import ConfigError
from llmrec.eval.protocols import EvalResult, evaluate, evaluate_candidates
from llmrec.eval.slices import slice_report
from llmrec.models.registry import create_model
from llmrec.results import (
    ResultsStore,
    RunRecord,
    StageTimer,
    environment,
    new_run_id,
    peak_rss_mb,
    write_record,
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SplitConfig(_Strict):
    kind: Literal["loo", "temporal", "random"] = "loo"
    valid_frac: float = 0.1
    test_frac: float = 0.1
    min_history: int = 3


class EvalConfig(_Strict):
    protocol: Literal["full", "candidates"] = "full"
    ks: list[int] = Field(default_factory=lambda: [10, 20])
    n_negatives: int = 19
    sampling: Literal["uniform", "popularity"] = "uniform"


class RunConfig(_Strict):
    """Everything that defines a run. ``params`` is validated by the model's own config."""

    dataset: str = "ml-100k"
    model: str = "popularity"
    params: dict[str, Any] = Field(default_factory=dict)
    split: SplitConfig = Field(default_factory=SplitConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    seed: int = 0
    save_model: bool = True


def run_experiment(
    config: RunConfig,
    *,
    run_dir: Path,
    store: ResultsStore | None = None,
    data_dir: Path | None = None,
    log: Callable[[str], None] = lambda _msg: None,
) -> RunRecord:
    """Run ``config`` and write ``record.json`` (and the fitted model) into ``run_dir``."""
    from llmrec.data import load_dataset

    # the model and its config are checked before any data is read: a typo fails in a second
    params = dict(config.params)
    params.setdefault("seed", config.seed)
    model = create_model(config.model, params)
    timer = StageTimer()
    with timer("load"):
        data = load_dataset(config.dataset, data_dir=data_dir)
    log(f"loaded {data!r}")
    with timer("split"):
        split = _split(data, config)
    log(
        f"split {config.split.kind}: train {len(split.train)}, valid {len(split.valid)}, "
        f"test {len(split.test)} interactions"
    )
    log(f"fitting {model!r}")
    with timer("fit"):
        model.fit(split.train, split.valid)
    with timer("evaluate"):
        valid = _evaluate(model, split, config, "valid")
        test = _evaluate(model, split, config, "test")
    metrics = dict(test.metrics)
    metrics.update({f"valid_{k}": v for k, v in valid.metrics.items() if "@" in k})
    slices = slice_report(test, split)
    for name in ("cold_items", "cold_users"):
        for key in ("ndcg@10", "recall@10", "n_users"):
            if key in slices[name]:
                metrics[f"{name}_{key}"] = slices[name][key]
    timings = dict(timer.seconds)
    timings["test_per_user_ms"] = test.timings["per_user_ms"]
    record = RunRecord(
        run_id=run_dir.name,
        created=time.strftime("%Y-%m-%dT%H:%M:%S"),
        dataset=data.name,
        model=config.model,
        protocol=config.eval.protocol,
        config={**config.model_dump(mode="json"), "params": model.config.model_dump(mode="json")},
        metrics=metrics,
        timings=timings,
        peak_rss_mb=peak_rss_mb(),
        environment=environment(),
        extra={"violations": test.violations},
    )
    if config.save_model:
        model.save(run_dir / "model")
    write_record(record, run_dir)
    if store is not None:
        store.add(record)
    return record


def default_run_dir(parent: Path, model: str) -> Path:
    return parent / new_run_id(model)


def _split(data: Any, config: RunConfig) -> Any:
    s = config.split
    if s.kind == "loo":
        return make_split(data, "loo", min_history=s.min_history)
    return make_split(
        data, s.kind, seed=config.seed, valid_frac=s.valid_frac, test_frac=s.test_frac
    )


def _evaluate(model: Any, split: Any, config: RunConfig, phase: Any) -> EvalResult:
    ks = tuple(config.eval.ks)
    if not ks or min(ks) < 1:
        raise ConfigError(f"eval.ks must be positive cutoffs, got {list(ks)}")
    if config.eval.protocol == "full":
        return evaluate(model, split, phase=phase, ks=ks)
    return evaluate_candidates(
        model,
        split,
        phase=phase,
        ks=ks,
        n_negatives=config.eval.n_negatives,
        sampling=config.eval.sampling,
        seed=config.seed,
    )
