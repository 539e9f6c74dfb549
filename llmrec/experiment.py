"""One experiment run: load data, split, fit, evaluate, record.

:class:`RunConfig` is plain data (it validates, dumps to JSON/YAML and loads back);
:func:`run_experiment` carries it out and returns the :class:`~llmrec.results.RunRecord` it
wrote to the run folder and the results store.

Limits checked before any work: seeds are ``0 .. 2**63 - 1``; cutoffs ``eval.ks`` are
``1 .. MAX_CUTOFF`` (a cutoff above the catalogue size is allowed, with a note: the list is
padded, so ``@k`` there equals ``@n_items``); the candidate protocol needs at least one negative.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, field_validator

from llmrec._io import dumps_json, make_dirs, staged_dir
from llmrec.config import StrictConfig
from llmrec.data.dataset import Dataset
from llmrec.data.splits import Split, make_split
from llmrec.engine import describe as describe_engine
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
from llmrec.runtime import RuntimeOptions

if TYPE_CHECKING:
    import numpy as np

    from llmrec.eval.protocols import Phase, SeenMask
    from llmrec.models.base import Recommender

#: the largest cutoff a config may ask for: evaluation holds (users, max k) arrays
MAX_CUTOFF = 10_000
#: the largest seed: numpy, torch and SQLite all take a non-negative 63-bit integer
MAX_SEED = 2**63 - 1


def check_cutoffs(ks: list[int]) -> list[int]:
    """``ks`` if it is a non-empty list of cutoffs in ``1 .. MAX_CUTOFF``; ``ValueError`` (for a
    pydantic validator) otherwise."""
    if not ks:
        raise ValueError("eval.ks needs at least one cutoff, e.g. [10, 20]")
    bad = [k for k in ks if not 1 <= k <= MAX_CUTOFF]
    if bad:
        raise ValueError(f"eval.ks must lie in 1..{MAX_CUTOFF:,}; got {bad}")
    return ks


class SplitConfig(StrictConfig):
    """Attributes:
    core: k-core filtering before splitting (users and items with fewer interactions are
        dropped until none is left; 0 = none; 5 is LlamaRec's "5-core").
    ties: order of same-time interactions: ``input`` (file order) or ``item`` (by item id,
        as LlamaRec sorts histories).
    """

    kind: Literal["loo", "temporal", "random"] = "loo"
    valid_frac: float = 0.1
    test_frac: float = 0.1
    min_history: int = 3
    core: int = Field(default=0, ge=0)
    ties: Literal["input", "item"] = "input"


class EvalOptions(StrictConfig):
    """How a run and every compare entry are judged (the protocol aside).

    Attributes:
        ks: cutoffs, each in ``1 .. MAX_CUTOFF``.
        n_negatives: sampled negatives per held-out item under the candidate protocol (>= 1).
        sampling: how those negatives are drawn.
        cold_item_max_count: a held-out item with at most this many training interactions is
            cold; cold_user_max_count: likewise for a user's known history.
    """

    ks: list[int] = Field(default_factory=lambda: [10, 20])
    n_negatives: int = Field(default=19, ge=1)
    sampling: Literal["uniform", "popularity"] = "uniform"
    cold_item_max_count: int = Field(default=5, ge=0)
    cold_user_max_count: int = Field(default=5, ge=0)

    @field_validator("ks")
    @classmethod
    def _ks_in_range(cls, ks: list[int]) -> list[int]:
        return check_cutoffs(ks)


class EvalConfig(EvalOptions):
    """``llmrec run``'s evaluation: :class:`EvalOptions` and the protocol (a compare entry
    names its own)."""

    protocol: Literal["full", "candidates"] = "full"
    #: full ranking: which known items are left out (``known``: all; ``window``: the last
    #: ``mask_window``, as HSTU and LlamaRec; ``none``)
    mask: Literal["known", "window", "none"] = "known"
    mask_window: int = Field(default=200, ge=1)


class RunConfig(StrictConfig):
    """Everything that defines a run. ``params`` is validated by the model's own config."""

    dataset: str = "ml-100k"
    model: str = "popularity"
    params: dict[str, Any] = Field(default_factory=dict)
    split: SplitConfig = Field(default_factory=SplitConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    seed: int = Field(default=0, ge=0, le=MAX_SEED)
    save_model: bool = True
    #: how the model runs (threads, device, ...): not part of the model's config
    runtime: RuntimeOptions = Field(default_factory=RuntimeOptions)


def run_experiment(
    config: RunConfig,
    *,
    run_dir: Path,
    store: ResultsStore | None = None,
    data_dir: Path | None = None,
    log: Callable[[str], None] = lambda _msg: None,
    verbose: bool = False,
) -> RunRecord:
    """Run ``config`` and write ``record.json`` (and the fitted model) into ``run_dir``.

    ``log`` gets a few short lines (data, split, model and the settings given); with
    ``verbose`` also the full config, every default included (as ``record.json`` holds it).

    The folder is written beside ``run_dir`` and renamed into place when complete, and only
    then is the record added to ``store``: an interrupted run leaves neither a folder nor a row.
    """
    from llmrec.data import load_dataset

    # the model, its config and the output folder are checked before any data is read: a typo
    # fails in a second
    model = seeded_model(config.model, config.params, config.seed, config.runtime)
    config.runtime.check()
    make_dirs(run_dir.parent, "the parent folder of run folders")
    timer = StageTimer()
    with timer("load"):
        data = load_dataset(config.dataset, data_dir=data_dir)
    log(f"loaded {data!r}")
    with timer("split"):
        split = split_data(data, config.split, config.seed)
    log(
        f"split {config.split.kind}: train {len(split.train)}, valid {len(split.valid)}, "
        f"test {len(split.test)} interactions"
    )
    _note_large_cutoffs(config, data.n_items, log)
    full_config = {**config.model_dump(mode="json"), "params": model.config.model_dump(mode="json")}
    log(f"model {config.model}: {_given_settings(config)}")
    if verbose:
        log(f"config {dumps_json(full_config, indent=None)}")
    with timer("fit"):
        model.fit(split.train, split.valid)
    ev = config.eval
    with timer("evaluate"):
        valid = _evaluate(model, split, config, "valid")
        test = _evaluate(model, split, config, "test")
    metrics = flat_metrics(test, split, ev, slice_keys=("ndcg@10", "recall@10", "n_users"))
    metrics.update({f"valid_{k}": v for k, v in valid.metrics.items() if "@" in k})
    timings = dict(timer.seconds)
    timings["test_per_user_ms"] = test.timings["per_user_ms"]
    record = make_record(
        model,
        run_id=run_dir.name,
        dataset=data.name,
        protocol=config.eval.protocol,
        config=full_config,
        metrics=metrics,
        timings=timings,
        peak_rss_mb=peak_rss_mb(),
        extra={"violations": test.violations, "engine": describe_engine(config.runtime)},
        model_name=config.model,
    )
    with staged_dir(run_dir) as partial:
        if config.save_model:
            model.save(partial / "model")
        write_record(record, partial)
    if store is not None:
        store.add(record)
    return record


def default_run_dir(parent: Path, model: str) -> Path:
    return parent / new_run_id(model)


def _given_settings(config: RunConfig, width: int = 100) -> str:
    """The params the config sets (dotted keys), the evaluation and the seed, in a line."""

    def flat(prefix: str, value: Any) -> list[str]:
        if isinstance(value, dict) and value:
            return [s for k, v in value.items() for s in flat(f"{prefix}{k}.", v)]
        return [f"{prefix.rstrip('.')}={value}"]

    given = [s for s in flat("", config.params) if not s.startswith("seed=")]
    text = ", ".join(given) if given else "default settings"
    if len(text) > width:
        text = text[: width - 1] + "…"
    ev = config.eval
    return f"{text}; {ev.protocol} ranking @{','.join(map(str, ev.ks))}, seed {config.seed}"


def split_data(data: Dataset, settings: SplitConfig, seed: int) -> Split:
    """``data`` split as ``settings`` say (``seed`` drives the random and temporal kinds),
    after the k-core filter and tie order they name."""
    from llmrec.data.filters import k_core, ties_by_item

    if settings.core:
        data = k_core(data, min_user=settings.core, min_item=settings.core)
    if settings.ties == "item":
        data = ties_by_item(data)
    if settings.kind == "loo":
        return make_split(data, "loo", min_history=settings.min_history)
    return make_split(
        data, settings.kind, seed=seed, valid_frac=settings.valid_frac, test_frac=settings.test_frac
    )


def seeded_model(
    name: str, params: Mapping[str, Any], seed: int, runtime: RuntimeOptions | None = None
) -> Recommender:
    """The model ``name`` built from ``params``, with the run's ``seed`` unless ``params``
    sets its own: how ``llmrec run`` and every compare entry build their model."""
    return create_model(name, {"seed": seed, **params}, runtime=runtime)


def evaluate_protocol(
    model: Recommender,
    split: Split,
    settings: EvalOptions,
    protocol: str,
    *,
    phase: Phase,
    seed: int,
    users: np.ndarray | None = None,
    mask: SeenMask = "known",
    mask_window: int = 200,
) -> EvalResult:
    """``model`` evaluated on ``phase`` as ``settings`` say: ``candidates`` ranks 1 held-out
    + ``n_negatives`` seeded negatives; any other protocol ranks the full catalogue
    (optionally ``users`` only) without the known items ``mask`` names."""
    ks = tuple(settings.ks)
    if protocol == "candidates":
        return evaluate_candidates(
            model,
            split,
            phase=phase,
            ks=ks,
            n_negatives=settings.n_negatives,
            sampling=settings.sampling,
            users=users,
            seed=seed,
        )
    return evaluate(
        model, split, phase=phase, ks=ks, users=users, mask=mask, mask_window=mask_window
    )


def flat_metrics(
    result: EvalResult,
    split: Split,
    settings: EvalOptions,
    *,
    slice_keys: Sequence[str] | None = None,
) -> dict[str, float]:
    """The flat metrics of a test-phase ``result``: its own, then its cold-item and cold-user
    slices (``cold_items_ndcg@10``, ...; only ``slice_keys`` of each slice when given)."""
    out = {k: float(v) for k, v in result.metrics.items()}
    slices = slice_report(
        result,
        split,
        max_item_count=settings.cold_item_max_count,
        max_user_count=settings.cold_user_max_count,
    )
    for name in ("cold_items", "cold_users"):
        for key, value in slices[name].items():
            if slice_keys is None or key in slice_keys:
                out[f"{name}_{key}"] = value
    return out


def make_record(
    model: Recommender,
    *,
    run_id: str,
    dataset: str,
    protocol: str,
    config: dict[str, Any],
    metrics: dict[str, float],
    timings: dict[str, float],
    peak_rss_mb: float,
    extra: dict[str, Any],
    model_name: str,
) -> RunRecord:
    """The :class:`RunRecord` of a fitted and evaluated ``model`` (named ``model_name`` as the
    config named it): created now, in this environment, the model's diagnostics in ``extra``."""
    record = RunRecord(
        run_id=run_id,
        created=time.strftime("%Y-%m-%dT%H:%M:%S"),
        dataset=dataset,
        model=model_name,
        protocol=protocol,
        config=config,
        metrics=metrics,
        timings=timings,
        peak_rss_mb=peak_rss_mb,
        environment=environment(),
        extra=extra,
    )
    if diagnostics := model.diagnostics():
        record.extra["diagnostics"] = diagnostics
    return record


def _note_large_cutoffs(config: RunConfig, n_items: int, log: Callable[[str], None]) -> None:
    large = sorted({k for k in config.eval.ks if k > n_items})
    if large:
        log(
            f"note: eval.ks {large} exceed the catalogue ({n_items} items): lists are padded, "
            f"so those cutoffs measure the same as @{n_items}"
        )


def _evaluate(model: Recommender, split: Split, config: RunConfig, phase: Phase) -> EvalResult:
    ev = config.eval
    return evaluate_protocol(
        model,
        split,
        ev,
        ev.protocol,
        phase=phase,
        seed=config.seed,
        mask=ev.mask,
        mask_window=ev.mask_window,
    )
