"""The report's statistics, from the per-user arrays each stage kept (``per_user.npz``):
95% bootstrap intervals of every accuracy metric (over users, and over seeds for an entry run
on several), and paired tests between entries with Holm-corrected p-values and effect sizes.

A stage without arrays (a folder written before they were kept) gets no interval and takes no
part in a test; the report then says "not available" rather than guessing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from llmrec.compare.evidence import PerUser, read_per_user, seed_dir

__all__ = [
    "INTERVAL_KEYS",
    "EntryArrays",
    "comparison_values",
    "intervals",
    "load_arrays",
    "pair_row",
    "paired_groups",
]

#: report key -> (per-user metric, mask or None): the accuracy cells that carry an interval
INTERVAL_KEYS: dict[str, tuple[str, str | None]] = {
    "ndcg@10": ("ndcg@10", None),
    "recall@10": ("recall@10", None),
    "mrr@10": ("mrr@10", None),
    "sample_ndcg@10": ("ndcg@10", "in_sample"),
    "cold_items_ndcg@10": ("ndcg@10", "cold_items"),
    "cold_users_ndcg@10": ("ndcg@10", "cold_users"),
}
CONFIDENCE = 0.95


@dataclass(frozen=True)
class EntryArrays:
    """An entry's per-user arrays over its seeds: ``users`` ``(n,)``, ``metrics`` name ->
    ``(n_seeds, n)``, ``masks`` name -> ``(n,)`` bool, ``seeds`` the seeds stacked."""

    users: np.ndarray
    metrics: dict[str, np.ndarray]
    masks: dict[str, np.ndarray]
    seeds: tuple[int, ...]


def load_arrays(compare_dir: Path, stage: dict[str, Any]) -> EntryArrays | None:
    """The arrays of a finished stage and of its further seeds (``None`` when it kept none).

    A further seed evaluated on other users than the stage (it should never be) is left out."""
    own = read_per_user(compare_dir / "stages" / stage["name"])
    if own is None:
        return None
    seeds = list(stage.get("seeds") or [])
    runs: list[tuple[int, PerUser]] = [(seeds[0] if seeds else 0, own)]
    for seed in seeds[1:]:
        more = read_per_user(seed_dir(compare_dir, stage["name"], seed))
        if more is not None and np.array_equal(more.users, own.users):
            runs.append((seed, more))
    metrics = {
        name: np.stack([r.metrics[name] for _, r in runs])
        for name in own.metrics
        if all(name in r.metrics for _, r in runs)
    }
    return EntryArrays(own.users, metrics, own.masks, tuple(s for s, _ in runs))


def intervals(arrays: EntryArrays, *, seed: int = 0) -> dict[str, dict[str, Any]]:
    """95% intervals of the :data:`INTERVAL_KEYS` cells: BCa over users for one seed, the
    two-level (users, then seeds) percentile bootstrap for several, with the seed spread.

    Returns ``{key: {"low", "high", "mean", "n_users", "n_seeds", "method"[, "seed_means",
    "seed_std"]}}``; a cell with fewer than two users is left out."""
    from llmrec.eval.stats import bootstrap_ci, bootstrap_ci_seeds

    out: dict[str, dict[str, Any]] = {}
    for key, (metric, mask_name) in INTERVAL_KEYS.items():
        values = arrays.metrics.get(metric)
        mask = arrays.masks.get(mask_name) if mask_name else None
        if values is None or (mask_name and mask is None):
            continue
        cells = values[:, mask] if mask is not None else values
        if cells.shape[1] < 2:
            continue
        cell: dict[str, Any]
        if cells.shape[0] == 1:
            iv = bootstrap_ci(cells[0], confidence=CONFIDENCE, seed=seed)
            cell = {"low": iv.low, "high": iv.high, "mean": iv.mean, "method": iv.method}
        else:
            sv = bootstrap_ci_seeds(cells, confidence=CONFIDENCE, seed=seed)
            cell = {"low": sv.low, "high": sv.high, "mean": sv.mean, "method": "seeds+users"}
            if sv.spread is not None:
                cell["seed_means"] = list(sv.spread.means)
                cell["seed_std"] = sv.spread.std
        cell.update({"n_users": int(cells.shape[1]), "n_seeds": int(cells.shape[0])})
        out[key] = cell
    return out


def comparison_values(
    arrays: dict[str, EntryArrays], names: list[str], sampled: bool
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Per-user NDCG@10 (seed-averaged) of ``names`` on the users they all share, aligned:
    the user sample when ``sampled`` (an LM entry ran on it), else every test user.

    Returns ``({name: (n,) float64}, users (n,))``; names without arrays are left out."""
    from llmrec.eval.stats import align_users

    present = [n for n in names if n in arrays and "ndcg@10" in arrays[n].metrics]
    if not present:
        return {}, np.zeros(0, dtype=np.int64)
    users_of = {}
    for name in present:
        a = arrays[name]
        keep = a.masks.get("in_sample") if sampled else None
        users_of[name] = a.users[keep] if keep is not None else a.users
    common = users_of[present[0]]
    for name in present[1:]:
        common = np.intersect1d(common, users_of[name])
    out = {}
    for name in present:
        a = arrays[name]
        per_user = a.metrics["ndcg@10"].mean(axis=0)
        out[name] = align_users(per_user, a.users, common, f"{name} ndcg@10")
    return out, np.sort(common)


def paired_groups(
    groups: list[tuple[dict[str, np.ndarray], list[tuple[str, str]]]], *, seed: int = 0
) -> list[dict[str, Any]]:
    """Paired tests of each ``(a, b)`` (a minus b, same users) over several user sets at once:
    each group's pairs are tested on that group's aligned ``values`` (e.g. every test user for
    entries scored on all, the LM sample for the sampled ones), and the p-values of all groups
    are Holm-corrected together. Rows as :func:`pair_row` writes them (``low``/``high`` bound
    the unadjusted 95% interval, which matches ``p``, not ``p_holm``)."""
    from llmrec.eval.stats import holm, paired_test

    done: list[tuple[str, str, Any]] = []
    for values, pairs in groups:
        kept = [(a, b) for a, b in pairs if a in values and b in values and a != b]
        if not kept or len(next(iter(values.values()))) < 2:
            continue
        done += [(a, b, paired_test(values[a], values[b], seed=seed)) for a, b in kept]
    if not done:
        return []
    adjusted = holm([t.p_value for _, _, t in done])
    return [pair_row(a, b, t, p) for (a, b, t), p in zip(done, adjusted, strict=True)]


def pair_row(entry: str, versus: str, test: Any, p_adjusted: float) -> dict[str, Any]:
    """One paired test (``entry`` minus ``versus``, a :class:`~llmrec.eval.stats.PairedTest`)
    as the report writes it; ``significant`` when the corrected p is below 0.05."""
    return {
        "entry": entry,
        "versus": versus,
        "diff": test.mean_diff,
        "low": test.low,
        "high": test.high,
        "effect_size": test.effect_size,
        "p": test.p_value,
        "p_holm": float(p_adjusted),
        "significant": bool(p_adjusted < 0.05),
        "n_users": test.n_users,
    }
