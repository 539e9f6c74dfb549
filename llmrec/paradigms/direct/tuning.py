"""Fine-tuning an LM ranker's LM on the training split (LlamaRec's recipe, and its likelihood twin).

Each training target (:mod:`~llmrec.paradigms.direct.tune_data`) becomes the prompt the ranker
writes at inference — profile, history before the target, candidates — and the loss is a
listwise cross-entropy over the candidates (:mod:`~llmrec.paradigms.direct.tune_loss`): for the
verbaliser, over the candidates' label tokens at the answer position (a softmax over the labels
only); for the likelihood ranker, over the candidates' sequence log-likelihoods after the
prompt. The LM is adapted with LoRA through ``peft`` (rank, alpha, dropout, target modules) or
in full. Validation NDCG@10 on a held-out slice of training targets is measured before the
first step (the zero-shot figure) and every ``eval_every`` steps; training stops after
``patience`` evaluations without a gain, at ``max_steps`` or ``max_seconds``, and the best
weights seen are restored.

The loop is short and written here rather than through ``transformers.Trainer``: the metric
that stops it is a ranking NDCG over prompts, not an evaluation loss, and the Trainer restores
the best model only from checkpoints written to disk. Optimiser and schedule are torch's AdamW
and transformers' linear warm-up schedule.

Tuning adapts the :class:`~llmrec.lm.hf.HFCausalLM` it is given *in place* (its ``model``
becomes the ``peft`` model) and gives it a new ``model_id``, so no LM cache serves the
zero-shot model's answers for the tuned one. Only the transformers backend can be tuned.

Saved (:func:`save_tuned`): LoRA adapters as ``adapter_model.safetensors`` plus
``adapter_config.json`` (``peft``'s ``save_pretrained``); a fully tuned model as
``model.safetensors`` plus ``config.json``; ``tuning.json`` holds the :class:`TuneReport`.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import Field

from llmrec.config import StrictConfig
from llmrec.data.dataset import Dataset
from llmrec.errors import ConfigError, require
from llmrec.lm.base import LanguageModel
from llmrec.paradigms.direct.tune_data import build_examples
from llmrec.paradigms.direct.tune_loss import Encoded, Scorer, encode_examples, scorer_for

if TYPE_CHECKING:
    import torch

    from llmrec.lm.hf import HFCausalLM
    from llmrec.paradigms.direct.rankers import Ranker

__all__ = ["TuneConfig", "TuneReport", "load_tuned", "save_tuned", "tune_ranker"]

REPORT_FILE = "tuning.json"
_ADAPTER_CONFIG = "adapter_config.json"


class TuneConfig(StrictConfig):
    """How a ranker's LM is adapted on the training split (the ``tune:`` block).

    Attributes:
        method: ``lora`` (adapters through ``peft``) or ``full`` (every weight).
        rank, alpha, dropout, target_modules: the LoRA adapters (ignored by ``full``).
        learning_rate: AdamW's peak rate (linear warm-up over ``warmup_steps``, then decay).
        batch_size: prompts per optimiser step.
        epochs, max_steps, max_seconds: the budget; the first limit reached ends training
            (``max_seconds`` is wall time spent training and validating, checked per step).
        targets_per_user: training targets per user: the newest positions of the sequence.
        min_history: fewest history items before a target.
        n_candidates: candidates per training prompt (the target and ``n - 1`` negatives).
        negatives: the first stage that proposes them (see :mod:`.tune_data`).
        order: how candidate lists are presented, in training *and* at inference:
            ``shuffled`` (a seeded shuffle per list: no position shortcut; the tuned ranker
            shuffles each user's candidates the same way before it prompts, and scores them
            back in the given order) or ``retriever`` (the first stage's order, kept at
            inference: the LM may learn to lean on it).
        valid_users: users whose last training target is held out for early stopping.
        eval_every: optimiser steps between validations.
        patience: validations without a gain before training stops.
        seed: seeds example building, shuffling and dropout.
    """

    method: Literal["lora", "full"] = "lora"
    rank: int = Field(default=8, ge=1)
    alpha: float = Field(default=16.0, gt=0)
    dropout: float = Field(default=0.05, ge=0.0, lt=1.0)
    target_modules: list[str] = Field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"], min_length=1
    )
    learning_rate: float = Field(default=5e-4, gt=0.0)
    warmup_steps: int = Field(default=10, ge=0)
    batch_size: int = Field(default=4, ge=1)
    epochs: int = Field(default=1, ge=1)
    max_steps: int | None = Field(default=None, ge=1)
    max_seconds: float | None = Field(default=None, gt=0)
    targets_per_user: int = Field(default=2, ge=1)
    min_history: int = Field(default=1, ge=1)
    n_candidates: int = Field(default=20, ge=2, le=26)
    negatives: Literal["uniform", "popularity"] = "uniform"
    order: Literal["retriever", "shuffled"] = "shuffled"
    valid_users: int = Field(default=32, ge=0)
    eval_every: int = Field(default=25, ge=1)
    patience: int = Field(default=3, ge=1)
    seed: int = 0


@dataclass
class TuneReport:
    """What tuning cost and how validation moved.

    Attributes:
        method: ``lora`` or ``full``.
        train_examples, valid_examples: targets built.
        steps: optimiser steps taken; ``examples_seen``: prompts trained on (with repeats);
        tokens_seen: real (unpadded) prompt tokens of those prompts.
        seconds: wall time of the loop; ``cpu_seconds``: process CPU time (all threads).
        trainable_parameters: weights the optimiser updated; ``weights_bytes``: their size
            (what the saved adapter, or the fully tuned model, holds).
        zero_shot_ndcg, best_ndcg: validation NDCG@10 before training and at ``best_step``.
        stopped: ``patience``, ``max_steps``, ``max_seconds`` or ``epochs``.
        curve: one row per validation: step, examples seen, mean training loss since the last
            row, validation NDCG@10.
    """

    method: str
    train_examples: int
    valid_examples: int
    steps: int = 0
    examples_seen: int = 0
    tokens_seen: int = 0
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    trainable_parameters: int = 0
    weights_bytes: int = 0
    zero_shot_ndcg: float | None = None
    best_ndcg: float | None = None
    best_step: int = 0
    stopped: str = "epochs"
    curve: list[dict[str, float]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def hf_model_of(lm: LanguageModel) -> HFCausalLM:
    """The transformers backend behind ``lm`` (a :class:`~llmrec.lm.cache.CachedLM` is looked
    through); a one-line :class:`ConfigError` for any other backend."""
    from llmrec.lm.hf import HFCausalLM

    inner = getattr(lm, "inner", lm)
    if not isinstance(inner, HFCausalLM):
        raise ConfigError(
            f"tune: only a transformers (hf) model can be tuned, not {lm.model_id!r}; "
            "use a packaged causal model such as smollm2-135m or hf:FOLDER"
        )
    return inner


def tune_ranker(ranker: Ranker, train: Dataset, config: TuneConfig) -> TuneReport:
    """Adapt ``ranker``'s LM (in place) on ``train``; the ranker must already be bound."""
    lm = hf_model_of(ranker.lm)
    torch: Any = require("torch", "tune")
    torch.manual_seed(config.seed)
    train_ex, valid_ex = build_examples(
        train.history(),
        train.item_popularity(),
        targets_per_user=config.targets_per_user,
        min_history=config.min_history,
        n_candidates=config.n_candidates,
        negatives=config.negatives,
        order=config.order,
        valid_users=config.valid_users,
        seed=config.seed,
    )
    if not train_ex:
        raise ConfigError(
            f"tune: no training targets (users need more than min_history={config.min_history} "
            "training items)"
        )
    report = TuneReport(config.method, len(train_ex), len(valid_ex))
    model, params = _trainable(lm, config)
    report.trainable_parameters = sum(int(p.numel()) for p in params)
    report.weights_bytes = sum(int(p.numel()) * p.element_size() for p in params)
    loop = _Loop(lm, model, params, config, report, scorer_for(ranker.kind))
    loop.run(encode_examples(lm, ranker, train_ex), encode_examples(lm, ranker, valid_ex))
    model.eval()
    _rename(ranker.lm, lm, params)
    return report


