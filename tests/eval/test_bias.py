"""Bias probes on constructed scorers whose biases are known."""

import numpy as np
import pytest

from llmrec.errors import ConfigError
from llmrec.eval.bias import (
    bootstrap,
    fairness,
    jaccard_at_k,
    permutation_agreement,
    popularity_bias,
    position_bias,
    ranked_under_profiles,
    rbo_at_k,
    scorer_of,
    top_k,
)

N_USERS, N_CAND = 12, 10


@pytest.fixture
def setup():
    rng = np.random.default_rng(0)
    candidates = np.stack([rng.permutation(100)[:N_CAND] for _ in range(N_USERS)])
    positives = candidates[:, 3].copy()
    return np.arange(N_USERS), candidates, positives


def slot_a_scorer(users, candidates):
    """Always prefers the first slot, then the second, ...: pure position bias."""
    n, c = candidates.shape
    return np.tile(np.arange(c, 0, -1, dtype=np.float32), (n, 1))


def oracle_for(positives):
    def score(users, candidates):
        return (candidates == positives[:, None]).astype(np.float32)

    return score


def by_item(users, candidates):
    """Order-blind: prefers low item ids wherever they are shown."""
    return -candidates.astype(np.float32)


def test_slot_a_ranker_has_maximal_position_bias(setup):
    users, cands, pos = setup
    report = position_bias(slot_a_scorer, users, cands, pos, k=5)
    np.testing.assert_allclose(report.ndcg[:5], 1.0 / np.log2(np.arange(5) + 2))
    np.testing.assert_allclose(report.ndcg[5:], 0.0)
    assert report.hit1[0] == 1.0 and report.hit1[1:].sum() == 0
    assert report.spread == pytest.approx(1.0)
    assert report.calls == N_USERS * N_CAND


def test_order_blind_scorers_have_no_position_bias(setup):
    users, cands, pos = setup
    assert position_bias(oracle_for(pos), users, cands, pos).spread == 0.0
    report = position_bias(by_item, users, cands, pos, slots=[0, 4, 9])
    assert report.spread == pytest.approx(0.0) and list(report.slots) == [0, 4, 9]


def test_position_bias_needs_the_positive_once(setup):
    users, cands, pos = setup
    with pytest.raises(ConfigError, match="exactly once"):
        position_bias(by_item, users, cands, pos + 1000)


def test_permutation_agreement(setup):
    users, cands, _ = setup
    blind = permutation_agreement(by_item, users, cands, n_permutations=3)
    assert blind["kendall_tau"] == pytest.approx(1.0) and blind["top1_agreement"] == 1.0
    biased = permutation_agreement(slot_a_scorer, users, cands, n_permutations=3)
    assert biased["kendall_tau"] < 0.5 and biased["top1_agreement"] < 0.5
    assert biased["calls"] == 3 * N_USERS


def test_bootstrapping_narrows_the_spread_of_a_position_biased_scorer(setup):
    users, cands, pos = setup

    def half_biased(u, c):  # a real preference for low ids plus a strong slot-A pull
        return by_item(u, c) / 100.0 + 0.5 * slot_a_scorer(u, c) / c.shape[1]

    raw = position_bias(half_biased, users, cands, pos, k=5)
    calls = []

    def counted(u, c):
        calls.append(len(u))
        return half_biased(u, c)

    mitigated = position_bias(bootstrap(counted, n_orders=8, seed=1), users, cands, pos, k=5)
    assert mitigated.spread < raw.spread
    assert sum(calls) == 8 * N_USERS * N_CAND  # the cost: n_orders times the scorer calls


def test_bootstrap_leaves_an_order_blind_scorer_unchanged(setup):
    users, cands, _ = setup
    agg = bootstrap(by_item, n_orders=4)(users, cands)
    np.testing.assert_array_equal(
        top_k(agg, cands, N_CAND), top_k(by_item(users, cands), cands, N_CAND)
    )


def test_popularity_bias_on_a_popularity_ranker(setup):
    _, cands, _ = setup
    popularity = np.arange(100, dtype=np.float64)  # item id = popularity
    scores = cands.astype(np.float32)  # most popular first
    report = popularity_bias(scores, cands, popularity, k=3)
    assert report["lift"] > 1.0
    assert report["rank_popularity_spearman"] == pytest.approx(-1.0)
    anti = popularity_bias(-scores, cands, popularity, k=3)
    assert anti["lift"] < 1.0 and anti["rank_popularity_spearman"] == pytest.approx(1.0)


def test_list_similarities():
    a = np.array([[1, 2, 3], [1, 2, 3], [1, 2, 3]])
    b = np.array([[1, 2, 3], [3, 2, 1], [7, 8, 9]])
    np.testing.assert_allclose(jaccard_at_k(a, b), [1.0, 1.0, 0.0])
    rbo = rbo_at_k(a, b)
    assert rbo[0] == pytest.approx(1.0) and rbo[2] == 0.0 and 0.0 < rbo[1] < 1.0
    # a swap at the top costs more than a swap at the bottom
    top_swap = rbo_at_k(a[:1], np.array([[2, 1, 3]]))[0]
    bottom_swap = rbo_at_k(a[:1], np.array([[1, 3, 2]]))[0]
    assert top_swap < bottom_swap < 1.0
    assert jaccard_at_k(np.array([[1, 2]]), np.array([[2, 5]]))[0] == pytest.approx(1 / 3)


