"""The validity probes of a stage: a thin adapter from a compare entry to
:mod:`llmrec.eval.validity` (invalid output, history-length sensitivity) and a memorisation
probe for LM rankers (the held-out item's rank with no history or another user's)."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from llmrec.compare.config import CompareEntry
from llmrec.compare.context import StageContext
from llmrec.compare.measure import ranker_stats
from llmrec.data.dataset import UserHistory
from llmrec.eval.protocols import EvalResult
from llmrec.models.base import Recommender

__all__ = ["SEQUENTIAL_MODELS", "can_emit_invalid", "run_validity"]

#: models that read the order of a user's history (the history-length probe runs on them)
SEQUENTIAL_MODELS = frozenset({"sasrec", "lm-sasrec", "token-sasrec", "tiger", "transition"})


def can_emit_invalid(entry: CompareEntry) -> bool:
    """Whether the entry can name something outside its catalogue or candidates: generative
    retrieval (TIGER decodes semantic IDs) and LM rankers that generate their answer."""
    ranker = entry.params.get("ranker")
    kind = ranker.get("kind") if isinstance(ranker, dict) else None
    return entry.model == "tiger" or (entry.model == "two_stage" and kind == "generation")


def run_validity(
    entry: CompareEntry,
    model: Recommender,
    ctx: StageContext,
    result: EvalResult,
    extra: dict[str, Any],
) -> None:
    """Record ``invalid_output`` always; the history and memorisation probes when the
    comparison's ``validity`` settings ask for them and they apply to the entry. Each probe's
    seconds go to ``extra["validity_s"]``."""
    from llmrec.eval.validity import invalid_output

    width = result.ranked.shape[1] if result.ranked.ndim == 2 else 10
    report = invalid_output(result.violations, len(result.users), width, ranker_stats(model))
    extra["invalid_output"] = {**report, "can_emit": can_emit_invalid(entry)}
    cfg = ctx.config.validity
    if cfg is None:
        return
    users = ctx.probe_users[: cfg.users]
    seconds: dict[str, float] = {}
    lm_entry = entry.paradigm == "direct"
    reads_history = lm_entry or entry.model in SEQUENTIAL_MODELS
    if "history" in cfg.probes and entry.protocol != "candidates" and reads_history:
        tic = time.perf_counter()
        extra["history_length"] = _history(model, ctx, users, cfg.history_lengths)
        seconds["history"] = time.perf_counter() - tic
    if "memorisation" in cfg.probes and lm_entry and len(users):
        tic = time.perf_counter()
        extra["memorisation"] = _memorisation(model, ctx, cfg.users)
        seconds["memorisation"] = time.perf_counter() - tic
    extra["validity_s"] = seconds


def _history(
    model: Recommender, ctx: StageContext, users: np.ndarray, lengths: list[int]
) -> dict[str, list[float]]:
    from llmrec.eval.protocols import truth_for
    from llmrec.eval.validity import history_length_curve

    truth = truth_for(users, ctx.split.test)
    return history_length_curve(model, users, ctx.hist, truth, lengths)


def _memorisation(model: Recommender, ctx: StageContext, n_users: int) -> dict[str, float]:
    """Mean rank (1 = first) of the held-out item among the probe candidates, and the share
    ranked first, with the user's own history, none, and another probe user's history."""
    from llmrec.eval import bias

    cands, positives = ctx.probe_candidates()
    users, cands, positives = ctx.probe_users[:n_users], cands[:n_users], positives[:n_users]
    out: dict[str, float] = {"n_users": float(len(users)), "candidates": float(cands.shape[1])}
    for label, hist in (
        ("own", ctx.hist),
        ("none", _replaced(ctx.hist, users, np.full(len(users), -1))),
        ("other", _replaced(ctx.hist, users, np.roll(users, 1))),
    ):
        scores = bias.scorer_of(model, hist)(users, cands)
        rank = 1 + (scores > scores[cands == positives[:, None]][:, None]).sum(axis=1)
        out[f"{label}_mean_rank"] = float(rank.mean())
        out[f"{label}_top1"] = float((rank == 1).mean())
    return out


def _replaced(hist: UserHistory, users: np.ndarray, donors: np.ndarray) -> UserHistory:
    """``hist`` with user ``users[i]``'s row replaced by ``donors[i]``'s (-1: an empty row)."""
    source = {int(u): int(d) for u, d in zip(users, donors, strict=True)}
    rows = []
    for u in range(hist.n_users):
        d = source.get(u, u)
        rows.append(hist.of(d) if d >= 0 else np.zeros(0, dtype=hist.items.dtype))
    return UserHistory.from_rows(rows, hist.n_items)
