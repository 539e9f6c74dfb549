"""The choice rule: which entry to use, never on a difference that is not significant.

Every entry is tested against the best one on the primary metric (paired over the same users,
sign-flip randomisation test, Holm-corrected over the family). The entries whose difference
from the best is not significant are *tied* with it; among the tied, the cheapest is chosen
(LM cost, then latency, then memory, by default), and the reason is one sentence::

    text-kNN is chosen: it ties SASRec on ndcg@10 (text-kNN minus SASRec -0.003,
    95% CI [-0.011, +0.005], p=0.21, p=0.41 after Holm) and is 12x faster per user
    (latency 3.1 ms vs 37 ms)

Inputs are per-user arrays of the primary metric (``(n_users,)``, or ``(n_seeds, n_users)``
for a model run on several seeds, averaged over seeds per user before testing) and costs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np

from llmrec.errors import ConfigError
from llmrec.eval.stats import (
    DEFAULT_RESAMPLES,
    PairedTest,
    align_users,
    benjamini_hochberg,
    check_values,
    holm,
    minimal_detectable_effect,
    paired_test,
)

Correction = Literal["holm", "bh"]

#: costs compared, in this order, to pick the cheapest of tied entries
COSTS: tuple[str, ...] = ("lm_cost", "latency_ms", "memory_mb")
_COST_WORDS = {
    "lm_cost": ("cheaper per user in LM cost", "LM cost", ""),
    "latency_ms": ("faster per user", "latency", " ms"),
    "memory_mb": ("smaller in memory", "memory", " MB"),
}
_CORRECTION_NAMES = {"holm": "Holm", "bh": "Benjamini-Hochberg"}


@dataclass(frozen=True)
class Entry:
    """One candidate for the choice.

    Attributes:
        name: what the sentence calls it.
        values: the primary metric per user, ``(n_users,)``, or ``(n_seeds, n_users)``.
        users: ``(n_users,)`` user ids the values are for; give them for every entry or none
            (then position i is the same user in every entry).
        latency_ms: mean milliseconds per user to answer.
        memory_mb: peak memory in MB.
        lm_cost: LM cost per user in any one unit shared by all entries (0 for no LM).
    """

    name: str
    values: np.ndarray
    users: np.ndarray | None = None
    latency_ms: float | None = None
    memory_mb: float | None = None
    lm_cost: float | None = None


@dataclass(frozen=True)
class Versus:
    """One entry against the best: ``test`` holds entry minus best; ``tied`` when the corrected
    p-value is at or above alpha."""

    name: str
    test: PairedTest
    p_adjusted: float
    tied: bool


@dataclass(frozen=True)
class Pair:
    """A further comparison tested in the same family as the choice: ``test`` holds
    ``entry`` minus ``versus``; ``significant`` when the corrected p-value is below alpha."""

    entry: str
    versus: str
    test: PairedTest
    p_adjusted: float
    significant: bool


@dataclass(frozen=True)
class Choice:
    """What :func:`choose` decided.

    Attributes:
        chosen: the entry to use.
        best: the entry with the highest mean.
        tied: entries statistically tied with the best (the best included), best mean first.
        versus: every other entry against the best, in the order given.
        means: the mean of the primary metric per entry.
        n_users: users compared.
        mde: minimal detectable effect (alpha, power 0.8) of a paired comparison over these
            users, with the SD of the differences between the best and the runner-up.
        sentence: the reason, to print.
        also: the further pairs asked for (``also=``), corrected in the same family as
            ``versus``, so a pair reads the same wherever it is quoted.
    """

    chosen: str
    best: str
    metric: str
    tied: tuple[str, ...]
    versus: tuple[Versus, ...]
    means: dict[str, float]
    n_users: int
    mde: float | None
    alpha: float
    correction: str
    sentence: str
    costs: dict[str, dict[str, float | None]] = field(default_factory=dict)
    also: tuple[Pair, ...] = ()


def choose(
    entries: Sequence[Entry],
    *,
    metric: str = "ndcg@10",
    alpha: float = 0.05,
    correction: Correction = "holm",
    cost_order: Sequence[str] = COSTS,
    confidence: float = 0.95,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    also: Sequence[tuple[str, str]] = (),
    references: Sequence[Entry] = (),
) -> Choice:
    """Pick the cheapest of the entries statistically tied with the best on ``metric``.

    The best entry has the highest mean. Each other entry is compared with it by
    :func:`~llmrec.eval.stats.paired_test`; the p-values are corrected together (``"holm"``,
    family-wise, or ``"bh"``, false discovery rate). An entry is tied when its corrected p-value
    is at least ``alpha``. Among the tied, the one that is cheapest on the first cost of
    ``cost_order`` where they differ is chosen (unknown costs count as the most expensive);
    if none is cheaper, the best stays chosen and the sentence says the data cannot tell the
    tied entries apart.

    ``also`` names further ``(entry, versus)`` pairs to test (e.g. every entry against a
    baseline); they join the correction family of the ties, so no pair is significant in one
    sentence and not in another. A pair already in the family (either way round) is skipped.
    ``references`` are entries that ``also`` may name but that are never best, tied or chosen
    (e.g. a baseline quoted beside a choice made among other entries); ``means`` holds them."""
    if not entries:
        raise ConfigError("nothing to choose from: no entry given")
    names, values = _aligned([*entries, *references])
    candidates = len(entries)
    _check_costs(cost_order)
    if not 0.0 < alpha < 1.0:
        raise ConfigError(f"alpha must lie strictly between 0 and 1, got {alpha}")
    means = {n: float(v.mean()) for n, v in zip(names, values, strict=True)}
    best = max(range(candidates), key=lambda i: (means[names[i]], -i))
    extra = _extra_pairs(names, best, also)
    versus, pairs = _versus(
        names, candidates, values, best, extra, alpha, correction, confidence, n_resamples, seed
    )
    tied = [names[best]] + [v.name for v in sorted(versus, key=lambda v: -means[v.name]) if v.tied]
    by_name = {e.name: e for e in entries}
    cheapest = min(tied, key=lambda n: (_cost_key(by_name[n], cost_order), -means[n]))
    if _cost_key(by_name[cheapest], cost_order) == _cost_key(by_name[names[best]], cost_order):
        cheapest = names[best]
    mde = None
    if versus:
        runner = max(versus, key=lambda v: means[v.name])
        mde = minimal_detectable_effect(len(values[best]), runner.test.sd_diff, alpha=alpha)
    choice = Choice(
        chosen=cheapest,
        best=names[best],
        metric=metric,
        tied=tuple(tied),
        versus=tuple(versus),
        means=means,
        n_users=len(values[best]),
        mde=mde,
        alpha=alpha,
        correction=_CORRECTION_NAMES[correction],
        sentence="",
        costs={e.name: {c: getattr(e, c) for c in cost_order} for e in entries},
        also=tuple(pairs),
    )
    return _with_sentence(choice, by_name, cost_order, confidence)


def _aligned(entries: Sequence[Entry]) -> tuple[list[str], list[np.ndarray]]:
    """Names and per-user values (seed-averaged), aligned to the first entry's users."""
    if not entries:
        raise ConfigError("nothing to choose from: no entry given")
    names = [e.name for e in entries]
    if len(set(names)) != len(names):
        raise ConfigError(f"entry names repeat: {names}; give each entry its own name")
    with_users = [e.users is not None for e in entries]
    if any(with_users) and not all(with_users):
        raise ConfigError("give user ids for every entry or for none")
    values = []
    for e in entries:
        arr = np.asarray(e.values, dtype=np.float64)
        v = check_values(arr, f"{e.name} values", ndim=arr.ndim if arr.ndim in (1, 2) else 1)
        values.append(v.mean(axis=0) if v.ndim == 2 else v)
    ref = entries[0].users
    for i, e in enumerate(entries):
        if ref is not None and e.users is not None:
            users = np.asarray(e.users, dtype=np.int64)
            if len(users) != len(np.asarray(ref)) or set(users.tolist()) != set(
                np.asarray(ref).tolist()
            ):
                raise ConfigError(
                    f"{e.name} was evaluated on other users than {names[0]}; "
                    "compare entries on the same users (restrict both to the shared sample)"
                )
            values[i] = align_users(values[i], users, np.asarray(ref), f"{e.name} values")
        elif len(values[i]) != len(values[0]):
            raise ConfigError(
                f"{e.name} has {len(values[i])} users and {names[0]} has {len(values[0])}; "
                "compare entries on the same users"
            )
    return names, values


