"""Statistics for comparing recommenders: intervals, paired tests, corrections, power.

Every function works on per-user metric arrays, as :attr:`EvalResult.per_user
<llmrec.eval.protocols.EvalResult>` holds them: ``(n_users,)`` float64, one value per evaluated
user (e.g. NDCG@10 in ``[0, 1]``), aligned with ``EvalResult.users``. A trainable model run on
S seeds gives an ``(S, n_users)`` array over the same users. The unit of resampling is the user:
users are the independent draws an evaluation sample is made of.

- :func:`bootstrap_ci` — the mean and its interval (BCa by default, percentile on request).
- :func:`bootstrap_ci_seeds` — the same over S seeds: a two-level bootstrap (users, then seeds)
  so that seed spread widens the interval, with the spread of the seed means beside it.
- :func:`paired_test` — two entries on the same users: sign-flip randomisation test (two-sided),
  the mean difference with its interval, and Cohen's d_z.
- :func:`holm`, :func:`benjamini_hochberg` — adjusted p-values over a family of tests.
- :func:`minimal_detectable_effect`, :func:`mde_from_data` — the smallest mean difference a
  paired comparison of n users detects at a given level and power.

All randomness comes from a seed; the same inputs and seed give the same figures.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import optimize
from scipy import stats as sps

from llmrec.errors import ConfigError

Method = Literal["bca", "percentile"]

#: resamples drawn by default: Monte Carlo error of a 95% bound about 0.5% of the interval width
DEFAULT_RESAMPLES = 4000
#: above this many users a sign-flip test is sampled; at or below it every flip is enumerated
_EXACT_MAX_USERS = 12


@dataclass(frozen=True)
class Interval:
    """A mean and its confidence interval, in the unit of the metric.

    Attributes:
        mean: the observed mean over users (over seeds and users for :func:`bootstrap_ci_seeds`).
        low, high: the interval's bounds.
        confidence: its nominal coverage, e.g. 0.95.
        method: ``"bca"`` or ``"percentile"``.
        n_users: users the mean is over.
    """

    mean: float
    low: float
    high: float
    confidence: float
    method: str
    n_users: int


@dataclass(frozen=True)
class SeedSpread:
    """How much the mean moves from seed to seed: ``means`` ``(n_seeds,)`` and their min, max and
    standard deviation (ddof=1; 0.0 with one seed)."""

    means: tuple[float, ...]
    min: float
    max: float
    std: float


@dataclass(frozen=True)
class SeededInterval(Interval):
    """An :class:`Interval` over seeds and users, with the seed spread it folds in."""

    spread: SeedSpread | None = None


@dataclass(frozen=True)
class PairedTest:
    """Entry A against entry B on the same users; differences are A minus B.

    Attributes:
        mean_diff: mean over users of ``a - b``.
        low, high: the bootstrap interval of ``mean_diff`` (BCa), at ``confidence``.
        p_value: two-sided p-value of the sign-flip randomisation test of "no difference".
        effect_size: Cohen's d_z, ``mean_diff / sd(a - b)`` (ddof=1); 0.0 when the SD is 0.
        sd_diff: standard deviation of the per-user differences (ddof=1).
        n_users: users compared.
        exact: whether the p-value enumerates every sign flip (few users) or samples them.
    """

    mean_diff: float
    low: float
    high: float
    confidence: float
    p_value: float
    effect_size: float
    sd_diff: float
    n_users: int
    exact: bool


# --- input checks -----------------------------------------------------------------------------
def check_values(values: object, name: str = "values", *, ndim: int = 1) -> np.ndarray:
    """``values`` as a float64 array of ``ndim`` dimensions, non-empty and free of NaN/inf."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != ndim:
        want = "(n_users,)" if ndim == 1 else "(n_seeds, n_users)"
        raise ConfigError(f"{name} must have shape {want}, got {arr.shape}")
    if arr.size == 0:
        raise ConfigError(f"{name} is empty: there is no user to compute a statistic over")
    if not np.isfinite(arr).all():
        bad = int((~np.isfinite(arr)).sum())
        raise ConfigError(f"{name} holds {bad} NaN or infinite value(s); drop or fix those users")
    return arr