def _trainable(lm: HFCausalLM, config: TuneConfig) -> tuple[Any, list[torch.Tensor]]:
    """The model to train (``lm.model`` wrapped by ``peft``, or as it is) and its trainable
    parameters; ``lm.model`` is replaced by the wrapped model."""
    if config.method == "full":
        for p in lm.model.parameters():
            p.requires_grad_(True)
        return lm.model, [p for p in lm.model.parameters()]
    peft: Any = require("peft", "tune")
    lora = peft.LoraConfig(
        r=config.rank,
        lora_alpha=config.alpha,
        lora_dropout=config.dropout,
        target_modules=list(config.target_modules),
        task_type="CAUSAL_LM",
    )
    try:
        model = peft.get_peft_model(lm.model, lora)
    except ValueError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"tune: LoRA cannot adapt {lm.model_id}: {first}") from None
    lm.model = model
    return model, [p for p in model.parameters() if p.requires_grad]


def _rename(outer: LanguageModel, lm: HFCausalLM, params: list[torch.Tensor]) -> None:
    """A new ``model_id`` for the tuned weights (and for a cache wrapped around them)."""
    digest = hashlib.sha256()
    for p in params[:64]:
        digest.update(p.detach().float().cpu().numpy().tobytes())
    base = lm.model_id.split("+tuned-")[0]
    lm.model_id = f"{base}+tuned-{digest.hexdigest()[:12]}"
    outer.model_id = lm.model_id


