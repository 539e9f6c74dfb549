"""The validity probes of a stage: a thin adapter from a compare entry to
:mod:`llmrec.eval.validity` (invalid output, history-length sensitivity, and for LM rankers
prompt and candidate-count sensitivity) and a memorisation probe for LM rankers (the held-out
item's rank with no history or another user's).

The LM probes rank under the entry's own protocol: a ``candidates`` entry its probe users'
seeded candidates (:meth:`StageContext.probe_candidates`), any other the retriever's top n
through :meth:`TwoStage.with_ranker`. They share their lists, so the default prompt at the
entry's own count is ranked once; under two-stage it is the evaluation's own lists (LM rankers
do not use the LM answer cache, so every prompt asked again costs a forward pass)."""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np

from llmrec.compare.config import CompareEntry, ValidityConfig
from llmrec.compare.context import StageContext
from llmrec.compare.measure import ranker_stats
from llmrec.data.dataset import UserHistory
from llmrec.eval.protocols import EvalResult
from llmrec.models.base import Recommender

if TYPE_CHECKING:
    from llmrec.paradigms.direct.two_stage import TwoStage

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
    """Record ``invalid_output`` always; the history, memorisation, prompt and candidate-count
    probes when the comparison's ``validity`` settings ask for them and they apply to the
    entry. Each probe's seconds go to ``extra["validity_s"]``."""
    from llmrec.eval.validity import invalid_output
    from llmrec.paradigms.direct.two_stage import TwoStage

    width = result.ranked.shape[1] if result.ranked.ndim == 2 else 10
    report = invalid_output(result.violations, len(result.users), width, ranker_stats(model))
    extra["invalid_output"] = {**report, "can_emit": can_emit_invalid(entry)}
    cfg = ctx.config.validity
    if cfg is None:
        return
    users = ctx.probe_users[: cfg.users]
    lm_entry = entry.paradigm == "direct"
    reads_history = lm_entry or entry.model in SEQUENTIAL_MODELS
    probes: dict[str, tuple[str, Callable[[], Any]]] = {}
    if "history" in cfg.probes and entry.protocol != "candidates" and reads_history:
        probes["history"] = ("history_length", partial(_history, model, ctx, users, cfg))
    if "memorisation" in cfg.probes and lm_entry and len(users):
        probes["memorisation"] = ("memorisation", partial(_memorisation, model, ctx, cfg.users))
    if isinstance(model, TwoStage) and len(users):
        probes.update(_lm_probes(entry, model, ctx, result))
    seconds: dict[str, float] = {}
    for probe, (key, run) in probes.items():
        tic = time.perf_counter()
        extra[key] = run()
        seconds[probe] = time.perf_counter() - tic
    extra["validity_s"] = seconds


def _history(
    model: Recommender, ctx: StageContext, users: np.ndarray, cfg: ValidityConfig
) -> dict[str, list[float]]:
    from llmrec.eval.protocols import truth_for
    from llmrec.eval.validity import history_length_curve

    truth = truth_for(users, ctx.split.test)
    return history_length_curve(model, users, ctx.hist, truth, cfg.history_lengths)


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


# --- prompt and candidate-count sensitivity (LM rankers) ---------------------------------------
#: ``(prompt variant, candidate count) -> (ranked (n, 10), drawn (n,))`` for the probe users
Lists = Callable[[str, int], tuple[np.ndarray, np.ndarray]]


def _prompt(lists: Lists, own: int, cfg: ValidityConfig, positives: np.ndarray) -> dict[str, Any]:
    """NDCG@10 of the entry's ranker under each of ``cfg.prompt_variants`` at its own count."""
    from llmrec.eval.validity import prompt_sensitivity

    out = prompt_sensitivity(lambda v: lists(v, own)[0], cfg.prompt_variants, positives)
    out["candidates"] = float(own)
    return out


def _counts(
    lists: Lists, limit: int | None, cfg: ValidityConfig, positives: np.ndarray
) -> dict[str, Any]:
    """NDCG@10 of the entry's ranker with each of ``cfg.candidate_counts`` candidates up to
    ``limit``, and a random order's; the others are listed as skipped."""
    from llmrec.eval.validity import candidate_count_curve

    counts = [n for n in cfg.candidate_counts if limit is None or n <= limit]
    out: dict[str, Any] = candidate_count_curve(lambda n: lists("default", n), counts, positives)
    out["skipped"] = [float(n) for n in cfg.candidate_counts if n not in counts]
    out["limit"] = None if limit is None else float(limit)
    return out


