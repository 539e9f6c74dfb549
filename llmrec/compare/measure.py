"""What a stage measures beside accuracy: latency, peak memory, size on disk, LM cost, training.

Everything here asks the model through its public hooks (:meth:`Recommender.language_models`,
:meth:`Recommender.training_log`); nothing reaches inside a model.
"""

from __future__ import annotations

import math
import time
import weakref
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from llmrec.compare.config import CompareEntry
from llmrec.compare.context import StageContext
from llmrec.engine import run_locally
from llmrec.errors import LlmrecError
from llmrec.models.base import Recommender

if TYPE_CHECKING:
    from llmrec.lm.base import LanguageModel

__all__ = [
    "LEDGER",
    "LMLedger",
    "Memory",
    "latency",
    "ranker_stats",
    "save_model",
    "training_summary",
    "tuning_cost",
    "tuning_size",
]

#: the usage counters summed over a model's LMs
LM_COUNTERS = ("calls", "prompt_tokens", "generated_tokens", "cache_hits")


def latency(entry: CompareEntry, model: Recommender, ctx: StageContext) -> dict[str, float]:
    """Per-user milliseconds from single-user calls on a seeded sample (one warm-up call),
    in this process under every engine."""
    users = ctx.latency_users
    call: Callable[[int], object]
    if entry.protocol == "candidates":
        cands = ctx.latency_candidates()

        def call(row: int) -> object:
            return model.score_candidates(
                users[row : row + 1], cands[row : row + 1], history=ctx.hist
            )
    else:

        def call(row: int) -> object:
            return model.recommend(users[row : row + 1], 10, history=ctx.hist)

    if len(users) == 0:
        return {}
    times = []
    # timed in this process whatever the engine: what one machine answers one user in, not a
    # cluster's round trips (docs/distributed.md)
    with run_locally():
        call(0)
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


def save_model(model: Recommender, folder: Path) -> int:
    """Save the fitted model into the stage (``llmrec serve`` loads it from there); return its
    size on disk in bytes, 0 if it cannot be saved. :meth:`Recommender.save` writes beside and
    renames into place, so an interrupted save never leaves a half-written model."""
    try:
        model.save(folder)
    except (LlmrecError, NotImplementedError, OSError, TypeError, ValueError):
        return 0
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


class Memory:
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


class LMLedger:
    """LM usage per stage, from the backends' counters.

    Several models may share a backend (the encoders are loaded once per process, for every
    comparison in it), so a stage's usage is the change of each of its LMs' counters since the
    ledger last read that LM — at the end of an earlier stage, or never (then from zero). LMs
    are held weakly: the ledger never keeps a released model in memory.
    """

    def __init__(self) -> None:
        self._seen: dict[int, tuple[weakref.ref[LanguageModel], dict[str, float]]] = {}

    def take(self, model: Recommender) -> dict[str, float] | None:
        """Usage of ``model``'s LMs since the last :meth:`take` that saw each of them, summed
        over :data:`LM_COUNTERS`; ``None`` when the model holds no LM (not measured)."""
        lms = model.language_models()
        if not lms:
            return None
        totals = dict.fromkeys(LM_COUNTERS, 0.0)
        for lm in lms:
            now = lm.stats.as_dict()
            ref, before = self._seen.get(id(lm), (None, {}))
            if ref is None or ref() is not lm:  # never seen, or an id reused after release
                before = {}
            for name in LM_COUNTERS:
                totals[name] += float(now.get(name, 0.0)) - float(before.get(name, 0.0))
            self._seen[id(lm)] = (weakref.ref(lm), {k: float(v) for k, v in now.items()})
        return totals


#: the process's ledger: shared encoders outlive one comparison
LEDGER = LMLedger()


def training_summary(model: Recommender) -> dict[str, Any]:
    """Early-stopping summary of torch-trained models (epochs run, best epoch and score)."""
    log = model.training_log()
    if log is None:
        return {}
    return {
        "epochs_evaluated": log.epochs[-1] if log.epochs else 0,
        "best_epoch": int(log.best_epoch),
        "best_valid_ndcg@10": float(log.best_score),
        "time_to_best_s": float(log.time_to_best_s),
    }


def tuning_cost(model: Recommender) -> dict[str, float]:
    """What adapting an LM in ``fit`` cost (``tune_cpu_s``, ``tune_tokens``), read from the
    ``tuning`` entry of the model's diagnostics; empty for a model that tuned nothing."""
    tuning = model.diagnostics().get("tuning")
    if not isinstance(tuning, dict):
        return {}
    return {
        "tune_cpu_s": float(tuning.get("cpu_seconds", math.nan)),
        "tune_tokens": float(tuning.get("tokens_seen", math.nan)),
    }


def tuning_size(model: Recommender) -> dict[str, float]:
    """``tune_bytes``: the size of the weights adapting an LM in ``fit`` produced (a ranker's
    LoRA adapter, a tuned encoder's folder), from the ``tuning`` diagnostics; empty for a model
    that tuned nothing or did not say."""
    tuning = model.diagnostics().get("tuning")
    size = tuning.get("weights_bytes") if isinstance(tuning, dict) else None
    return {} if size is None else {"tune_bytes": float(size)}


def ranker_stats(model: Recommender) -> dict[str, float]:
    """What an LM ranker spent and how its answers parsed (empty for other models)."""
    from llmrec.paradigms.direct.two_stage import TwoStage

    return model.ranker.stats.summary() if isinstance(model, TwoStage) else {}