def _check_confidence(confidence: float) -> float:
    if not 0.0 < confidence < 1.0:
        raise ConfigError(f"confidence must lie strictly between 0 and 1, got {confidence}")
    return float(confidence)


def _check_resamples(n_resamples: int) -> int:
    if int(n_resamples) != n_resamples or n_resamples < 100:
        raise ConfigError(f"n_resamples must be a whole number of at least 100, got {n_resamples}")
    return int(n_resamples)


def align_users(
    values: np.ndarray, users: np.ndarray, target: np.ndarray, name: str = "values"
) -> np.ndarray:
    """``values`` (last axis aligned with ``users``) reordered to the user ids of ``target``.

    Raises a one-line :class:`ConfigError` when ``target`` holds users ``users`` lacks, or when
    ``users`` repeats an id. Use it to restrict a full-sample entry to an LM entry's sample."""
    values = np.asarray(values)
    users = np.asarray(users, dtype=np.int64)
    target = np.asarray(target, dtype=np.int64)
    if values.shape[-1] != len(users):
        raise ConfigError(f"{name} has {values.shape[-1]} values for {len(users)} users")
    if len(np.unique(users)) != len(users):
        raise ConfigError(f"{name}: the user ids repeat; each user must appear once")
    order = np.argsort(users, kind="stable")
    pos = np.searchsorted(users[order], target)
    pos = np.minimum(pos, len(users) - 1) if len(users) else pos
    found = len(users) > 0 and bool((users[order][pos] == target).all())
    if not found:
        missing = np.setdiff1d(target, users)
        raise ConfigError(
            f"{name} lacks {len(missing)} of the {len(target)} users to compare "
            f"(e.g. user {int(missing[0])}); evaluate both entries on the same users"
        )
    return values[..., order[pos]]


