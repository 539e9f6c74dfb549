"""The validity probes of a stage: a thin adapter from a compare entry to
:mod:`llmrec.eval.validity` (invalid output, history-length sensitivity, and for LM rankers
prompt and candidate-count sensitivity) and a memorisation probe for LM rankers (the held-out
item's rank with no history or another user's).

The LM probes rank under the entry's own protocol: a ``candidates`` entry its probe users'
seeded candidates (:meth:`StageContext.probe_candidates`), any other the retriever's top n
through :meth:`TwoStage.with_ranker`. The default prompt at the entry's own count asks the LM
what the accuracy pass and the other probes asked, so the LM cache answers it."""

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
    lm_ranker = model if isinstance(model, TwoStage) and len(users) else None
    probes: dict[str, tuple[str, Callable[[], Any]]] = {}
    if "history" in cfg.probes and entry.protocol != "candidates" and reads_history:
        probes["history"] = ("history_length", partial(_history, model, ctx, users, cfg))
    if "memorisation" in cfg.probes and lm_entry and len(users):
        probes["memorisation"] = ("memorisation", partial(_memorisation, model, ctx, cfg.users))
    if "prompt" in cfg.probes and lm_ranker is not None:
        probes["prompt"] = ("prompt_sensitivity", partial(_prompt, entry, lm_ranker, ctx, cfg))
    if "candidate_count" in cfg.probes and lm_ranker is not None:
        probes["candidate_count"] = (
            "candidate_count",
            partial(_counts, entry, lm_ranker, ctx, cfg),
        )
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
def _prompt(
    entry: CompareEntry, model: TwoStage, ctx: StageContext, cfg: ValidityConfig
) -> dict[str, Any]:
    """NDCG@10 of the entry's ranker under each of ``cfg.prompt_variants``."""
    from llmrec.eval.validity import prompt_sensitivity
    from llmrec.paradigms.direct.variants import PROMPT_VARIANTS

    users, positives = _probe_truth(ctx, cfg.users)

    def rank_under(name: str) -> np.ndarray:
        fields = PROMPT_VARIANTS[name].fields(model.ranker.kind)
        ranker = model.ranker.with_prompt(**fields) if fields else model.ranker
        return _ranked(entry, model.with_ranker(ranker), ctx, users, None)[0]

    out = prompt_sensitivity(rank_under, cfg.prompt_variants, positives)
    out["candidates"] = float(_own_count(entry, model, ctx))
    return out


def _counts(
    entry: CompareEntry, model: TwoStage, ctx: StageContext, cfg: ValidityConfig
) -> dict[str, Any]:
    """NDCG@10 of the entry's ranker with each of ``cfg.candidate_counts`` candidates that its
    prompts can list, and a random order's; the others are listed as skipped."""
    from llmrec.eval.validity import candidate_count_curve
    from llmrec.paradigms.direct.two_stage import MAX_LM_CANDIDATES

    users, positives = _probe_truth(ctx, cfg.users)
    limit = model.ranker.max_candidates
    if entry.protocol != "candidates":  # the retriever's top n: a TwoStage config caps n
        limit = min(limit or MAX_LM_CANDIDATES, MAX_LM_CANDIDATES)
    counts = [n for n in cfg.candidate_counts if limit is None or n <= limit]

    def rank_with(n: int) -> tuple[np.ndarray, np.ndarray]:
        return _ranked(entry, model.with_ranker(n_candidates=n), ctx, users, n)

    out: dict[str, Any] = candidate_count_curve(rank_with, counts, positives)
    out["skipped"] = [float(n) for n in cfg.candidate_counts if n not in counts]
    out["limit"] = None if limit is None else float(limit)
    return out


def _ranked(
    entry: CompareEntry, model: TwoStage, ctx: StageContext, users: np.ndarray, n: int | None
) -> tuple[np.ndarray, np.ndarray]:
    """The probe users' top 10 under ``entry``'s protocol, and each user's held-out item's
    1-based position in the list before the LM ordered it (0: absent). Under ``candidates``,
    ``n`` candidates (default: the probe candidates); otherwise ``model``'s top
    ``n_candidates``."""
    from llmrec.eval import bias
    from llmrec.eval.validity import positions_of

    positives = _probe_truth(ctx, len(users))[1]
    if entry.protocol == "candidates":
        cands = ctx.probe_candidates(n)[0][: len(users)]
        scores = np.asarray(model.score_candidates(users, cands, history=ctx.hist))
        scores = np.where(np.isfinite(scores), scores, -np.inf)
        return bias.top_k(scores, cands, 10), positions_of(cands, positives)
    ranked = np.asarray(model.recommend(users, 10, history=ctx.hist).items, dtype=np.int64)
    drawn = model.candidates(users, ctx.hist, max(model.config.n_candidates, 10))
    return ranked, positions_of(drawn, positives)


def _probe_truth(ctx: StageContext, n_users: int) -> tuple[np.ndarray, np.ndarray]:
    """The first ``n_users`` probe users and each one's first held-out item."""
    _, positives = ctx.probe_candidates()
    return ctx.probe_users[:n_users], positives[:n_users]


def _own_count(entry: CompareEntry, model: TwoStage, ctx: StageContext) -> int:
    """Candidates the entry's ranker orders under its protocol."""
    if entry.protocol == "candidates":
        return 1 + ctx.config.eval.n_negatives
    return model.config.n_candidates
