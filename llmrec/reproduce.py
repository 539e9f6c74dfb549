"""The anchors' own protocols, run on llmrec's models: ``llmrec reproduce NAME``.

"Why don't I get the paper's numbers?" is mostly a question of protocol. Each :class:`Anchor`
names a paper's dataset preparation, split and evaluation as llmrec options (a filter from
:mod:`llmrec.data.filters`, a split, a seen-item ``mask`` or the candidate protocol of
:mod:`llmrec.eval.protocols`), the figures the paper reports, and the models llmrec runs under
it. :func:`reproduce` scores our models under the anchor's protocol and again under llmrec's
strict one (full ranking, every known item masked, leave-one-out by time), so the table shows
how much of a gap is protocol and how much is model.

The anchors (read from their code; docs/benchmarks.md, "The anchors' protocols"):

* ``hstu-ml1m`` — meta-recsys/generative-recommenders on ML-1M: leave-one-out by time, full
  ranking over all items with only the items of the input sequence (the last 200) masked.
* ``llamarec-ml100k`` — Yueeeeeeee/LlamaRec on ML-100K: 5-core filtering, ties in time ordered
  by item id, leave-one-out, full ranking with the last 200 items masked.
* ``llmrank-ml1m`` — RUCAIBox/LLMRank on ML-1M: the held-out item among 19 random negatives (20
  candidates), NDCG@10 x 100, on a user sample.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field

from llmrec.config import StrictConfig
from llmrec.data.splits import Split, leave_one_out
from llmrec.errors import ConfigError
from llmrec.eval.protocols import EvalResult, evaluate
from llmrec.experiment import EvalConfig, SplitConfig, evaluate_protocol, split_data
from llmrec.models.base import Recommender
from llmrec.runtime import RuntimeOptions

__all__ = ["ANCHORS", "Anchor", "ReproduceConfig", "reproduce"]

#: our SASRec on ML-1M: benchmarks/bench_ml1m.py's settings, 9 epochs being what 15 CPU-minutes
#: train on the 2-core machine (one thread) with length-grouped batches and a bf16 output product
SASREC_ML1M: dict[str, Any] = {
    "max_len": 200,
    "stride": None,
    "batch_size": 128,
    "dropout": 0.2,
    "attn_dropout": 0.2,
    "lr": 2e-3,
    "epochs": 9,
    "patience": 2,
    "batching": "by_length",
    "precision": "bf16",
}


#: full ranking, only the last 200 known items masked (HSTU's and LlamaRec's evaluations)
WINDOW_200 = EvalConfig(ks=[10], mask="window", mask_window=200)


@dataclass(frozen=True)
class Anchor:
    """A paper's protocol as llmrec options, and the figures it reports.

    Attributes:
        name: the ``llmrec reproduce`` name.
        source: paper and repository.
        dataset: llmrec dataset name.
        protocol: one line on what the anchor does.
        metrics: the metrics the paper reports, as llmrec names them (``recall@10`` = HR@10).
        paper: model -> metric -> the paper's figure (on the paper's scale).
        scale: the paper's scale over llmrec's (100 for LLMRank's NDCG x 100).
        split: the anchor's filtering and split, as ``llmrec run``'s ``split:`` options.
        eval: the anchor's evaluation, as ``llmrec run``'s ``eval:`` options.
        sasrec: our SASRec's settings on this dataset.
    """

    name: str
    source: str
    dataset: str
    protocol: str
    metrics: tuple[str, ...]
    paper: dict[str, dict[str, float]]
    scale: float = 1.0
    split: SplitConfig = field(default_factory=SplitConfig)
    eval: EvalConfig = field(default_factory=lambda: WINDOW_200)
    sasrec: dict[str, Any] = field(default_factory=dict)


ANCHORS: dict[str, Anchor] = {
    a.name: a
    for a in (
        Anchor(
            name="hstu-ml1m",
            source="Zhai et al., ICML 2024 (meta-recsys/generative-recommenders)",
            dataset="ml-1m",
            protocol="leave-one-out by time; full ranking, the last 200 known items masked",
            metrics=("recall@10", "ndcg@10"),
            paper={
                "SASRec": {"recall@10": 0.2853, "ndcg@10": 0.1603},
                "HSTU": {"recall@10": 0.3097, "ndcg@10": 0.1720},
                "HSTU-large": {"recall@10": 0.3294, "ndcg@10": 0.1893},
            },
            sasrec=SASREC_ML1M,
        ),
        Anchor(
            name="llamarec-ml100k",
            source="Yue et al., 2023 (Yueeeeeeee/LlamaRec)",
            dataset="ml-100k",
            protocol="5-core; ties by item id; leave-one-out; full ranking, last 200 masked",
            metrics=("recall@10", "ndcg@10"),
            paper={
                "SASRec": {"ndcg@10": 0.0522},
                "LRURec": {"ndcg@10": 0.0705},
                "LlamaRec (7B)": {"ndcg@10": 0.0759},
            },
            split=SplitConfig(core=5, ties="item"),
        ),
        Anchor(
            name="llmrank-ml1m",
            source="Hou et al., ECIR 2024 (RUCAIBox/LLMRank)",
            dataset="ml-1m",
            protocol="leave-one-out; the held-out item among 19 random negatives (20 candidates)",
            metrics=("ndcg@10",),
            paper={
                "ChatGPT": {"ndcg@10": 48.80},
                "GPT-4": {"ndcg@10": 46.74},
                "Vicuna-13B": {"ndcg@10": 22.64},
                "UniSRec": {"ndcg@10": 26.67},
                "BM25": {"ndcg@10": 17.88},
            },
            scale=100.0,
            eval=EvalConfig(protocol="candidates", ks=[10], n_negatives=19),
            sasrec=SASREC_ML1M,
        ),
    )
}


class ReproduceConfig(StrictConfig):
    """What one ``llmrec reproduce`` runs.

    Attributes:
        anchor: a name of :data:`ANCHORS`.
        dataset: another dataset under the anchor's protocol (default: the anchor's).
        seed: seeds training, the user sample and the candidates.
        epochs: most SASRec epochs (default: the anchor's settings, else SASRec's).
        model_dir: a saved SASRec fitted on the anchor's split, scored instead of training one
            (under the strict protocol too where the splits are the same).
        users: test users of the candidate protocol and of the LM ranker (a seeded sample;
            0 = all, for the classic models).
        lm: the zero-shot LM ranker of the candidate protocol (``None``: no LM row).
    """

    anchor: str
    dataset: str | None = None
    seed: int = Field(default=0, ge=0)
    epochs: int | None = Field(default=None, ge=1)
    model_dir: Path | None = None
    users: int = Field(default=200, ge=0)
    lm: str | None = "smollm2-135m"
    runtime: RuntimeOptions = Field(default_factory=RuntimeOptions)

    def spec(self) -> Anchor:
        if self.anchor not in ANCHORS:
            raise ConfigError(f"unknown anchor {self.anchor!r}; one of {sorted(ANCHORS)}")
        return ANCHORS[self.anchor]


Row = dict[str, Any]


def reproduce(
    config: ReproduceConfig,
    *,
    data_dir: Path | None = None,
    log: Callable[[str], None] = lambda _msg: None,
) -> list[Row]:
    """Run the anchor's protocol and llmrec's strict one; one row per (model, protocol).

    Rows hold ``model``, ``protocol`` (``paper``, the anchor's name, or ``strict``), ``users``
    and the anchor's metrics on the paper's scale; ours add ``fit_cpu_s`` where a model was
    trained here.
    """
    from llmrec.data import load_dataset

    anchor = config.spec()
    data = load_dataset(config.dataset or anchor.dataset, data_dir=data_dir)
    strict = leave_one_out(data)
    same = anchor.split == SplitConfig()
    theirs = strict if same else split_data(data, anchor.split, config.seed)
    log(f"{anchor.name}: {anchor.protocol}")
    rows: list[Row] = [
        {"model": m, "protocol": "paper", **figs} for m, figs in anchor.paper.items()
    ]
    sasrec, fit_cpu = _sasrec(config, anchor, theirs, log)
    rows.append(_row("SASRec (ours)", anchor.name, _score(anchor, config, sasrec, theirs), anchor))
    rows[-1]["fit_cpu_s"] = fit_cpu
    if theirs is not strict:
        sasrec, fit_cpu = _sasrec(
            config.model_copy(update={"model_dir": None}), anchor, strict, log
        )
    strict_result = evaluate(sasrec, strict, ks=(10,), users=_users(config, anchor, strict))
    rows.append(_row("SASRec (ours)", "strict", strict_result, anchor))
    rows[-1]["fit_cpu_s"] = fit_cpu
    if anchor.eval.protocol == "candidates":
        rows += _candidate_rows(config, anchor, strict, log)
    return rows


def _sasrec(
    config: ReproduceConfig, anchor: Anchor, split: Split, log: Callable[[str], None]
) -> tuple[Recommender, float | None]:
    """Our SASRec on ``split``: loaded from ``config.model_dir`` or fitted (CPU seconds)."""
    import time

    from llmrec.models import create_model

    if config.model_dir is not None:
        model = Recommender.load(config.model_dir, runtime=config.runtime)
        if model.n_items != split.train.n_items:
            raise ConfigError(
                f"the model in {config.model_dir} knows {model.n_items:,} items; "
                f"{anchor.name}'s split has {split.train.n_items:,}"
            )
        return model, None
    params = {**anchor.sasrec, "seed": config.seed}
    if config.epochs is not None:
        params["epochs"] = config.epochs
    log(f"fitting SASRec on {split.train.n_interactions:,} interactions: {params}")
    model = create_model("sasrec", params, config.runtime)
    cpu = time.process_time()
    model.fit(split.train, split.valid)
    return model, time.process_time() - cpu


def _users(config: ReproduceConfig, anchor: Anchor, split: Split) -> np.ndarray | None:
    """The seeded user sample of the candidate protocol (every user otherwise)."""
    if anchor.eval.protocol != "candidates" or not config.users:
        return None
    active = split.test.active_users().astype(np.int64)
    order = np.random.default_rng(config.seed).permutation(active)
    return np.sort(order[: config.users])


def _score(anchor: Anchor, config: ReproduceConfig, model: Recommender, split: Split) -> EvalResult:
    ev = anchor.eval
    return evaluate_protocol(
        model,
        split,
        ev,
        ev.protocol,
        phase="test",
        seed=config.seed,
        users=_users(config, anchor, split),
        mask=ev.mask,
        mask_window=ev.mask_window,
    )


def _candidate_rows(
    config: ReproduceConfig, anchor: Anchor, split: Split, log: Callable[[str], None]
) -> list[Row]:
    """Popularity and (if asked) a zero-shot LM ranker on the same candidates and users."""
    from llmrec.models import create_model

    models: list[tuple[str, dict[str, Any]]] = [("popularity", {})]
    if config.lm:
        ranker = {"kind": "verbaliser", "lm": config.lm}
        models.append(("two_stage", {"retriever": "popularity", "ranker": ranker}))
    rows = []
    for name, params in models:
        model = create_model(name, params, config.runtime).fit(split.train, split.valid)
        label = f"{config.lm} zero-shot (ours)" if name == "two_stage" else "popularity (ours)"
        log(f"scoring {label}")
        rows.append(_row(label, anchor.name, _score(anchor, config, model, split), anchor))
    return rows


def _row(model: str, protocol: str, result: EvalResult, anchor: Anchor) -> Row:
    figures = {m: result.metrics[m] * anchor.scale for m in anchor.metrics}
    return {"model": model, "protocol": protocol, "users": len(result.users), **figures}