def paired_values(
    a: object,
    b: object,
    users_a: object | None = None,
    users_b: object | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``a`` and ``b`` as checked ``(n_users,)`` arrays over the same users, in one order.

    With user ids, ``b`` is reordered to ``users_a``; the two must hold the same set of users
    (else a one-line :class:`ConfigError`). Without them, the lengths must agree."""
    a_arr, b_arr = check_values(a, "a"), check_values(b, "b")
    if (users_a is None) != (users_b is None):
        raise ConfigError("give user ids for both entries or for neither")
    if users_a is not None and users_b is not None:
        ua = np.asarray(users_a, dtype=np.int64)
        ub = np.asarray(users_b, dtype=np.int64)
        if len(ua) != len(a_arr) or len(ub) != len(b_arr):
            raise ConfigError("each entry needs one user id per value")
        if len(ua) != len(ub) or not np.array_equal(np.sort(ua), np.sort(ub)):
            only_a, only_b = len(np.setdiff1d(ua, ub)), len(np.setdiff1d(ub, ua))
            raise ConfigError(
                f"the entries were evaluated on different users ({only_a} only in a, "
                f"{only_b} only in b); a paired comparison needs the same users"
            )
        b_arr = align_users(b_arr, ub, ua, "b")
    elif len(a_arr) != len(b_arr):
        raise ConfigError(f"a has {len(a_arr)} users and b has {len(b_arr)}; pair the same users")
    return a_arr, b_arr


# --- bootstrap intervals ----------------------------------------------------------------------
def bootstrap_ci(
    values: object,
    *,
    confidence: float = 0.95,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    method: Method = "bca",
) -> Interval:
    """The mean of ``values`` ``(n_users,)`` and its bootstrap confidence interval over users.

    BCa (bias-corrected and accelerated, Efron 1987) by default: per-user ranking metrics are
    skewed (under leave-one-out most users score 0 and a few score up to 1), and BCa corrects
    the percentile interval for that skew and for bias, with coverage error O(1/n) against
    O(1/sqrt(n)) for the percentile interval. ``method="percentile"`` gives the plain one.

    Example:
        >>> iv = bootstrap_ci([0.0, 0.0, 1.0, 0.5, 0.0, 0.33], seed=0)
        >>> iv.low <= iv.mean <= iv.high
        True
    """
    x = check_values(values)
    level = _check_confidence(confidence)
    rng = np.random.default_rng(_check_seed(seed))
    idx = rng.integers(0, len(x), size=(_check_resamples(n_resamples), len(x)))
    boot = x[idx].mean(axis=1)
    mean = float(x.mean())
    if method == "bca":
        low, high = _bca_bounds(x, boot, mean, level)
    elif method == "percentile":
        low, high = _percentile_bounds(boot, level)
    else:
        raise ConfigError(f"unknown interval method {method!r}; choose bca or percentile")
    return Interval(mean, low, high, level, method, len(x))


def _check_seed(seed: int) -> int:
    if int(seed) != seed or seed < 0:
        raise ConfigError(f"seed must be 0 or more, got {seed}")
    return int(seed)


def _percentile_bounds(boot: np.ndarray, level: float) -> tuple[float, float]:
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(boot, [alpha, 1.0 - alpha])
    return float(low), float(high)


def _bca_bounds(x: np.ndarray, boot: np.ndarray, mean: float, level: float) -> tuple[float, float]:
    """BCa bounds of the mean, as scipy.stats.bootstrap computes them (same formulas)."""
    if np.ptp(x) == 0.0:  # every user alike: no spread to correct, the interval is the point
        return mean, mean
    z0 = sps.norm.ppf((boot < mean).mean())
    if not np.isfinite(z0):  # every resample on one side: BCa is undefined, use percentiles
        return _percentile_bounds(boot, level)
    # jackknife means in closed form: leaving user i out gives (sum - x_i) / (n - 1)
    jack = (x.sum() - x) / (len(x) - 1)
    dev = jack.mean() - jack
    den = 6.0 * (dev**2).sum() ** 1.5
    accel = float((dev**3).sum() / den) if den > 0 else 0.0
    alpha = (1.0 - level) / 2.0
    bounds = []
    for tail in (alpha, 1.0 - alpha):
        z = z0 + sps.norm.ppf(tail)
        bounds.append(float(sps.norm.cdf(z0 + z / (1.0 - accel * z))))
    low, high = np.quantile(boot, bounds)
    return float(low), float(high)


def bootstrap_ci_seeds(
    values: object,
    *,
    confidence: float = 0.95,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> SeededInterval:
    """The mean over seeds and users of ``values`` ``(n_seeds, n_users)`` and its interval.

    Two-level bootstrap: each resample draws users with replacement (the same users for every
    seed, since the seeds are evaluated on the same users) and seeds with replacement, and takes
    the mean of the drawn cells; the percentile interval of those means is returned (BCa's
    acceleration has no standard two-level form). With one seed this is the percentile
    interval over users. Few seeds resampled understate the seed variance by (S - 1) / S; the
    spread of the seed means is returned beside the interval so it is seen directly.
    """
    x = check_values(values, ndim=2)
    level = _check_confidence(confidence)
    n_seeds, n_users = x.shape
    rng = np.random.default_rng(_check_seed(seed))
    b = _check_resamples(n_resamples)
    user_idx = rng.integers(0, n_users, size=(b, n_users))
    seed_draws = rng.multinomial(n_seeds, np.full(n_seeds, 1.0 / n_seeds), size=b)
    per_seed = np.stack([row[user_idx].mean(axis=1) for row in x], axis=1)  # (b, n_seeds)
    boot = (per_seed * seed_draws).sum(axis=1) / n_seeds
    low, high = _percentile_bounds(boot, level)
    means = x.mean(axis=1)
    spread = SeedSpread(
        means=tuple(float(m) for m in means),
        min=float(means.min()),
        max=float(means.max()),
        std=float(means.std(ddof=1)) if n_seeds > 1 else 0.0,
    )
    return SeededInterval(float(x.mean()), low, high, level, "percentile", n_users, spread)


# --- paired tests -----------------------------------------------------------------------------
def sign_flip_p_value(
    diffs: np.ndarray, *, n_resamples: int = DEFAULT_RESAMPLES, seed: int = 0
) -> tuple[float, bool]:
    """Two-sided p-value of the paired randomisation test on ``diffs`` ``(n_users,)``.

    Under "no difference" each user's difference is as likely negative as positive, so its sign
    is flipped at random and the mean recomputed. With at most 12 users every one of the 2^n
    flips is enumerated (exact); else ``n_resamples`` are drawn and p = (1 + hits) / (1 + B), a
    valid p-value that is never 0. Returns ``(p, exact)``; matches
    ``scipy.stats.permutation_test(..., permutation_type="samples")``.
    """
    observed = abs(diffs.mean())
    n = len(diffs)
    # a flipped mean within rounding of the observed one counts as reaching it (as scipy does)
    tol = max(abs(observed), 1.0) * 1e-12 * n
    if n <= _EXACT_MAX_USERS:
        patterns = (np.arange(2**n)[:, None] >> np.arange(n)) & 1
        signs = 1.0 - 2.0 * patterns
        flipped = np.abs((signs * diffs).mean(axis=1))
        return float((flipped >= observed - tol).mean()), True
    rng = np.random.default_rng(_check_seed(seed))
    b = _check_resamples(n_resamples)
    hits = 0
    for start in range(0, b, 1000):  # in chunks: (1000, n_users) at a time
        size = min(1000, b - start)
        flips = rng.integers(0, 2, size=(size, n), dtype=np.int8) * 2 - 1
        hits += int((np.abs(flips @ diffs / n) >= observed - tol).sum())
    return (hits + 1) / (b + 1), False


def paired_test(
    a: object,
    b: object,
    *,
    users_a: object | None = None,
    users_b: object | None = None,
    confidence: float = 0.95,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> PairedTest:
    """Compare entry A with entry B over the same users: ``a``, ``b`` ``(n_users,)``.

    Differences are ``a - b`` per user. The p-value is the two-sided sign-flip randomisation
    test (:func:`sign_flip_p_value`); beside it, the mean difference with its BCa bootstrap
    interval and Cohen's d_z. With ``users_a`` / ``users_b`` the arrays are aligned by user id
    and must cover the same users; without, position i of each is the same user.
    """
    x, y = paired_values(a, b, users_a, users_b)
    diffs = x - y
    interval = bootstrap_ci(diffs, confidence=confidence, n_resamples=n_resamples, seed=seed)
    p, exact = sign_flip_p_value(diffs, n_resamples=n_resamples, seed=seed)
    sd = float(diffs.std(ddof=1)) if len(diffs) > 1 else 0.0
    d_z = interval.mean / sd if sd > 0 else 0.0
    return PairedTest(
        interval.mean, interval.low, interval.high, interval.confidence, p, d_z, sd, len(x), exact
    )


# --- multiple comparisons ---------------------------------------------------------------------
def _check_p_values(p_values: object) -> np.ndarray:
    p = np.asarray(p_values, dtype=np.float64)
    if p.ndim != 1:
        raise ConfigError(f"p-values must be a flat list, got shape {p.shape}")
    if np.isnan(p).any() or (p < 0).any() or (p > 1).any():
        raise ConfigError("p-values must lie between 0 and 1 (no NaN)")
    return p


def holm(p_values: object) -> np.ndarray:
    """Holm–Bonferroni adjusted p-values ``(m,)``, in the order given; reject where ≤ alpha.

    The i-th smallest p is multiplied by ``m - i`` (i from 0), a running maximum keeps the
    adjusted values in the order of the raw ones, and they are capped at 1. Controls the
    family-wise error rate under any dependence between the tests."""
    p = _check_p_values(p_values)
    m = len(p)
    order = np.argsort(p, kind="stable")
    scaled = np.maximum.accumulate(p[order] * (m - np.arange(m)))
    out = np.empty(m)
    out[order] = np.minimum(scaled, 1.0)
    return out


def benjamini_hochberg(p_values: object) -> np.ndarray:
    """Benjamini–Hochberg adjusted p-values ``(m,)`` (false discovery rate), in the order given.

    The i-th smallest p (i from 1) is multiplied by ``m / i``; a running minimum from the
    largest keeps them monotone; capped at 1. Same as ``scipy.stats.false_discovery_control``."""
    p = _check_p_values(p_values)
    m = len(p)
    order = np.argsort(p, kind="stable")
    scaled = p[order] * m / np.arange(1, m + 1)
    scaled = np.minimum.accumulate(scaled[::-1])[::-1]
    out = np.empty(m)
    out[order] = np.minimum(scaled, 1.0)
    return out


# --- power --------------------------------------------------------------------------------------
def minimal_detectable_effect(
    n_users: int, sd_diff: float, *, alpha: float = 0.05, power: float = 0.8
) -> float:
    """The smallest true mean difference a two-sided paired test over ``n_users`` users detects
    with probability ``power`` at level ``alpha``, given the per-user SD of the differences
    ``sd_diff`` (in the metric's unit; the result is in the same unit).

    Solved exactly for the paired t-test (noncentral t with n - 1 degrees of freedom); the
    randomisation test of :func:`paired_test` has the same power to first order. For large n
    it approaches ``(z_{1-alpha/2} + z_power) * sd_diff / sqrt(n)`` (2.80 SD / sqrt(n)).
    """
    if int(n_users) != n_users or n_users < 2:
        raise ConfigError(f"n_users must be a whole number of at least 2, got {n_users}")
    if not np.isfinite(sd_diff) or sd_diff < 0:
        raise ConfigError(f"sd_diff must be a finite number of 0 or more, got {sd_diff}")
    for label, value in (("alpha", alpha), ("power", power)):
        if not 0.0 < value < 1.0:
            raise ConfigError(f"{label} must lie strictly between 0 and 1, got {value}")
    if sd_diff == 0:
        return 0.0
    df = int(n_users) - 1
    crit = sps.t.ppf(1.0 - alpha / 2.0, df)

    def shortfall(nc: float) -> float:
        # the far tail is negligible where scipy cannot compute it (NaN for large nc)
        far = float(np.nan_to_num(sps.nct.cdf(-crit, df, nc)))
        reach = float(sps.nct.sf(crit, df, nc)) + far
        return float(reach - power)

    upper = 4.0
    while shortfall(upper) < 0:  # power rises with the noncentrality; widen until it is reached
        upper *= 2.0
    nc = optimize.brentq(shortfall, 0.0, upper, xtol=1e-12)
    return float(nc * sd_diff / np.sqrt(n_users))


def mde_from_data(
    a: object,
    b: object,
    *,
    n_users: int | None = None,
    alpha: float = 0.05,
    power: float = 0.8,
) -> float:
    """:func:`minimal_detectable_effect` with the SD of the differences measured on ``a - b``
    (``(n_users,)`` each, same users, as in :func:`paired_values`), for ``n_users`` users
    (default: as many as measured)."""
    x, y = paired_values(a, b)
    if len(x) < 2:
        raise ConfigError("measuring the SD of the differences needs at least 2 users")
    sd = float((x - y).std(ddof=1))
    return minimal_detectable_effect(n_users or len(x), sd, alpha=alpha, power=power)