class _Loop:
    """AdamW steps over shuffled batches, validated every ``eval_every`` steps."""

    def __init__(
        self,
        lm: HFCausalLM,
        model: Any,
        params: list[torch.Tensor],
        config: TuneConfig,
        report: TuneReport,
        scorer: Scorer,
    ) -> None:
        import torch

        self.model, self.params, self.config, self.report = model, params, config, report
        self.lm, self.scorer = lm, scorer
        self.opt = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=0.0)
        self.best: dict[int, torch.Tensor] | None = None
        self.losses: list[float] = []

    def run(self, train: list[Encoded], valid: list[Encoded]) -> None:
        transformers: Any = require("transformers", "tune")
        cfg, rep = self.config, self.report
        per_epoch = math.ceil(len(train) / cfg.batch_size)
        total = per_epoch * cfg.epochs
        if cfg.max_steps is not None:
            total = min(total, cfg.max_steps)
        sched = transformers.get_linear_schedule_with_warmup(
            self.opt, min(cfg.warmup_steps, total), total
        )
        tic, cpu = time.perf_counter(), time.process_time()
        first = self._validate(valid, 0)
        if valid:
            rep.zero_shot_ndcg = rep.best_ndcg = first
            self._keep()
        stale = 0
        for batch in self._batches(train, total):
            self._step(batch)
            sched.step()
            late = cfg.max_seconds is not None and time.perf_counter() - tic >= cfg.max_seconds
            if rep.steps % cfg.eval_every and rep.steps < total and not late:
                continue
            stale = self._checkpoint(valid, stale)
            if valid and stale >= cfg.patience:
                rep.stopped = "patience"
                break
            if late:
                rep.stopped = "max_seconds"
                break
        if rep.stopped == "epochs" and total < per_epoch * cfg.epochs:
            rep.stopped = "max_steps"
        if valid:
            self._restore()
        rep.seconds = time.perf_counter() - tic
        rep.cpu_seconds = time.process_time() - cpu

    def _checkpoint(self, valid: list[Encoded], stale: int) -> int:
        """Validate; keep the weights when they are the best so far. Returns the count of
        validations since the last gain."""
        rep = self.report
        ndcg = self._validate(valid, rep.steps)
        if not valid:
            return 0
        if rep.best_ndcg is None or ndcg > rep.best_ndcg:
            rep.best_ndcg, rep.best_step = ndcg, rep.steps
            self._keep()
            return 0
        return stale + 1

    def _batches(self, train: list[Encoded], total: int) -> Iterator[list[Encoded]]:
        rng = np.random.default_rng(self.config.seed)
        size = self.config.batch_size
        done = 0
        while True:
            order = rng.permutation(len(train))
            for start in range(0, len(order), size):
                if done == total:
                    return
                done += 1
                yield [train[int(i)] for i in order[start : start + size]]

    def _step(self, batch: list[Encoded]) -> None:
        import torch

        self.model.train()
        logits, answers = self.scorer(self.model, self.lm, batch)
        loss = torch.nn.functional.cross_entropy(logits, answers)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, 1.0)
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        rep = self.report
        rep.steps += 1
        rep.examples_seen += len(batch)
        rep.tokens_seen += sum(e.n_tokens for e in batch)
        self.losses.append(float(loss.detach()))

    def _validate(self, valid: list[Encoded], step: int) -> float:
        """Mean NDCG@10 of the answers on ``valid`` (NaN without examples); adds a curve row
        with the mean training loss since the last row."""
        ndcg = self._ndcg(valid) if valid else float("nan")
        loss = float(np.mean(self.losses)) if self.losses else float("nan")
        row = {"step": step, "examples_seen": self.report.examples_seen, "train_loss": loss}
        self.report.curve.append(row | {"valid_ndcg@10": ndcg})
        self.losses = []
        return ndcg

    def _ndcg(self, valid: list[Encoded]) -> float:
        import torch

        self.model.eval()
        gains: list[float] = []
        with torch.no_grad():
            for start in range(0, len(valid), self.config.batch_size):
                batch = valid[start : start + self.config.batch_size]
                logits, answers = self.scorer(self.model, self.lm, batch)
                own = logits.gather(1, answers[:, None])
                ranks = (logits > own).sum(1).cpu().numpy()
                gains.extend(np.where(ranks < 10, 1.0 / np.log2(ranks + 2.0), 0.0).tolist())
        return float(np.mean(gains))

    def _keep(self) -> None:
        self.best = {i: p.detach().clone() for i, p in enumerate(self.params)}

    def _restore(self) -> None:
        import torch

        assert self.best is not None
        with torch.no_grad():
            for i, p in enumerate(self.params):
                p.copy_(self.best[i])