def _extra_pairs(
    names: list[str], best: int, also: Sequence[tuple[str, str]]
) -> list[tuple[int, int]]:
    """Index pairs of ``also``, without the pairs against the best (already in the family) and
    without repeats either way round."""
    index = {n: i for i, n in enumerate(names)}
    seen: set[frozenset[int]] = set()
    out = []
    for a, b in also:
        if a not in index or b not in index:
            raise ConfigError(f"cannot compare {a!r} with {b!r}: both must be entries")
        i, j = index[a], index[b]
        key = frozenset((i, j))
        if i == j or best in key or key in seen:
            continue
        seen.add(key)
        out.append((i, j))
    return out


def _versus(
    names: list[str],
    candidates: int,
    values: list[np.ndarray],
    best: int,
    extra: list[tuple[int, int]],
    alpha: float,
    correction: Correction,
    confidence: float,
    n_resamples: int,
    seed: int,
) -> tuple[list[Versus], list[Pair]]:
    """Each candidate (the first ``candidates`` names; references follow) against the best,
    then the ``extra`` pairs, corrected as one family."""
    others = [i for i in range(candidates) if i != best]
    pairs = [(i, best) for i in others] + extra
    tests = [
        paired_test(values[i], values[j], confidence=confidence, n_resamples=n_resamples, seed=seed)
        for i, j in pairs
    ]
    if correction == "holm":
        adjusted = holm([t.p_value for t in tests]) if tests else np.zeros(0)
    elif correction == "bh":
        adjusted = benjamini_hochberg([t.p_value for t in tests]) if tests else np.zeros(0)
    else:
        raise ConfigError(f"unknown correction {correction!r}; choose holm or bh")
    n = len(others)
    versus = [
        Versus(names[i], t, float(p), bool(p >= alpha))
        for i, t, p in zip(others, tests[:n], adjusted[:n], strict=True)
    ]
    more = [
        Pair(names[i], names[j], t, float(p), bool(p < alpha))
        for (i, j), t, p in zip(extra, tests[n:], adjusted[n:], strict=True)
    ]
    return versus, more