def test_fairness_snsr_snsv_on_known_lists():
    neutral = np.array([[1, 2, 3], [4, 5, 6]])
    lists = {"F": neutral, "M": np.array([[1, 2, 9], [4, 5, 6]]), "X": np.array([[7, 8, 9]] * 2)}

    def rank_under(profile):
        return neutral if not profile else lists[profile["gender"]]

    report = fairness(rank_under, "gender", ["F", "M", "X"], n_users=2, k=3).as_dict()
    assert report["jaccard"]["F"] == 1.0 and report["jaccard"]["X"] == 0.0
    assert report["jaccard"]["M"] == pytest.approx((0.5 + 1.0) / 2)
    assert report["snsr_jaccard"] == pytest.approx(1.0)
    assert report["snsv_jaccard"] == pytest.approx(np.std([1.0, 0.75, 0.0]))
    assert report["snsr_rbo"] == pytest.approx(1.0) and report["calls"] == 8


def test_fairness_of_a_profile_blind_ranker_is_perfect(setup):
    users, cands, _ = setup
    report = fairness(
        lambda profile: top_k(by_item(users, cands), cands, 5), "age", ["a", "b"], n_users=N_USERS
    )
    assert report.as_dict()["snsr_jaccard"] == 0.0 and report.jaccard == {"a": 1.0, "b": 1.0}


def test_scorer_of_wraps_score_candidates(setup):
    users, cands, _ = setup

    class Model:
        def score_candidates(self, users, candidates, *, history=None):
            assert history == "H"
            return by_item(users, candidates)

    np.testing.assert_array_equal(scorer_of(Model(), "H")(users, cands), by_item(users, cands))


def constant(users, candidates):
    """Likes every candidate alike: the only order it can imply is the slots'."""
    return np.zeros(candidates.shape, dtype=np.float32)


def test_bootstrapping_a_constant_scorer_leaves_no_slot_effect():
    """Ties in the mean Borda points were broken by slot, so at B=3 slot 0 scored NDCG 0.239
    and slot 19 0.216. Under no slot effect the positive's rank is uniform over the 20 slots
    whatever slot it is shown in: the per-slot NDCG has a known mean and standard error, and
    the slope of NDCG over slots must be within 4 of its standard errors of 0 (the old code
    gave -14.5 here; seeded, so the test cannot flake)."""
    n, c, k = 20_000, 20, 10
    rng = np.random.default_rng(7)
    cands = np.argsort(rng.random((n, 100)), axis=1)[:, :c]
    report = position_bias(
        bootstrap(constant, n_orders=3, seed=11), np.arange(n), cands, cands[:, 0].copy(), k=k
    )
    rank = np.arange(c)
    gain = np.where(rank < k, 1.0 / np.log2(rank + 2.0), 0.0)  # NDCG of each rank, one positive
    se = np.sqrt(gain.var() / n)  # of one slot's mean NDCG
    np.testing.assert_allclose(report.ndcg, gain.mean(), atol=5 * se)
    x = rank - rank.mean()
    slope = float((x * report.ndcg).sum() / (x * x).sum())
    assert abs(slope) < 4 * se / np.sqrt((x * x).sum()), f"slot effect: slope {slope:.2e}"


def test_bootstrap_ties_are_broken_at_random_and_reproducibly(setup):
    users, cands, _ = setup
    first = bootstrap(constant, n_orders=2, seed=5)(users, cands)
    again = bootstrap(constant, n_orders=2, seed=5)(users, cands)
    np.testing.assert_array_equal(first, again)
    assert all(len(set(row.tolist())) == N_CAND for row in first)  # no tie left to the slots


def test_bootstrap_refuses_a_negative_seed():
    with pytest.raises(ConfigError, match="seed must be 0 or more"):
        bootstrap(constant, seed=-1)


@pytest.mark.parametrize("k", [10, 12])
def test_fairness_k_must_be_below_the_number_of_candidates(setup, k):
    """A top-10 of 10 candidates is the same set under every profile: SNSR 0 for any ranker."""
    users, cands, _ = setup

    class Ranker:
        def score_candidates(self, users, candidates, *, history=None, profiles=None):
            return by_item(users, candidates)

    with pytest.raises(ConfigError, match=f"fairness k={k} must be smaller than the 10 cand"):
        ranked_under_profiles(Ranker(), users, cands, None, k=k)
    with pytest.raises(ConfigError, match=f"fairness k={k} must be smaller than the 10 cand"):
        fairness(lambda p: cands, "age", ["a"], n_users=N_USERS, k=k, n_candidates=N_CAND)
    if k > N_CAND:  # lists shorter than k tell the same without n_candidates
        with pytest.raises(
            ConfigError, match=rf"fairness k={k}: the neutral lists have shape \(12, 10\)"
        ):
            fairness(lambda p: cands, "age", ["a"], n_users=N_USERS, k=k)


@pytest.mark.parametrize("k", [0, -3])
def test_fairness_k_must_be_positive(setup, k):
    _, cands, _ = setup
    with pytest.raises(ConfigError, match="fairness k must be a whole number >= 1"):
        fairness(lambda p: cands, "age", ["a"], n_users=N_USERS, k=k)