# --- persistence -------------------------------------------------------------------------------
def save_tuned(lm: LanguageModel, folder: Path, report: TuneReport | None) -> None:
    """Write the tuned weights of ``lm`` into ``folder``: LoRA adapters (peft's
    ``save_pretrained``) or the whole fully tuned model, as safetensors; and ``tuning.json``."""
    hf = hf_model_of(lm)
    folder.mkdir(parents=True, exist_ok=True)
    hf.model.save_pretrained(str(folder), safe_serialization=True)
    meta = {"model_id": hf.model_id, "report": report.as_dict() if report else None}
    (folder / REPORT_FILE).write_text(json.dumps(meta, indent=1), encoding="utf-8")


def load_tuned(lm: LanguageModel, folder: Path) -> TuneReport | None:
    """Put the tuned weights saved in ``folder`` into ``lm`` (in place); return the report."""
    hf = hf_model_of(lm)
    if not (folder / REPORT_FILE).is_file():
        raise ConfigError(f"tune: {folder} holds no tuned ranker ({REPORT_FILE} is missing)")
    try:
        meta = json.loads((folder / REPORT_FILE).read_text(encoding="utf-8"))
        if (folder / _ADAPTER_CONFIG).is_file():
            peft: Any = require("peft", "tune")
            hf.model = peft.PeftModel.from_pretrained(hf.model, str(folder))
        else:
            transformers: Any = require("transformers", "lm")
            device = next(hf.model.parameters()).device
            hf.model = transformers.AutoModelForCausalLM.from_pretrained(
                str(folder), dtype=next(hf.model.parameters()).dtype
            ).to(device)
    except (OSError, ValueError, KeyError) as exc:
        raise ConfigError(f"tune: cannot load the tuned weights in {folder}: {exc}") from None
    hf.model.eval()
    hf.model_id = lm.model_id = str(meta["model_id"])
    report = meta.get("report")
    return TuneReport(**report) if isinstance(report, dict) else None