def _check_costs(cost_order: Sequence[str]) -> None:
    unknown = [c for c in cost_order if c not in COSTS]
    if unknown:
        raise ConfigError(f"unknown cost {unknown[0]!r}; choose from {', '.join(COSTS)}")


def _cost_key(entry: Entry, cost_order: Sequence[str]) -> tuple[float, ...]:
    key = []
    for name in cost_order:
        value = getattr(entry, name)
        key.append(float("inf") if value is None or not np.isfinite(value) else float(value))
    return tuple(key)


def _with_sentence(
    choice: Choice, by_name: dict[str, Entry], cost_order: Sequence[str], confidence: float
) -> Choice:
    return replace(choice, sentence=_sentence(choice, by_name, cost_order, confidence))


def _evidence(v: Versus, best: str, correction: str, confidence: float) -> str:
    t = v.test
    return (
        f"{v.name} minus {best} {t.mean_diff:+.3f}, "
        f"{confidence:.0%} CI [{t.low:+.3f}, {t.high:+.3f}], "
        f"{_fmt_p(t.p_value)}, {_fmt_p(v.p_adjusted)} after {correction}"
    )


def _fmt_p(p: float) -> str:
    """``p=0.41``; below 0.001 (the floor of a sampled test's resolution) ``p<0.001``."""
    return "p<0.001" if p < 0.001 else f"p={p:.2g}"


def _sentence(
    choice: Choice, by_name: dict[str, Entry], cost_order: Sequence[str], confidence: float
) -> str:
    metric, best, chosen = choice.metric, choice.best, choice.chosen
    vs = {v.name: v for v in choice.versus}
    if not vs:
        return f"{chosen} is chosen: it is the only entry"
    if chosen != best:
        why = _evidence(vs[chosen], best, choice.correction, confidence)
        cheaper = _cheaper(by_name[chosen], by_name[best], cost_order)
        return f"{chosen} is chosen: it ties {best} on {metric} ({why}) and is {cheaper}"
    runner = max(vs.values(), key=lambda v: choice.means[v.name])
    why = _evidence(runner, best, choice.correction, confidence)
    if len(choice.tied) == 1:
        return (
            f"{best} is chosen: it is best on {metric} ({choice.means[best]:.4f}) and ahead of "
            f"the runner-up {runner.name} ({why})"
        )
    others = ", ".join(n for n in choice.tied if n != best)
    return (
        f"{best} is chosen: it ties {others} on {metric} (runner-up {runner.name}: {why}) and "
        "none of them is cheaper; the data cannot tell them apart on accuracy"
    )


def _cheaper(chosen: Entry, best: Entry, cost_order: Sequence[str]) -> str:
    """``"12x faster per user (latency 3.1 ms vs 37 ms)"`` on the first cost that differs."""
    for name in cost_order:
        mine, theirs = getattr(chosen, name), getattr(best, name)
        if mine is None or mine == theirs:
            continue
        words, label, unit = _COST_WORDS[name]
        vs = f"({label} {mine:.3g}{unit} vs {_fmt(theirs)}{unit})"
        if theirs is None or not np.isfinite(theirs):
            return f"of known cost where {best.name}'s is unknown {vs}"
        if mine == 0:  # no finite ratio: say it without one
            return f"{words} {vs}"
        return f"{theirs / mine:.3g}x {words} {vs}"
    return "no more expensive"


def _fmt(value: float | None) -> str:
    return "unknown" if value is None else f"{value:.3g}"