def _lm_probes(
    entry: CompareEntry, model: TwoStage, ctx: StageContext, result: EvalResult
) -> dict[str, tuple[str, Callable[[], Any]]]:
    """The prompt and candidate-count probes that ``ctx``'s settings ask for, sharing one
    :data:`Lists`: each (variant, count) is ranked once, and under two-stage the entry's own
    prompt at its own count is read from the evaluation's lists (the LM is not asked again)."""
    from llmrec.paradigms.direct.two_stage import MAX_LM_CANDIDATES

    cfg = ctx.config.validity
    assert cfg is not None
    users = ctx.probe_users[: cfg.users]
    positives = ctx.probe_candidates()[1][: len(users)]
    own = 1 + ctx.config.eval.n_negatives
    limit = model.ranker.max_candidates
    if entry.protocol != "candidates":  # the retriever's top n: a TwoStage config caps n
        own = model.config.n_candidates
        limit = min(limit or MAX_LM_CANDIDATES, MAX_LM_CANDIDATES)
    memo = _evaluated(entry, model, ctx, users, result)

    def lists(variant: str, n: int) -> tuple[np.ndarray, np.ndarray]:
        if (variant, n) not in memo:
            twin = _variant(model, variant, None if entry.protocol == "candidates" else n)
            memo[variant, n] = _ranked(entry, twin, ctx, users, n)
        return memo[variant, n]

    probes: dict[str, tuple[str, Callable[[], Any]]] = {}
    if "prompt" in cfg.probes:
        probes["prompt"] = ("prompt_sensitivity", partial(_prompt, lists, own, cfg, positives))
    if "candidate_count" in cfg.probes:
        probes["candidate_count"] = (
            "candidate_count",
            partial(_counts, lists, limit, cfg, positives),
        )
    return probes


def _variant(model: TwoStage, variant: str, n_candidates: int | None) -> TwoStage:
    """``model`` with its ranker prompted by ``variant`` (and ``n_candidates``, if given)."""
    from llmrec.paradigms.direct.variants import PROMPT_VARIANTS

    fields = PROMPT_VARIANTS[variant].fields(model.ranker.kind)
    ranker = model.ranker.with_prompt(**fields) if fields else model.ranker
    return model.with_ranker(ranker, n_candidates=n_candidates)


def _evaluated(
    entry: CompareEntry, model: TwoStage, ctx: StageContext, users: np.ndarray, result: EvalResult
) -> dict[tuple[str, int], tuple[np.ndarray, np.ndarray]]:
    """The probe users' lists of the evaluation itself, keyed as the entry's own prompt at its
    own count, when the entry ranked all of them under two-stage; else nothing."""
    from llmrec.eval.validity import positions_of

    rows = {int(u): i for i, u in enumerate(result.users)}
    if entry.protocol == "candidates" or not all(int(u) in rows for u in users):
        return {}
    n = model.config.n_candidates
    ranked = result.ranked[[rows[int(u)] for u in users], :10]
    positives = ctx.probe_candidates()[1][: len(users)]
    drawn = model.candidates(users, ctx.hist, max(n, 10))
    return {("default", n): (ranked, positions_of(drawn, positives))}


def _ranked(
    entry: CompareEntry, model: TwoStage, ctx: StageContext, users: np.ndarray, n: int
) -> tuple[np.ndarray, np.ndarray]:
    """The probe users' top 10 under ``entry``'s protocol with ``n`` candidates (the probe
    users' seeded candidates, or ``model``'s top ``n_candidates``), and each user's held-out
    item's 1-based position in the list before the LM ordered it (0: absent)."""
    from llmrec.eval import bias
    from llmrec.eval.validity import positions_of

    positives = ctx.probe_candidates()[1][: len(users)]
    if entry.protocol == "candidates":
        cands = ctx.probe_candidates(n)[0][: len(users)]
        scores = np.asarray(model.score_candidates(users, cands, history=ctx.hist))
        scores = np.where(np.isfinite(scores), scores, -np.inf)
        return bias.top_k(scores, cands, 10), positions_of(cands, positives)
    ranked = np.asarray(model.recommend(users, 10, history=ctx.hist).items, dtype=np.int64)
    drawn = model.candidates(users, ctx.hist, max(model.config.n_candidates, 10))
    return ranked, positions_of(drawn, positives)
