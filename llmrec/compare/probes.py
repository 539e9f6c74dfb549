"""The bias probes of a stage: a thin adapter from a compare entry to :mod:`llmrec.eval.bias`
(NDCG@10 by candidate slot, popularity of the recommendations, FaiRLLM fairness for LM rankers).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from llmrec.compare.config import CompareEntry
from llmrec.compare.context import StageContext
from llmrec.data.dataset import Dataset
from llmrec.models.base import Recommender

__all__ = ["popularity_profile", "run_probes"]


def run_probes(
    entry: CompareEntry,
    model: Recommender,
    ctx: StageContext,
    metrics: dict[str, float],
    extra: dict[str, Any],
) -> None:
    """Run ``entry``'s probes on ``model``; put their figures in ``metrics`` and ``extra``."""
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


def popularity_profile(ranked: np.ndarray, ctx: StageContext) -> dict[str, Any]:
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


def _slots(slots: Sequence[int] | None, width: int) -> list[int] | None:
    if slots is None:
        return None
    return sorted({s for s in slots if 0 <= s < width}) or None


def _fairness(
    model: Recommender, ctx: StageContext, users: np.ndarray, cands: np.ndarray
) -> dict[str, dict[str, Any]]:
    """FaiRLLM per attribute, for models whose LM ranker can swap the profile in its prompts."""
    from llmrec.eval import bias
    from llmrec.paradigms.direct.two_stage import TwoStage

    if not isinstance(model, TwoStage):
        return {}
    out: dict[str, dict[str, Any]] = {}
    p = ctx.config.probes
    for attribute in p.fairness_attributes:
        values = _attribute_values(ctx.data, attribute, p.max_fairness_values)
        if not values:
            continue
        rank_under = bias.ranked_under_profiles(
            model.ranker, users, cands, ctx.hist, k=p.fairness_k
        )
        report = bias.fairness(rank_under, attribute, values, n_users=len(users), k=p.fairness_k)
        out[attribute] = report.as_dict()
    return out


def _attribute_values(data: Dataset, attribute: str, limit: int) -> list[str]:
    attrs = data.user_attrs
    if attrs is None or attribute not in attrs.columns:
        return []
    counts = attrs[attribute].dropna().astype(str).value_counts()
    return sorted(counts.index[:limit].tolist())
